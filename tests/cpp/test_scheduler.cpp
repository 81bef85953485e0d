// Unit tests of the C++ scheduler (csrc/), as data in -> data out on one thread. Built and run by
// tests/cpp/test_cpp.py: g++ -std=c++17 -Icsrc csrc/{dag,ready_queue,scheduler}.cpp this file.
#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.hpp"
#include "scheduler.hpp"

using clara_rt::Dag;
using clara_rt::Priority;
using clara_rt::Scheduler;
using TaskId = Scheduler::TaskId;

namespace {

constexpr std::int64_t kImm = static_cast<std::int64_t>(Priority::kImmediate);
constexpr std::int64_t kHigh = static_cast<std::int64_t>(Priority::kHigh);
constexpr std::int64_t kNormal = static_cast<std::int64_t>(Priority::kNormal);
constexpr std::int64_t kLow = static_cast<std::int64_t>(Priority::kLow);

std::int64_t chain(Scheduler& s, std::int64_t length, std::int64_t resource = -1) {
  Dag::EdgeList edges;
  for (std::int64_t i = 0; i + 1 < length; ++i) edges.emplace_back(i, i + 1);
  return s.add_graph(length, edges, std::vector<std::int64_t>(length, resource));
}

std::int64_t stat(const Scheduler& s, const std::string& name) { return s.stats().at(name); }

}  // namespace

TEST(chain_runs_in_order_on_one_worker) {
  Scheduler s;
  const std::int64_t job = s.submit(chain(s, 3), kNormal);
  CHECK(s.try_next() == TaskId(job, 0));
  CHECK(s.try_next() == std::nullopt);
  CHECK(s.complete(job, 0) == Scheduler::Completion(false, job, 1));
  CHECK(s.complete(job, 1) == Scheduler::Completion(false, job, 2));
  CHECK(s.complete(job, 2) == Scheduler::Completion(true, -1, -1));
  CHECK(stat(s, "jobs_finished") == 1 && stat(s, "jobs_active") == 0);
}

TEST(diamond_releases_both_branches_then_the_join) {
  Scheduler s;
  const std::int64_t g = s.add_graph(4, {{0, 1}, {0, 2}, {1, 3}, {2, 3}}, {-1, -1, -1, -1});
  const std::int64_t job = s.submit(g, kNormal);
  CHECK(s.try_next() == TaskId(job, 0));
  CHECK(s.complete(job, 0) == Scheduler::Completion(false, job, 1));
  CHECK(s.try_next() == TaskId(job, 2));
  CHECK(s.complete(job, 1) == Scheduler::Completion(false, -1, -1));  // 3 still waits for 2
  CHECK(s.complete(job, 2) == Scheduler::Completion(false, job, 3));
  CHECK(s.complete(job, 3) == Scheduler::Completion(true, -1, -1));
}

TEST(immediate_first_then_weights_4_2_1) {
  Scheduler s;
  const std::int64_t g = chain(s, 1);
  std::map<std::int64_t, std::int64_t> priority_of;
  for (std::int64_t p : {kLow, kNormal, kHigh}) {
    for (int i = 0; i < 70; ++i) priority_of[s.submit(g, p)] = p;
  }
  const std::int64_t urgent = s.submit(g, kImm);
  CHECK(s.try_next() == TaskId(urgent, 0));
  std::array<int, 4> served{};
  for (int i = 0; i < 70; ++i) ++served[priority_of[s.try_next()->first]];
  CHECK(served[kHigh] == 40 && served[kNormal] == 20 && served[kLow] == 10);
}

TEST(resource_limit_parks_and_hands_the_slot_over) {
  Scheduler s;
  const std::int64_t g = chain(s, 1, 5);
  s.set_resource_limit(5, 1);
  const std::int64_t a = s.submit(g, kNormal);
  const std::int64_t b = s.submit(g, kNormal);
  CHECK(s.try_next() == TaskId(a, 0));
  CHECK(s.try_next() == std::nullopt);  // b parked on resource 5
  CHECK(stat(s, "parked") == 1);
  CHECK(s.complete(a, 0) == Scheduler::Completion(true, b, 0));
  CHECK(stat(s, "parked") == 0);
}

TEST(fail_and_cancel_count_their_own_reason) {
  Scheduler s;
  const std::int64_t g = chain(s, 2);
  const std::int64_t failed = s.submit(g, kNormal);
  const std::int64_t cancelled = s.submit(g, kNormal);
  CHECK(s.try_next() == TaskId(failed, 0));
  CHECK(!s.fail(failed));       // its task is running: complete() reports the end
  CHECK(s.cancel(cancelled));   // nothing running: over now
  CHECK(!s.cancel(cancelled));  // stopped already
  CHECK(s.complete(failed, 0) == Scheduler::Completion(true, -1, -1));
  CHECK(stat(s, "jobs_failed") == 1 && stat(s, "jobs_cancelled") == 1);
  CHECK(stat(s, "jobs_active") == 0 && s.try_next() == std::nullopt);
}

TEST(take_own_serves_the_waiting_caller_its_own_job_only) {
  Scheduler s;
  const std::int64_t g = chain(s, 2);
  const std::int64_t other = s.submit(g, kNormal);
  const std::int64_t mine = s.submit(g, kNormal);
  CHECK(s.take_own(mine) == TaskId(mine, 0));
  CHECK(s.complete_own(mine, 0) == Scheduler::Completion(false, mine, 1));
  CHECK(s.complete_own(mine, 1) == Scheduler::Completion(true, -1, -1));
  CHECK(s.try_next() == TaskId(other, 0));
  CHECK(s.try_next() == std::nullopt);  // no stale entry of `mine` is dispatched
}

TEST(take_own_yields_to_more_urgent_work) {
  Scheduler s;
  const std::int64_t g = chain(s, 1);
  const std::int64_t low = s.submit(g, kLow);
  const std::int64_t high = s.submit(g, kHigh);
  CHECK(s.take_own(low) == std::nullopt);
  CHECK(s.take_own(high) == TaskId(high, 0));
  CHECK(s.take_own(low) == TaskId(low, 0));
}

TEST(max_running_caps_workers_and_callers_together) {
  Scheduler s;
  const std::int64_t g = chain(s, 1);
  s.set_max_running(1);
  const std::int64_t a = s.submit(g, kNormal);
  const std::int64_t b = s.submit(g, kNormal);
  CHECK(s.try_next() == TaskId(a, 0));
  CHECK(s.try_next() == std::nullopt);
  CHECK(s.take_own(b) == std::nullopt);
  CHECK(s.complete(a, 0) == Scheduler::Completion(true, b, 0));
  CHECK_THROWS(std::invalid_argument, s.set_max_running(-1), "max_running must be >= 0");
}

TEST(remove_graph_refuses_submits_and_frees_after_the_last_job) {
  Scheduler s;
  const std::int64_t g = chain(s, 1);
  const std::int64_t job = s.submit(g, kNormal);
  s.remove_graph(g);
  CHECK_THROWS(std::invalid_argument, s.submit(g, kNormal), "unknown graph");
  CHECK(stat(s, "graphs") == 1);
  CHECK(s.try_next() == TaskId(job, 0));
  CHECK(s.complete(job, 0) == Scheduler::Completion(true, -1, -1));
  CHECK(stat(s, "graphs") == 0);
}

TEST(errors_name_what_is_wrong) {
  Scheduler s;
  CHECK_THROWS(std::invalid_argument, s.add_graph(2, {{0, 1}, {1, 0}}, {-1, -1}), "cycle");
  CHECK_THROWS(std::invalid_argument, Scheduler({4, 0, 1}), "weights must be >= 1");
  CHECK_THROWS(std::invalid_argument, s.submit(chain(s, 1), 7), "priority must be 0..3");
  CHECK_THROWS(std::invalid_argument, s.complete(123, 0), "unknown job");
  CHECK_THROWS(std::invalid_argument, s.wait_next(std::numeric_limits<double>::quiet_NaN()), "nan");
  s.shutdown();
  CHECK_THROWS(std::runtime_error, s.submit(0, kNormal), "shut down");
}

TEST(wait_next_times_out_and_job_ids_never_repeat) {
  Scheduler s;
  CHECK(s.wait_next(0.001) == std::nullopt);
  const std::int64_t g = chain(s, 1);
  const std::int64_t first = s.submit(g, kNormal);
  s.try_next();
  s.complete(first, 0);
  const std::int64_t second = s.submit(g, kNormal);  // reuses the slot, not the id
  CHECK(second != first && (second & 0xffffffff) == (first & 0xffffffff));
}

int main() { return clara_rt::testing::run_all() == 0 ? 0 : 1; }
