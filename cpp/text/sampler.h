// Next-token choice: greedy by default; temperature, top-k, top-p, min-p and a repetition penalty with a
// seeded generator, so the same seed gives the same text.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace cm {

struct SamplingParams {
    float temperature = 0.0f;         // 0: greedy
    int top_k = 0;                    // 0: off
    float top_p = 1.0f;               // 1: off
    float min_p = 0.0f;               // 0: off
    float repetition_penalty = 1.0f;  // 1: off (HF semantics: divide positive logits, multiply negative)
    uint64_t seed = 0;
    void validate() const;  // throws InputError
    // The Sampler's own tests: greedy (argmax) and whether the penalty touches the history's logits. The engine
    // asks the same to decide which rows only need their argmax (nn/head.h).
    bool greedy() const { return temperature == 0.0f; }
    bool penalized() const { return repetition_penalty != 1.0f; }
};

class Sampler {
public:
    explicit Sampler(const SamplingParams& p);
    // `history`: ids the repetition penalty applies to (prompt text and generated tokens).
    int32_t sample(std::vector<float>& logits, const std::vector<int32_t>& history);

private:
    SamplingParams p_;
    std::mt19937_64 rng_;
};

// Index of the largest finite logit; throws if none is finite.
int32_t argmax(const std::vector<float>& logits);

}  // namespace cm
