// A pure C++ dispatch benchmark: the scheduler's overhead per task with no Python in the loop.
#pragma once

#include <cstdint>

namespace clara_rt {

/// @brief Measures dispatch throughput. Submits `num_jobs` jobs of a linear chain of
/// `chain_length` no-op nodes at normal priority (all up front, before the clock starts), then
/// `threads` std::threads run wait_next()/complete() loops until every job has finished.
/// @return Elapsed seconds for the num_jobs * chain_length dispatches.
/// @throws std::invalid_argument if an argument is < 1.
double bench_dispatch(std::int64_t num_jobs, std::int64_t chain_length, std::int64_t threads);

}  // namespace clara_rt
