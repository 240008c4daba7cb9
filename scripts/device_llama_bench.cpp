// llama.cpp's decoder on the same tensors as ours, timed through its C API: the peer row of the GPU check
// (scripts/device_check.sh, issue #23). It is linked against llama.cpp's library sources from the pinned
// llama-cpp-python sdist and the very ggml build of crispmoss, so nothing else is compiled for it (llama.cpp's
// own llama-bench needs its "common" library, a few minutes more of compiling on the lent machine).
//
//   device_llama_bench MODEL.gguf [--ngl N] [--threads N] [--prefill N,N] [--decode-at P,P] [--steps N] [--reps N]
//
// Measures what benchmarks/peer_llama.py measures through llama-cpp-python: load time, prefill of N tokens (one
// llama_decode of the whole prompt, the best of --reps), and single-token decode steps at context positions P
// (after an untimed prefill of P tokens). Token ids are fixed pseudo-random ids, as in peer_llama.py. Prints one
// JSON object on stdout (logs on stderr); exit code 0 when the model loaded.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::vector<int> parse_list(const char* s) {
    std::vector<int> v;
    std::string cur;
    for (const char* p = s;; ++p) {
        if (*p == ',' || *p == '\0') {
            if (!cur.empty()) v.push_back(std::atoi(cur.c_str()));
            cur.clear();
            if (*p == '\0') break;
        } else {
            cur += *p;
        }
    }
    return v;
}

// Free and total memory of the first GPU ggml knows (0, 0 without one).
void gpu_memory(size_t* free_b, size_t* total_b) {
    *free_b = *total_b = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(d) == GGML_BACKEND_DEVICE_TYPE_GPU) {
            ggml_backend_dev_memory(d, free_b, total_b);
            return;
        }
    }
}

// Runs ids[0, n) from position `pos0` in batches of at most n_batch; logits only for the last one.
bool run(llama_context* ctx, const std::vector<llama_token>& ids, int n, int pos0, int n_batch) {
    llama_batch b = llama_batch_init(n_batch, 0, 1);
    bool ok = true;
    for (int i = 0; i < n && ok; i += n_batch) {
        const int m = std::min(n_batch, n - i);
        b.n_tokens = m;
        for (int j = 0; j < m; ++j) {
            b.token[j] = ids[i + j];
            b.pos[j] = pos0 + i + j;
            b.n_seq_id[j] = 1;
            b.seq_id[j][0] = 0;
            b.logits[j] = (i + j == n - 1);
        }
        ok = llama_decode(ctx, b) == 0;
    }
    llama_synchronize(ctx);
    llama_batch_free(b);
    return ok;
}

void quiet_log(ggml_log_level level, const char* text, void*) {
    if (level >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf [--ngl N] [--threads N] [--prefill N,N] [--decode-at P,P] "
                             "[--steps N] [--reps N]\n", argv[0]);
        return 2;
    }
    const char* path = argv[1];
    int ngl = 99, threads = 0, steps = 32, reps = 3;
    std::vector<int> prefill = {153}, decode_at = {50, 160};
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--ngl") ngl = std::atoi(argv[i + 1]);
        else if (k == "--threads") threads = std::atoi(argv[i + 1]);
        else if (k == "--prefill") prefill = parse_list(argv[i + 1]);
        else if (k == "--decode-at") decode_at = parse_list(argv[i + 1]);
        else if (k == "--steps") steps = std::atoi(argv[i + 1]);
        else if (k == "--reps") reps = std::atoi(argv[i + 1]);
        else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
    }
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    size_t free0, total;
    gpu_memory(&free0, &total);

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    auto t0 = Clock::now();
    llama_model* model = llama_model_load_from_file(path, mp);
    const double load_ms = ms_since(t0);
    if (!model) {
        std::printf("{\"ok\": false, \"error\": \"could not load %s\"}\n", path);
        return 1;
    }
    int n_ctx = 64;
    for (int n : prefill) n_ctx = std::max(n_ctx, n + 8);
    for (int p : decode_at) n_ctx = std::max(n_ctx, p + steps + 8);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(n_ctx);
    cp.n_batch = cp.n_ubatch = 512;
    if (threads > 0) cp.n_threads = cp.n_threads_batch = threads;
    llama_context* ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        std::printf("{\"ok\": false, \"error\": \"could not create a context\"}\n");
        return 1;
    }
    size_t free1, total1;
    gpu_memory(&free1, &total1);
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    std::vector<llama_token> ids(static_cast<size_t>(n_ctx));
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (auto& id : ids) {  // fixed pseudo-random ids among ordinary tokens
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        id = static_cast<llama_token>(1000 + x % static_cast<uint64_t>(std::min(n_vocab, 150000) - 1000));
    }
    llama_memory_t mem = llama_get_memory(ctx);
    // warm-up: kernels, buffers, thread pool
    llama_memory_clear(mem, true);
    bool ok = run(ctx, ids, 16, 0, 512);
    for (int i = 0; i < 4 && ok; ++i) ok = run(ctx, std::vector<llama_token>{ids[16 + i]}, 1, 16 + i, 512);

    std::string js = "{\"ok\": " + std::string(ok ? "true" : "false");
    char buf[512];
    std::snprintf(buf, sizeof buf, ", \"model\": \"%s\", \"n_gpu_layers\": %d, \"threads\": %d, \"n_ctx\": %d, "
                  "\"load_s\": %.3f, \"model_bytes\": %llu", path, ngl, cp.n_threads, n_ctx, load_ms / 1000,
                  static_cast<unsigned long long>(llama_model_size(model)));
    js += buf;
    js += ", \"prefill\": {";
    for (size_t k = 0; k < prefill.size(); ++k) {
        const int n = prefill[k];
        double best = 1e30;
        for (int r = 0; r < std::max(1, reps); ++r) {
            llama_memory_clear(mem, true);
            auto t = Clock::now();
            ok = run(ctx, ids, n, 0, 512) && ok;
            best = std::min(best, ms_since(t));
        }
        std::snprintf(buf, sizeof buf, "%s\"%d\": {\"ms\": %.3f, \"tok_per_s\": %.2f}", k ? ", " : "", n, best,
                      n / (best / 1000));
        js += buf;
    }
    js += "}, \"decode\": {";
    for (size_t k = 0; k < decode_at.size(); ++k) {
        const int pos = decode_at[k];
        llama_memory_clear(mem, true);
        ok = run(ctx, ids, pos, 0, 512) && ok;
        std::vector<double> st;
        for (int i = 0; i < steps; ++i) {
            auto t = Clock::now();
            ok = run(ctx, std::vector<llama_token>{ids[pos + i]}, 1, pos + i, 512) && ok;
            st.push_back(ms_since(t));
        }
        double sum = 0;
        for (double v : st) sum += v;
        std::sort(st.begin(), st.end());
        std::snprintf(buf, sizeof buf, "%s\"%d\": {\"steps\": %d, \"step_ms_median\": %.3f, \"tok_per_s\": %.2f}",
                      k ? ", " : "", pos, steps, st[st.size() / 2], steps / (sum / 1000));
        js += buf;
    }
    size_t free2, total2;
    gpu_memory(&free2, &total2);
    std::snprintf(buf, sizeof buf, "}, \"gpu_total_mib\": %.0f, \"gpu_mem_after_load_mib\": %.0f, "
                  "\"gpu_mem_end_mib\": %.0f, \"all_decodes_ok\": %s",
                  total / 1048576.0, (double(free0) - double(free1)) / 1048576.0,
                  (double(free0) - double(free2)) / 1048576.0, ok ? "true" : "false");
    js += buf;
    std::string sys = llama_print_system_info();
    std::string esc;
    for (char c : sys) {
        if (c == '"' || c == '\\') esc += '\\';
        if (c == '\n') { esc += "\\n"; continue; }
        esc += c;
    }
    js += ", \"system_info\": \"" + esc + "\"}";
    std::printf("%s\n", js.c_str());
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
