#include "bench.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "error.hpp"
#include "scheduler.hpp"

namespace clara_rt {

namespace {

// Runs tasks until the scheduler shuts down; the worker that finishes the last job shuts it down.
void run_worker(Scheduler& scheduler, std::atomic<std::int64_t>& unfinished) {
  const double forever = std::numeric_limits<double>::infinity();
  while (const auto task = scheduler.wait_next(forever)) {
    std::int64_t job = task->first;
    std::int64_t node = task->second;
    while (job >= 0) {
      const auto [finished, next_job, next_node] = scheduler.complete(job, node);
      if (finished && unfinished.fetch_sub(1, std::memory_order_relaxed) == 1) {
        scheduler.shutdown();
      }
      job = next_job;
      node = next_node;
    }
  }
}

}  // namespace

double bench_dispatch(std::int64_t num_jobs, std::int64_t chain_length, std::int64_t threads) {
  CLARA_RT_CHECK(num_jobs >= 1, "num_jobs must be >= 1, got " + std::to_string(num_jobs));
  CLARA_RT_CHECK(chain_length >= 1,
                 "chain_length must be >= 1, got " + std::to_string(chain_length));
  CLARA_RT_CHECK(threads >= 1 && threads <= 1024,
                 "threads must be in [1, 1024], got " + std::to_string(threads));
  Scheduler scheduler;
  Dag::EdgeList chain;
  for (std::int64_t node = 0; node + 1 < chain_length; ++node) chain.emplace_back(node, node + 1);
  const std::int64_t graph =
      scheduler.add_graph(chain_length, chain, std::vector<std::int64_t>(chain_length, -1));
  for (std::int64_t i = 0; i < num_jobs; ++i) {
    scheduler.submit(graph, static_cast<std::int64_t>(Priority::kNormal));
  }
  std::atomic<std::int64_t> unfinished{num_jobs};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (std::int64_t i = 0; i < threads; ++i) {
    workers.emplace_back(run_worker, std::ref(scheduler), std::ref(unfinished));
  }
  for (std::thread& worker : workers) worker.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace clara_rt
