// Stress test of the C++ scheduler with real threads, for ThreadSanitizer: workers drain jobs of
// several graphs and priorities (wait_next / complete), waiting callers run their own jobs
// (take_own / complete_own), a canceller stops some, a resource caps one operator, and the
// submitter keeps feeding. Exits 1 when the counters do not add up; TSan exits 66 on a race.
// Built and run by tests/cpp/test_cpp.py (with and without -fsanitize=thread).
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>
#include <vector>

#include "scheduler.hpp"

using clara_rt::Dag;
using clara_rt::Scheduler;

namespace {

constexpr int kWorkers = 3;
constexpr int kCallers = 2;

// Runs tasks until shutdown; counts every task it ran.
void worker(Scheduler& s, std::atomic<std::int64_t>& ran) {
  const double forever = std::numeric_limits<double>::infinity();
  while (const auto task = s.wait_next(forever)) {
    std::int64_t job = task->first;
    std::int64_t node = task->second;
    while (job >= 0) {
      ran.fetch_add(1, std::memory_order_relaxed);
      const auto [finished, next_job, next_node] = s.complete(job, node);
      job = next_job;
      node = next_node;
    }
  }
}

// Submits jobs and runs what it can of each itself, as job.result() does.
void caller(Scheduler& s, std::int64_t graph, int jobs, std::atomic<std::int64_t>& ran) {
  for (int i = 0; i < jobs; ++i) {
    const std::int64_t job = s.submit(graph, 1 + i % 3);
    while (const auto task = s.take_own(job)) {
      std::int64_t node = task->second;
      while (node >= 0) {
        ran.fetch_add(1, std::memory_order_relaxed);
        node = std::get<2>(s.complete_own(job, node));
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int jobs = argc > 1 ? std::atoi(argv[1]) : 20000;
  Scheduler s;
  const std::int64_t diamond = s.add_graph(4, {{0, 1}, {0, 2}, {1, 3}, {2, 3}}, {-1, 7, -1, -1});
  const std::int64_t chain = s.add_graph(3, {{0, 1}, {1, 2}}, {-1, -1, -1});
  s.set_resource_limit(7, 1);
  s.set_max_running(kWorkers);  // as the runtime does: callers borrow idle workers' slots
  std::atomic<std::int64_t> ran{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kWorkers; ++i) threads.emplace_back(worker, std::ref(s), std::ref(ran));
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back(caller, std::ref(s), chain, jobs / 4, std::ref(ran));
  }
  std::int64_t cancelled_tries = 0;
  for (int i = 0; i < jobs; ++i) {
    const std::int64_t job = s.submit(i % 2 ? diamond : chain, i % 4);
    if (i % 7 == 0) cancelled_tries += s.cancel(job) ? 1 : 0;
  }
  for (std::thread& t : callers) t.join();
  while (s.stats().at("jobs_active") != 0) std::this_thread::yield();
  s.shutdown();
  for (std::thread& t : threads) t.join();
  const auto stats = s.stats();
  const std::int64_t submitted = jobs + kCallers * (jobs / 4);
  const bool ok = stats.at("jobs_submitted") == submitted &&
                  stats.at("jobs_finished") == submitted && stats.at("running") == 0 &&
                  stats.at("parked") == 0 && stats.at("dispatched") == ran.load() &&
                  stats.at("jobs_cancelled") >= cancelled_tries;
  std::printf("stress: %lld jobs, %lld tasks, %lld cancelled: %s\n",
              static_cast<long long>(submitted), static_cast<long long>(ran.load()),
              static_cast<long long>(stats.at("jobs_cancelled")), ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
