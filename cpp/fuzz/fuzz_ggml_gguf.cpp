// libFuzzer target: ggml's own gguf reader alone, without our header walk in front of it, with every getter
// used the way ModelFile uses them (type checked first). It tells whether the pinned ggml can abort on a
// hostile header by itself; our loader must not depend on the answer (cm::ModelFile walks the header first).
//
// Known and guarded by that walk (so filtered here, to look for new ones): a tensor with an empty dimension,
// or whose data would not fit the input, makes ggml_new_tensor abort (its element-count check skips
// dimensions <= 1 that the reader's own check multiplied in). The reader alone (no tensor creation) runs first;
// tensors are created only when every tensor has data and all of it fits the input.
#include <cstdint>

#include "ggml.h"
#include "gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    {
        gguf_init_params header_only{/*no_alloc=*/true, /*ctx=*/nullptr};
        gguf_context* h = gguf_init_from_buffer(data, size, header_only);
        if (!h) return 0;
        bool plausible = gguf_get_data_offset(h) <= size;
        uint64_t total = 0;
        for (int64_t i = 0; plausible && i < gguf_get_n_tensors(h); ++i) {
            const size_t n = gguf_get_tensor_size(h, i);
            plausible = n > 0 && n <= size && (total += n) <= size;
        }
        gguf_free(h);
        if (!plausible) return 0;
    }
    ggml_context* meta = nullptr;
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/&meta};
    gguf_context* g = gguf_init_from_buffer(data, size, params);
    if (!g) return 0;
    for (int64_t k = 0; k < gguf_get_n_kv(g); ++k) {
        (void)gguf_get_key(g, k);
        const gguf_type t = gguf_get_kv_type(g, k);
        if (t == GGUF_TYPE_STRING) {
            (void)gguf_get_val_str(g, k);
        } else if (t == GGUF_TYPE_ARRAY) {
            const size_t n = gguf_get_arr_n(g, k);
            if (gguf_get_arr_type(g, k) == GGUF_TYPE_STRING) {
                for (size_t i = 0; i < n; ++i) (void)gguf_get_arr_str(g, k, i);
            } else if (n > 0) {
                (void)gguf_get_arr_data(g, k);
            }
        } else if (t == GGUF_TYPE_UINT32) {
            (void)gguf_get_val_u32(g, k);
        }
    }
    for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
        (void)gguf_get_tensor_name(g, i);
        (void)gguf_get_tensor_offset(g, i);
        (void)gguf_get_tensor_size(g, i);
        (void)gguf_find_tensor(g, gguf_get_tensor_name(g, i));
    }
    for (ggml_tensor* t = meta ? ggml_get_first_tensor(meta) : nullptr; t; t = ggml_get_next_tensor(meta, t)) {
        (void)ggml_nbytes(t);
        (void)ggml_n_dims(t);
    }
    if (meta) ggml_free(meta);
    gguf_free(g);
    return 0;
}
