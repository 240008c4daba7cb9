#include "engine.h"

#include <algorithm>

#include "cpu/gemv.h"
#include "errors.h"

namespace cm {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// Stage dumps that a chunked prefill produces per chunk and that describe all its positions together.
constexpr const char* kChunkDumps[] = {"llm.layer0", "llm.layer1", "llm.layer2"};

void append_columns(HostTensor& acc, const HostTensor& part) {
    // [d, n] tensors (a single column may come as [d])
    const int64_t n = part.ne.size() > 1 ? part.ne[1] : 1;
    if (acc.ne.empty()) acc.ne = {part.ne[0], 0};
    acc.ne[1] += n;
    acc.data.insert(acc.data.end(), part.data.begin(), part.data.end());
}

}  // namespace

struct Engine::Job {
    const std::function<void(Compute&)>* fn;
    Dumps* dumps;
    bool done = false;
    std::exception_ptr error;
    std::condition_variable cv;
};

struct Engine::Seq {
    SeqRequest req;
    explicit Seq(SeqRequest r) : req(std::move(r)), sampler(req.sampling) {}
    size_t prefilled = 0;                // positions of req.prefill already run
    std::vector<float> logits;           // the next token's
    std::vector<int32_t> history;        // prompt text + generated (repetition penalty)
    Sampler sampler;
    int32_t next_id = -1;                // fed to the next decode step
    Clock::time_point t_submit, t_prefilled;
    std::map<std::string, HostTensor> dump_acc;
    std::atomic<bool> cancel{false};
    // shared with the caller, under Engine::mu_
    EngineResult res;
    bool done = false;
    std::exception_ptr error;
    std::condition_variable cv;
    bool prefilling() const { return prefilled < req.prefill.ids.size(); }
};

Engine::Engine(std::shared_ptr<const AudioLM> model, int n_threads, EngineOptions opts)
    : model_(std::move(model)), opts_(opts), compute_(n_threads, model_->placement().device) {
    if (opts_.max_batch < 1) throw InputError("max_batch must be >= 1");
    if (opts_.prefill_chunk < 1) throw InputError("prefill_chunk must be >= 1");
    worker_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
}

Engine::Stats Engine::stats() const {
    std::lock_guard<std::mutex> lk(mu_);
    Stats s;
    s.active = static_cast<int>(active_.size());
    s.waiting = static_cast<int>(waiting_.size());
    s.jobs = static_cast<int>(jobs_.size());
    s.steps = steps_;
    s.step_rows = step_rows_;
    s.max_step_rows = max_step_rows_;
    return s;
}

void Engine::run_job(const std::function<void(Compute&)>& fn, Dumps* dumps) {
    Job job;
    job.fn = &fn;
    job.dumps = dumps;
    std::unique_lock<std::mutex> lk(mu_);
    if (stop_) throw Error("the model was closed");
    jobs_.push_back(&job);
    cv_.notify_all();
    job.cv.wait(lk, [&] { return job.done; });
    if (job.error) std::rethrow_exception(job.error);
}

EngineResult Engine::generate(SeqRequest req, const std::function<bool(int32_t)>& on_token,
                              const std::function<bool()>& poll) {
    if (req.prefill.ids.empty() && req.logits.empty()) throw Error("internal: a sequence needs a prompt or logits");
    Seq s(std::move(req));
    s.t_submit = Clock::now();
    s.history = s.req.history;
    if (s.req.prefill.ids.empty()) s.logits = s.req.logits;
    std::unique_lock<std::mutex> lk(mu_);
    if (stop_) throw Error("the model was closed");
    waiting_.push_back(&s);
    cv_.notify_all();
    // A callback that throws stops the sequence like one that returns false; the error is rethrown once the
    // worker has let go of the sequence (it lives on this stack).
    std::exception_ptr caller_error;
    auto call_unlocked = [&](std::unique_lock<std::mutex>& l, const auto& fn) {
        l.unlock();
        bool go = false;
        try {
            go = fn();
        } catch (...) {
            if (!caller_error) caller_error = std::current_exception();
        }
        l.lock();
        return go;
    };
    size_t seen = 0;       // tokens taken from the sequence
    size_t kept = 0;       // of which handed to the caller (all of them until it stops)
    bool stopped = false;  // the caller asked to stop
    for (;;) {
        s.cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return s.done || s.res.tokens.size() > seen; });
        // Hand over new tokens outside the lock (callbacks may take long, or wait for the GIL).
        while (seen < s.res.tokens.size()) {
            const int32_t id = s.res.tokens[seen++];
            if (stopped) continue;  // produced before the worker saw the stop: dropped
            kept = seen;
            if (on_token && !call_unlocked(lk, [&] { return on_token(id); })) {
                stopped = true;
                s.cancel = true;
            }
        }
        if (s.done) break;
        if (!stopped && poll && !call_unlocked(lk, poll)) {
            stopped = true;
            s.cancel = true;
        }
    }
    if (caller_error) std::rethrow_exception(caller_error);
    if (s.error) std::rethrow_exception(s.error);
    EngineResult r = std::move(s.res);
    if (stopped) {  // what the caller saw: the tokens up to the one it stopped at
        r.tokens.resize(kept);
        r.stop_reason = "interrupted";
    }
    return r;
}

void Engine::finish(Seq& s, const std::string& reason, std::exception_ptr err) {
    std::lock_guard<std::mutex> lk(mu_);
    active_.erase(std::remove(active_.begin(), active_.end(), &s), active_.end());
    s.res.stop_reason = reason;
    if (!s.prefilling() && s.t_prefilled != Clock::time_point()) s.res.decode_ms = ms_between(s.t_prefilled, Clock::now());
    s.error = err;
    s.done = true;
    s.cv.notify_all();
}

void Engine::loop() {
    for (;;) {
        Job* job = nullptr;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stop_ || !jobs_.empty() || !waiting_.empty() || !active_.empty(); });
            if (stop_) {
                // Nothing waits on a destroyed engine in normal use (Python keeps it alive while sessions run); any
                // caller still here is told.
                const auto closed = std::make_exception_ptr(Error("the model was closed"));
                auto fail = [&](auto& q) {
                    for (auto* x : q) {
                        x->error = closed;
                        x->done = true;
                        x->cv.notify_all();
                    }
                    q.clear();
                };
                fail(jobs_);
                fail(waiting_);
                fail(active_);
                return;
            }
            while (!waiting_.empty() && static_cast<int>(active_.size()) < opts_.max_batch) {
                active_.push_back(waiting_.front());
                waiting_.pop_front();
            }
            if (!jobs_.empty()) {
                job = jobs_.front();
                jobs_.pop_front();
            }
        }
        if (job) {
            std::exception_ptr err;
            compute_.route_dumps(job->dumps);
            try {
                (*job->fn)(compute_);
            } catch (...) {
                err = std::current_exception();
            }
            compute_.route_dumps(nullptr);
            std::lock_guard<std::mutex> lk(mu_);
            job->error = err;
            job->done = true;
            job->cv.notify_all();
        }
        try {
            // One prefill chunk: the oldest sequence still prefilling.
            for (Seq* s : std::vector<Seq*>(active_)) {
                if (!s->prefilling()) continue;
                if (s->cancel) {
                    finish(*s, "interrupted");
                    continue;
                }
                prefill_chunk(*s);  // a timeout is checked after each generated token (the first one always comes)
                break;
            }
            decode_step();
        } catch (...) {  // nothing may escape the worker: what was running fails with the error
            for (Seq* s : std::vector<Seq*>(active_)) finish(*s, "error", std::current_exception());
        }
    }
}

void Engine::prefill_chunk(Seq& s) {
    const auto t0 = Clock::now();
    const DecoderInput& in = s.req.prefill;
    const size_t p0 = s.prefilled;
    const size_t n = std::min(static_cast<size_t>(opts_.prefill_chunk), in.ids.size() - p0);
    DecoderInput part;
    part.ids.assign(in.ids.begin() + p0, in.ids.begin() + p0 + n);
    if (!in.audio_row.empty()) part.audio_row.assign(in.audio_row.begin() + p0, in.audio_row.begin() + p0 + n);
    part.audio = in.audio;
    part.deepstack = in.deepstack;
    Dumps* dumps = s.req.dumps && s.req.dumps->on ? s.req.dumps : nullptr;
    std::vector<float> logits;
    compute_.route_dumps(dumps);
    try {
        logits = decoder_forward(compute_, model_->lm(), *s.req.cache, part, opts_.prefill_chunk,
                                 p0 + n == in.ids.size());
    } catch (...) {
        compute_.route_dumps(nullptr);
        finish(s, "error", std::current_exception());
        return;
    }
    compute_.route_dumps(nullptr);
    s.req.cache_keys->insert(s.req.cache_keys->end(), s.req.prefill_keys.begin() + p0,
                             s.req.prefill_keys.begin() + p0 + n);
    s.prefilled += n;
    if (dumps) {
        for (const char* name : kChunkDumps) {
            auto it = dumps->tensors.find(name);
            if (it != dumps->tensors.end()) append_columns(s.dump_acc[name], it->second);
        }
    }
    s.res.prefill_ms += ms_between(t0, Clock::now());
    if (s.prefilling()) return;
    s.t_prefilled = Clock::now();
    s.logits = std::move(logits);
    s.res.prompt_logits = s.logits;
    if (dumps) {
        for (auto& [name, t] : s.dump_acc) dumps->tensors[name] = std::move(t);
        s.dump_acc.clear();
        dumps->tensors["logits"] = HostTensor{{static_cast<int64_t>(s.logits.size())}, s.logits};
    }
}

// Samples the next token of a sequence whose logits are ready; false when the sequence is finished.
bool Engine::sample_next(Seq& s) {
    if (s.t_prefilled == Clock::time_point()) s.t_prefilled = Clock::now();  // prompt logits given, no prefill
    if (s.cancel) {
        finish(s, "interrupted");
        return false;
    }
    if (static_cast<int>(s.res.tokens.size()) >= s.req.max_new_tokens) {
        finish(s, "length");
        return false;
    }
    const int32_t id = s.sampler.sample(s.logits, s.history);
    if (std::find(s.req.stops.begin(), s.req.stops.end(), id) != s.req.stops.end()) {
        finish(s, "stop");
        return false;
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        s.res.tokens.push_back(id);
        s.cv.notify_all();
    }
    s.history.push_back(id);
    if (s.req.timeout_s > 0 && ms_between(s.t_submit, Clock::now()) > s.req.timeout_s * 1000.0) {
        finish(s, "timeout");
        return false;
    }
    if (static_cast<int>(s.res.tokens.size()) >= s.req.max_new_tokens || s.req.cache->n_past >= s.req.cache->n_ctx()) {
        finish(s, "length");
        return false;
    }
    s.next_id = id;
    return true;
}

void Engine::decode_step() {
    std::vector<Seq*> rows;
    for (Seq* s : std::vector<Seq*>(active_)) {
        if (s->prefilling()) continue;
        try {
            if (sample_next(*s)) rows.push_back(s);
        } catch (...) {  // e.g. no finite logit: that sequence fails, the others go on
            finish(*s, "error", std::current_exception());
        }
    }
    // At most kMaxDecodeRows sequences per graph: each row then goes through the matrix-vector kernels, as alone.
    for (size_t b = 0; b < rows.size(); b += cpu::kMaxDecodeRows) {
        const size_t e = std::min(rows.size(), b + cpu::kMaxDecodeRows);
        std::vector<KvCache*> caches;
        std::vector<int32_t> ids;
        std::vector<nn::HeadRow> head;  // greedy rows need only the argmax (the head may be screened, nn/head.h)
        for (size_t i = b; i < e; ++i) {
            caches.push_back(rows[i]->req.cache);
            ids.push_back(rows[i]->next_id);
            const SamplingParams& sp = rows[i]->req.sampling;
            head.push_back({sp.greedy(), sp.penalized() ? &rows[i]->history : nullptr});
        }
        std::vector<float> logits;
        try {
            logits = decoder_step(compute_, model_->lm(), caches, ids, &head);
        } catch (...) {
            for (size_t i = b; i < e; ++i) finish(*rows[i], "error", std::current_exception());
            continue;
        }
        const size_t nv = logits.size() / ids.size();
        for (size_t i = b; i < e; ++i) {
            Seq& s = *rows[i];
            s.req.cache_keys->push_back(s.next_id);
            s.logits.assign(logits.begin() + (i - b) * nv, logits.begin() + (i - b + 1) * nv);
        }
        std::lock_guard<std::mutex> lk(mu_);
        steps_ += 1;
        step_rows_ += static_cast<long long>(e - b);
        max_step_rows_ = std::max(max_step_rows_, static_cast<int>(e - b));
    }
}

}  // namespace cm
