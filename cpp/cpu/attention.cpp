#include "cpu/attention.h"

#include "cpu/attention_x86.h"

namespace cm::cpu {

bool attention_supports(ggml_type type, int64_t d, Level level) {
#if defined(__GNUC__) && defined(__x86_64__)
    return level != Level::none && usable(level) == level && (type == GGML_TYPE_F16 || type == GGML_TYPE_F32) &&
           d >= 8 && d % 8 == 0 && d <= kAttnMaxHead;
#else
    (void)type, (void)d, (void)level;
    return false;
#endif
}

void attend(ggml_type type, const AttnHead& h, Level level) {
#if defined(__GNUC__) && defined(__x86_64__)
    if (level >= Level::avx512 && h.d % 16 == 0) {
        attend_avx512(type, h);
    } else {
        attend_avx2(type, h);
    }
#else
    (void)type, (void)h, (void)level;
#endif
}

void store_kv(ggml_type type, const float* x, void* dst, int64_t n, Level level) {
#if defined(__GNUC__) && defined(__x86_64__)
    (void)level;  // F16C's conversion: the same bits at every level
    store_kv_avx2(type, x, dst, n);
#else
    (void)type, (void)x, (void)dst, (void)n, (void)level;
#endif
}

}  // namespace cm::cpu
