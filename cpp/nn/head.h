// The decoder's output head for a decode step: rows that sample greedily may take the screened head
// (cpu/head_screen.h: an approximate product of the whole head on the AMX tiles, then the exact logits of only the
// tokens that can still win; -inf elsewhere), which picks the same argmax as the full exact logits. Every other
// row, and every row where screening is off or does not pay, gets the full exact product (nn::mul_mat).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "compute.h"
#include "ggml.h"

namespace cm::cpu {
struct HeadNorms;
}

namespace cm::nn {

// What a decode step needs of one row's logits.
struct HeadRow {
    bool greedy = false;                          // only the argmax matters (temperature 0)
    const std::vector<int32_t>* exact = nullptr;  // ids whose logits must be exact too (the repetition penalty's)
};

// Screening runs for a step only with at least this many greedy rows (one row: the exact matrix-vector product
// reads the head once too, as fast as the screening product, which adds its selection; benchmarks/RESULTS.md).
constexpr int kHeadScreenMinRows = 2;

// CRISPMOSS_HEAD: unset or "screen" (default) allows screening, "exact" turns it off (read when a model loads).
bool head_screen_enabled();

// Activation rows given to the screened head so far in this process (tests, benchmarks).
long long head_screened_rows();

// The norms screening needs for `head` (cpu::head_norms), or nullptr where it cannot run: screening off or
// unavailable (cpu::head_screen_available), the head not a host F16 matrix, or a value not finite.
std::unique_ptr<cpu::HeadNorms> head_screen_prepare(const ggml_tensor* head);

// logits [n_vocab, n] of x [k, n] through `head`. rows (nullptr: all full) chooses per row; the screened rows'
// logits are exact for their candidates and exact set and -inf elsewhere. State the graph's ops use is added to
// `keep` (alive until the graph has run).
ggml_tensor* head_logits(Compute::Graph& g, ggml_tensor* head, const cpu::HeadNorms* norms, ggml_tensor* x,
                         const std::vector<HeadRow>* rows, std::vector<std::shared_ptr<void>>& keep);

}  // namespace cm::nn
