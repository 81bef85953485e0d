#include "scheduler.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "error.hpp"

namespace clara_rt {

namespace {

constexpr std::int64_t kUnlimited = std::numeric_limits<std::int64_t>::max();
constexpr std::uint32_t kSlotBits = 32;
constexpr std::int64_t kSlotMask = (std::int64_t{1} << kSlotBits) - 1;
// Generations wrap after 2^31 reuses of one slot, which keeps job ids positive.
constexpr std::uint32_t kGenerationMask = 0x7fffffff;

std::string task_name(std::int64_t job, std::int64_t node) {
  return "task (job " + std::to_string(job) + ", node " + std::to_string(node) + ")";
}

}  // namespace

// --- Public API ---

Scheduler::Scheduler(const Weights& weights) : ready_(weights) {
  for (std::int64_t weight : weights) {
    CLARA_RT_CHECK(weight >= 1, "weights must be >= 1, got (" + std::to_string(weights[0]) + ", " +
                                    std::to_string(weights[1]) + ", " + std::to_string(weights[2]) +
                                    ")");
  }
}

std::int64_t Scheduler::add_graph(std::int64_t num_nodes, const Dag::EdgeList& edges,
                                  const std::vector<std::int64_t>& resources) {
  Dag dag(num_nodes, edges, resources);  // validates outside the lock
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::int32_t> index(dag.num_nodes(), -1);
  for (std::int32_t node = 0; node < dag.num_nodes(); ++node) {
    if (dag.resources()[node] >= 0) index[node] = resource_index(dag.resources()[node]);
  }
  const std::int64_t id = next_graph_++;
  auto graph = std::make_unique<Graph>(Graph{std::move(dag), std::move(index), id, 0, false});
  graphs_.emplace(id, std::move(graph));
  return id;
}

void Scheduler::remove_graph(std::int64_t graph) {
  std::unique_ptr<Graph> freed;  // destroyed after the lock is released
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = graphs_.find(graph);
  CLARA_RT_CHECK(it != graphs_.end() && !it->second->removed,
                 "unknown graph " + std::to_string(graph) + " (never added, or removed)");
  it->second->removed = true;
  if (it->second->jobs == 0) {
    freed = std::move(it->second);
    graphs_.erase(it);
  }
}

void Scheduler::set_resource_limit(std::int64_t resource, std::int64_t limit) {
  CLARA_RT_CHECK(resource >= 0, "resource must be >= 0, got " + std::to_string(resource));
  CLARA_RT_CHECK(limit >= 1, "limit must be >= 1, got " + std::to_string(limit));
  std::unique_lock<std::mutex> lock(mutex_);
  const std::int32_t index = resource_index(resource);
  Resource& r = resources_[index];
  r.limit = limit;
  // Each released task goes to the front of its class: push the batch last-first to keep it FIFO.
  scratch_.clear();
  while (r.in_use < limit) {
    const std::optional<Task> task = take_parked(index);
    if (!task) break;
    ++r.in_use;
    scratch_.push_back(*task);
  }
  for (auto it = scratch_.rbegin(); it != scratch_.rend(); ++it) {
    ready_.push_front(slots_[it->job & kSlotMask].priority, *it);
  }
  std::int64_t wake = wakeups();
  lock.unlock();
  notify(wake);
}

void Scheduler::set_max_running(std::int64_t limit) {
  CLARA_RT_CHECK(limit >= 0, "max_running must be >= 0 (0: no cap), got " + std::to_string(limit));
  std::unique_lock<std::mutex> lock(mutex_);
  max_running_ = limit;
  std::int64_t wake = wakeups();
  lock.unlock();
  notify(wake);
}

std::int64_t Scheduler::submit(std::int64_t graph, std::int64_t priority) {
  CLARA_RT_CHECK(
      priority >= 0 && priority < kNumPriorities,
      "priority must be 0..3 (immediate, high, normal, low), got " + std::to_string(priority));
  std::unique_lock<std::mutex> lock(mutex_);
  CLARA_RT_CHECK_STATE(!shutdown_, "scheduler is shut down; submit() is no longer allowed");
  auto found = graphs_.find(graph);
  CLARA_RT_CHECK(found != graphs_.end() && !found->second->removed,
                 "unknown graph " + std::to_string(graph) + " (never added, or removed); " +
                     std::to_string(graphs_.size()) + " graph(s) registered");
  std::uint32_t slot;
  if (free_slots_.empty()) {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  } else {
    slot = free_slots_.back();
    free_slots_.pop_back();
  }
  JobSlot& job = slots_[slot];
  Graph& g = *found->second;
  ++g.jobs;
  job.id = (static_cast<std::int64_t>(job.generation & kGenerationMask) << kSlotBits) | slot;
  job.active = true;
  job.stopped = false;
  job.priority = static_cast<Priority>(priority);
  job.graph = &g;
  job.remaining = g.dag.num_nodes();
  job.running = job.queued = job.parked = 0;
  // assign() reuses the vectors' capacity: a recycled slot allocates nothing.
  job.pending.assign(g.dag.in_degrees().begin(), g.dag.in_degrees().end());
  job.state.assign(g.dag.num_nodes(), NodeState::kWaiting);
  for (std::int32_t root : g.dag.roots()) {
    job.state[root] = NodeState::kReady;
    ready_.push_back(job.priority, Task{job.id, root});
  }
  job.queued = static_cast<std::int32_t>(g.dag.roots().size());
  ++jobs_submitted_;
  ++jobs_active_;
  std::int64_t id = job.id;
  std::int64_t wake = wakeups();
  lock.unlock();
  notify(wake);
  return id;
}

std::optional<Scheduler::TaskId> Scheduler::try_next() {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::optional<Task> task = pop_task();
  if (!task) return std::nullopt;
  return TaskId{task->job, task->node};
}

std::optional<Scheduler::TaskId> Scheduler::wait_next(double timeout_s) {
  CLARA_RT_CHECK(!std::isnan(timeout_s), "timeout_s must be a number, got nan");
  using Clock = std::chrono::steady_clock;
  // Beyond ~30 years the deadline would overflow the clock: treat it as "no limit".
  const bool forever = timeout_s > 1e9;
  const Clock::time_point deadline =
      forever ? Clock::time_point::max()
              : Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(std::max(timeout_s, 0.0)));
  std::unique_lock<std::mutex> lock(mutex_);
  while (!shutdown_) {
    if (const std::optional<Task> task = pop_task()) return TaskId{task->job, task->node};
    if (!forever && Clock::now() >= deadline) break;
    ++waiters_;
    if (forever) {
      ready_cv_.wait(lock);
    } else {
      ready_cv_.wait_until(lock, deadline);
    }
    --waiters_;
  }
  return std::nullopt;
}

Scheduler::Completion Scheduler::complete(std::int64_t job_id, std::int64_t node_id) {
  std::unique_lock<std::mutex> lock(mutex_);
  const bool finished = finish_task(job_id, node_id);
  const Task task = pop_task().value_or(Task{-1, -1});
  std::int64_t wake = wakeups();
  lock.unlock();
  notify(wake);
  return {finished, task.job, task.node};
}

std::optional<Scheduler::TaskId> Scheduler::take_own(std::int64_t job) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::optional<Task> task = take_task_of(job);
  if (!task) return std::nullopt;
  return TaskId{task->job, task->node};
}

Scheduler::Completion Scheduler::complete_own(std::int64_t job_id, std::int64_t node_id) {
  std::unique_lock<std::mutex> lock(mutex_);
  const bool finished = finish_task(job_id, node_id);
  const Task task = (finished ? std::nullopt : take_task_of(job_id)).value_or(Task{-1, -1});
  std::int64_t wake = wakeups();
  lock.unlock();
  notify(wake);
  return {finished, task.job, task.node};
}

bool Scheduler::fail(std::int64_t job) { return stop(job, StopReason::kFailed); }

bool Scheduler::cancel(std::int64_t job) { return stop(job, StopReason::kCancelled); }

void Scheduler::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    shutdown_ = true;
  }
  ready_cv_.notify_all();
}

std::map<std::string, std::int64_t> Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {
      {"jobs_active", jobs_active_},
      {"ready_immediate", ready_.live(Priority::kImmediate)},
      {"ready_high", ready_.live(Priority::kHigh)},
      {"ready_normal", ready_.live(Priority::kNormal)},
      {"ready_low", ready_.live(Priority::kLow)},
      {"parked", parked_},
      {"running", running_},
      {"dispatched", dispatched_},
      {"jobs_submitted", jobs_submitted_},
      {"jobs_finished", jobs_finished_},
      {"jobs_failed", jobs_failed_},
      {"jobs_cancelled", jobs_cancelled_},
      {"slots", static_cast<std::int64_t>(slots_.size())},
      {"graphs", static_cast<std::int64_t>(graphs_.size())},
  };
}

// --- Internals (mutex_ held) ---

bool Scheduler::finish_task(std::int64_t job_id, std::int64_t node_id) {
  JobSlot* job = find_job(job_id);
  CLARA_RT_CHECK(job != nullptr, "unknown job " + std::to_string(job_id) +
                                     " (never submitted, or already finished)");
  CLARA_RT_CHECK(node_id >= 0 && node_id < job->graph->dag.num_nodes(),
                 "node " + std::to_string(node_id) + " out of range [0, " +
                     std::to_string(job->graph->dag.num_nodes()) + ") for job " +
                     std::to_string(job_id));
  const auto node = static_cast<std::int32_t>(node_id);
  CLARA_RT_CHECK(job->state[node] == NodeState::kRunning,
                 task_name(job_id, node_id) + " is not running");
  job->state[node] = NodeState::kDone;
  --job->running;
  --running_;
  --job->remaining;
  const std::int32_t resource = job->graph->resource_index[node];
  if (resource >= 0) release_resource(resource);
  if (!job->stopped) {
    // Reverse order so that the first successor ends up at the very front.
    const NodeRange successors = job->graph->dag.successors(node);
    for (const std::int32_t* it = successors.end(); it != successors.begin();) {
      const std::int32_t next = *--it;
      if (--job->pending[next] != 0) continue;
      job->state[next] = NodeState::kReady;
      ++job->queued;
      ready_.push_front(job->priority, Task{job_id, next});
    }
  }
  const bool finished = job->remaining == 0 || (job->stopped && job->running == 0);
  if (finished) free_slot(*job);
  return finished;
}

Scheduler::JobSlot* Scheduler::find_job(std::int64_t job) {
  if (job < 0) return nullptr;
  const std::int64_t slot = job & kSlotMask;
  if (slot >= static_cast<std::int64_t>(slots_.size())) return nullptr;
  JobSlot& entry = slots_[slot];
  return entry.active && entry.id == job ? &entry : nullptr;
}

Scheduler::JobSlot* Scheduler::live_job(std::int64_t job) {
  JobSlot* entry = find_job(job);
  return entry != nullptr && !entry->stopped ? entry : nullptr;
}

std::int32_t Scheduler::resource_index(std::int64_t resource) {
  auto [it, inserted] =
      resource_ids_.emplace(resource, static_cast<std::int32_t>(resources_.size()));
  if (inserted) {
    resources_.emplace_back();
    resources_.back().limit = kUnlimited;
  }
  return it->second;
}

std::optional<Task> Scheduler::pop_task() {
  if (at_cap()) return std::nullopt;
  while (const std::optional<Priority> selected = ready_.select()) {
    const Priority priority = *selected;
    const Task next = ready_.pop(priority);
    JobSlot* job = live_job(next.job);
    if (job == nullptr) continue;  // stale: its job was stopped
    NodeState& state = job->state[next.node];
    if (state != NodeState::kReady && state != NodeState::kReadyReserved) continue;
    ready_.take(priority);
    --job->queued;
    if (state == NodeState::kReady) {
      const std::int32_t resource = job->graph->resource_index[next.node];
      if (resource >= 0) {
        Resource& r = resources_[resource];
        if (r.in_use >= r.limit) {
          park(*job, next, priority, resource);
          continue;
        }
        ++r.in_use;
      }
    }  // kReadyReserved: the slot was handed over when the task left its parking lot
    ready_.commit(priority);
    state = NodeState::kRunning;
    ++job->running;
    ++running_;
    ++dispatched_;
    return next;
  }
  return std::nullopt;
}

std::optional<Task> Scheduler::take_task_of(std::int64_t job_id) {
  JobSlot* job = live_job(job_id);
  if (job == nullptr || job->queued == 0 || at_cap() || ready_.more_urgent_than(job->priority)) {
    return std::nullopt;
  }
  const std::vector<std::int32_t>& resource = job->graph->resource_index;
  for (std::int32_t node = 0; node < job->graph->dag.num_nodes(); ++node) {
    NodeState& state = job->state[node];
    if (state == NodeState::kReady && resource[node] >= 0) {
      Resource& r = resources_[resource[node]];
      if (r.in_use >= r.limit) continue;  // left for a worker, which parks it
      ++r.in_use;
    } else if (state != NodeState::kReady && state != NodeState::kReadyReserved) {
      continue;
    }
    const Task task{job_id, node};
    ready_.remove(job->priority, task);
    --job->queued;
    state = NodeState::kRunning;
    ++job->running;
    ++running_;
    ++dispatched_;
    return task;
  }
  return std::nullopt;
}

void Scheduler::park(JobSlot& job, const Task& task, Priority priority, std::int32_t resource) {
  Resource& r = resources_[resource];
  job.state[task.node] = NodeState::kParked;
  ++job.parked;
  ++r.parked;
  ++parked_;
  if (priority == Priority::kImmediate) {
    r.parked_immediate.push_back(task);
  } else {
    r.parked_other.push_back(task);
  }
}

std::optional<Task> Scheduler::take_parked(std::int32_t resource) {
  Resource& r = resources_[resource];
  for (RingDeque<Task>* lot : {&r.parked_immediate, &r.parked_other}) {
    while (!lot->empty()) {
      const Task task = lot->pop_front();
      JobSlot* job = live_job(task.job);
      if (job == nullptr) continue;  // stale: its job was stopped
      job->state[task.node] = NodeState::kReadyReserved;
      --job->parked;
      ++job->queued;
      --r.parked;
      --parked_;
      return task;
    }
  }
  return std::nullopt;
}

void Scheduler::release_resource(std::int32_t resource) {
  // Hand the slot straight to a parked task, or give it back.
  if (const std::optional<Task> task = take_parked(resource)) {
    ready_.push_front(slots_[task->job & kSlotMask].priority, *task);
  } else {
    --resources_[resource].in_use;
  }
}

bool Scheduler::stop(std::int64_t job_id, StopReason reason) {
  std::unique_lock<std::mutex> lock(mutex_);
  JobSlot* job = live_job(job_id);
  if (job == nullptr) return false;
  job->stopped = true;
  ++(reason == StopReason::kFailed ? jobs_failed_ : jobs_cancelled_);
  ready_.forget(job->priority, job->queued);
  job->queued = 0;
  parked_ -= job->parked;
  job->parked = 0;
  // Queue entries go stale in place; resource bookkeeping is settled now so that a stale entry
  // never holds a slot. Parked counts first, so that handing slots over sees a consistent state.
  const std::vector<std::int32_t>& resource = job->graph->resource_index;
  for (std::int32_t node = 0; node < job->graph->dag.num_nodes(); ++node) {
    if (job->state[node] != NodeState::kParked) continue;
    Resource& r = resources_[resource[node]];
    if (--r.parked == 0) {
      r.parked_immediate.clear();
      r.parked_other.clear();
    }
  }
  for (std::int32_t node = 0; node < job->graph->dag.num_nodes(); ++node) {
    if (job->state[node] == NodeState::kReadyReserved) release_resource(resource[node]);
  }
  const bool idle = job->running == 0;
  if (idle) free_slot(*job);
  std::int64_t wake = wakeups();
  lock.unlock();
  notify(wake);
  return idle;
}

void Scheduler::free_slot(JobSlot& job) {
  Graph* graph = job.graph;
  job.graph = nullptr;
  if (--graph->jobs == 0 && graph->removed) graphs_.erase(graph->id);
  job.active = false;
  ++job.generation;
  free_slots_.push_back(static_cast<std::uint32_t>(job.id & kSlotMask));
  --jobs_active_;
  ++jobs_finished_;
}

std::int64_t Scheduler::wakeups() const {
  return waiters_ == 0 ? 0 : std::min(waiters_, ready_.live_total());
}

void Scheduler::notify(std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) ready_cv_.notify_one();
}

}  // namespace clara_rt
