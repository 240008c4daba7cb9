// Optional per-op timing of every graph the scheduler runs (benchmarks only). Off unless the environment
// variable CRISPMOSS_PROFILE is set to a non-empty value other than "0" when a Compute is created; then each
// graph is computed node by node (a few microseconds of extra overhead per node) and the time of each node is
// added to a process-wide table keyed by op, weight type and weight role (layer numbers removed).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "ggml-backend.h"

namespace cm::profile {

struct OpStat {
    double ms = 0;
    int64_t calls = 0;
    double flop = 0;  // matrix products only: 2 * m * n * k
};

bool enabled();
// Installs the timing hook on `sched` when enabled(); a no-op otherwise.
void attach(ggml_backend_sched_t sched);
void reset();
std::map<std::string, OpStat> snapshot();

}  // namespace cm::profile
