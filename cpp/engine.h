// The engine: one per loaded model (and thread count). It owns the compute buffers and one worker thread that runs
// everything heavy for every session of the model, so concurrent requests share the CPU instead of fighting over
// it:
//   - jobs (a clip's encoder pass), run whole, one between two decode steps;
//   - prefill, in chunks of `prefill_chunk` prompt positions, one chunk between two decode steps, so a long
//     prompt never stalls the sequences already decoding for more than one chunk;
//   - decode steps: the next token of every decoding sequence in one graph (decoder_step), every weight read once
//     for all of them (continuous batching: sequences join after their prefill and leave the step they finish).
// A sequence's tokens never depend on which others share its steps: its prefill chunks are cut from its own
// prompt alone, and every op of a decode step is per row (see decoder_step), so with our CPU kernels it gets the
// same bits batched as alone.
//
// Each sequence decodes into its session's own KV cache; the engine only schedules. Callers block in generate()
// (the GIL released in Python); their per-token callbacks run in their own thread, not the worker's.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "compute.h"
#include "models/audio_lm.h"
#include "nn/qwen3.h"
#include "text/sampler.h"

namespace cm {

struct EngineOptions {
    int max_batch = 32;      // sequences decoded together (Model's batch_size); more wait for a free slot
    int prefill_chunk = 128;  // prompt positions per prefill graph
};

// One generation as the engine runs it. Everything it points to belongs to the caller and stays alive while the
// caller blocks in Engine::generate.
struct SeqRequest {
    KvCache* cache = nullptr;               // positions [0, n_past) valid; the prompt continues at n_past
    std::vector<int32_t>* cache_keys = nullptr;  // what the cache holds position by position; appended as written
    DecoderInput prefill;                   // prompt positions still to run (empty: `logits` are given)
    std::vector<int32_t> prefill_keys;      // their keys, appended to *cache_keys as they are written
    std::vector<float> logits;              // with an empty prefill: the logits to sample the first token from
    std::vector<int32_t> history;           // ids the repetition penalty sees (prompt text)
    std::vector<int32_t> stops;             // ids that end generation (not part of the output)
    SamplingParams sampling;
    int max_new_tokens = 512;
    double timeout_s = 0.0;                 // 0: none; counted from the submission
    Dumps* dumps = nullptr;                 // prefill stage dumps ("llm.layer<k>" over all chunks, "logits")
};

struct EngineResult {
    std::vector<int32_t> tokens;            // generated ids, stop token excluded
    std::string stop_reason;                // "stop", "length", "interrupted", "timeout"
    std::vector<float> prompt_logits;       // logits after the prefill (empty when none ran or it was cut short)
    double prefill_ms = 0;                  // compute time of this sequence's prefill chunks
    double decode_ms = 0;                   // from the end of its prefill to its end
};

class Engine {
public:
    Engine(std::shared_ptr<const AudioLM> model, int n_threads, EngineOptions opts = EngineOptions());
    ~Engine();  // stops the worker; requests still waiting fail with an Error
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Runs fn(compute) on the worker between two decode steps, stage dumps routed to `dumps`; blocks until it has
    // run and rethrows what it threw.
    void run_job(const std::function<void(Compute&)>& fn, Dumps* dumps);

    // Prefills and decodes one sequence, batched with whatever else is running. Blocks; `on_token` runs in the
    // calling thread for each generated token in order (false: stop after it, stop_reason "interrupted"), `poll`
    // at least every 100 ms while waiting (false: stop now). Either may be empty.
    EngineResult generate(SeqRequest req, const std::function<bool(int32_t)>& on_token,
                          const std::function<bool()>& poll);

    struct Stats {
        int active = 0;   // sequences holding a slot (prefilling or decoding)
        int waiting = 0;  // sequences waiting for a slot
        int jobs = 0;     // encoder passes waiting
        long long steps = 0;          // decode steps run
        long long step_rows = 0;      // tokens decoded in them
        int max_step_rows = 0;        // the most sequences one of them held
    };
    Stats stats() const;
    int n_threads() const { return compute_.n_threads(); }
    const EngineOptions& options() const { return opts_; }
    const AudioLM& model() const { return *model_; }

private:
    struct Seq;
    struct Job;
    void loop();
    void prefill_chunk(Seq& s);
    void decode_step();
    bool sample_next(Seq& s);  // false: finished
    void finish(Seq& s, const std::string& reason, std::exception_ptr err = nullptr);

    std::shared_ptr<const AudioLM> model_;
    EngineOptions opts_;
    Compute compute_;

    mutable std::mutex mu_;
    std::condition_variable cv_;  // wakes the worker
    bool stop_ = false;
    std::deque<Job*> jobs_;
    std::deque<Seq*> waiting_;
    std::vector<Seq*> active_;  // written by the worker only, under mu_
    long long steps_ = 0, step_rows_ = 0;
    int max_step_rows_ = 0;
    std::thread worker_;
};

}  // namespace cm
