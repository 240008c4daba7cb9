#include "cpu/attention.h"

#include "cpu/attention_x86.h"

#include <vector>

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

size_t attention_work_floats(int64_t d) { return size_t(kAttnMaxRows) * size_t(d); }

void attend(ggml_type type, const AttnHeads& h, Level level, float* work) {
#if defined(__GNUC__) && defined(__x86_64__)
    // 16 KB for head sizes up to 256
    alignas(64) float stack[kAttnMaxRows * 256];
    std::vector<float> heap;
    if (!work) {
        if (attention_work_floats(h.d) <= sizeof(stack) / sizeof(float)) {
            work = stack;
        } else {
            heap.resize(attention_work_floats(h.d) + 16);
            work = heap.data() + (16 - reinterpret_cast<uintptr_t>(heap.data()) / 4 % 16) % 16;
        }
    }
    if (level >= Level::avx512 && h.d % 16 == 0) {
        attend_avx512(type, h, work);
    } else {
        attend_avx2(type, h, work);
    }
#else
    (void)type, (void)h, (void)level, (void)work;
#endif
}

size_t attention_full_work_floats(int64_t d, int64_t n_kv) {
    // the keys transposed (d rows) and the score rows of one row group (at most 8 rows), n_kv rounded up to 16
    return size_t(d + 8) * size_t((n_kv + 15) / 16 * 16);
}

void attend_full(const AttnHeads& h, Level level, float* work) {
#if defined(__GNUC__) && defined(__x86_64__)
    thread_local std::vector<float> kept;
    if (!work) {
        const size_t need = attention_full_work_floats(h.d, h.n_kv) + 16;
        if (kept.size() < need) kept.resize(need);
        work = kept.data() + (16 - reinterpret_cast<uintptr_t>(kept.data()) / 4 % 16) % 16;
    }
    if (level >= Level::avx512 && h.d % 16 == 0) {
        attend_avx512_full(h, work);
    } else {
        attend_avx2_full(h, work);
    }
#else
    (void)h, (void)level, (void)work;
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
