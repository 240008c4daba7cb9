#include "text/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <unordered_set>

#include "errors.h"

namespace cm {

void SamplingParams::validate() const {
    auto got = [](double v) {
        std::ostringstream s;
        s << ", got " << v;
        return s.str();
    };
    if (!(temperature >= 0.0f) || !std::isfinite(temperature)) throw InputError("temperature must be >= 0" + got(temperature));
    if (top_k < 0) throw InputError("top_k must be >= 0 (0 = off)" + got(top_k));
    if (!(top_p > 0.0f && top_p <= 1.0f)) throw InputError("top_p must be in (0, 1]" + got(top_p));
    if (!(min_p >= 0.0f && min_p < 1.0f)) throw InputError("min_p must be in [0, 1)" + got(min_p));
    if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
        throw InputError("repetition_penalty must be > 0" + got(repetition_penalty));
}

int32_t argmax(const std::vector<float>& logits) {
    int32_t best = -1;
    float best_v = -INFINITY;
    for (size_t i = 0; i < logits.size(); ++i) {
        const float v = logits[i];
        if (std::isfinite(v) && (best < 0 || v > best_v)) {
            best = static_cast<int32_t>(i);
            best_v = v;
        }
    }
    if (best < 0) throw Error("the model produced no finite logit");
    return best;
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { p_.validate(); }

int32_t Sampler::sample(std::vector<float>& logits, const std::vector<int32_t>& history) {
    if (p_.penalized()) {
        std::unordered_set<int32_t> seen(history.begin(), history.end());
        for (int32_t id : seen) {
            if (id < 0 || id >= static_cast<int32_t>(logits.size())) continue;
            float& v = logits[id];
            v = v > 0 ? v / p_.repetition_penalty : v * p_.repetition_penalty;
        }
    }
    if (p_.greedy()) return argmax(logits);

    // Candidates sorted by logit, then cut by top-k, min-p and top-p in the order HF applies them.
    std::vector<int32_t> idx;
    idx.reserve(logits.size());
    for (size_t i = 0; i < logits.size(); ++i)
        if (std::isfinite(logits[i])) idx.push_back(static_cast<int32_t>(i));
    if (idx.empty()) throw Error("the model produced no finite logit");
    size_t keep = idx.size();
    if (p_.top_k > 0) keep = std::min<size_t>(keep, static_cast<size_t>(p_.top_k));
    std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    idx.resize(keep);
    std::vector<double> prob(idx.size());
    const double top = logits[idx[0]] / p_.temperature;
    double sum = 0.0;
    for (size_t i = 0; i < idx.size(); ++i) sum += prob[i] = std::exp(logits[idx[i]] / p_.temperature - top);
    for (double& q : prob) q /= sum;
    size_t n = prob.size();
    if (p_.min_p > 0.0f) {
        const double floor_p = p_.min_p * prob[0];
        while (n > 1 && prob[n - 1] < floor_p) --n;
    }
    if (p_.top_p < 1.0f) {
        double cum = 0.0;
        size_t m = 0;
        while (m < n) {
            cum += prob[m++];
            if (cum >= p_.top_p) break;
        }
        n = std::max<size_t>(m, 1);
    }
    std::uniform_real_distribution<double> u(0.0, std::accumulate(prob.begin(), prob.begin() + n, 0.0));
    double r = u(rng_);
    for (size_t i = 0; i < n; ++i) {
        r -= prob[i];
        if (r <= 0.0) return idx[i];
    }
    return idx[n - 1];
}

}  // namespace cm
