// Scheduler: which node of which job runs next.
//
// Design
// ------
// Python registers each pipeline once as an immutable Dag (add_graph) and submits jobs against
// it, and removes it (remove_graph) once nobody references the pipeline; a removed graph is freed
// when its last job ends. C++ sees only integers (graph, job and node ids, priority classes,
// resource ids) and never holds a Python object, so no call here needs the GIL. Worker threads
// loop:
//
//     task = wait_next(timeout)            # blocks with the GIL released
//     while task: run it in Python; finished, task = complete(task)
//
// complete() hands the worker its next task in the same critical section, so a linear chain runs
// on one thread with one lock per operator and no wake-up.
//
// A thread that waits on a job (Python's job.result()) runs that job's ready tasks itself through
// take_own()/complete_own() instead of sleeping while a worker does: no wake-up and no hand-back.
// It takes only its own job's tasks, never while a more urgent class has a ready task, never past
// a resource limit, and never past set_max_running() (the runtime's worker count: the caller
// borrows an idle worker's slot), so the policy below still decides what the workers run. Its
// entries leave the ready queue at once (they sit at an end), or go stale and are dropped when
// popped.
//
// Priority policy (Clara semantics). Ready tasks sit in four classes (ReadyQueue). `immediate` is
// served whenever it holds a task; `high`, `normal`, `low` share the rest by smooth weighted round
// robin (default 4:2:1): under saturation dispatches are exactly proportional to the weights and a
// lower class is never starved. The policy runs at every dispatch, including the pop inside
// complete(), so an immediate job overtakes a running pipeline at its next operator boundary.
// Within a class a new job's roots go to the back (FIFO), while successors released by complete()
// and tasks released by a resource go to the front: started jobs finish first (depth-first, as
// dask does), which frees their memory.
//
// Resources. A node may name a resource (an operator instance, possibly shared across graphs and
// jobs) with a concurrency limit. A popped task whose resource is at its limit is parked on that
// resource (immediate tasks ahead of the others, FIFO otherwise). When a task of the resource
// completes, its slot is handed straight to the first parked task, which goes to the front of its
// class already holding the slot, so a newcomer cannot take it first and starve the parked task.
//
// State. Jobs live in reusable slots; a job id is (slot generation << 32) | slot, so slots and
// their per-node vectors (dependency counters, node states) are reused without allocation while
// ids never repeat. Each node of a job is Waiting, Ready (queued, maybe holding its resource slot),
// Parked, Running or Done. fail()/cancel() stop a job: its queued and parked entries become stale
// and are discarded when popped (the live counters are corrected at once, so the policy and
// stats() only see live tasks). A job is finished, and its slot freed, when all its nodes are done
// or when it is stopped and its last running task completes.
//
// Threads. One std::mutex guards all state; every call takes it once for a short, allocation-free
// section (except add_graph and the first use of a slot). One condition variable wakes waiters;
// the number of sleeping waiters is counted so that notify happens only when someone sleeps and
// only for ready tasks the caller does not take itself.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dag.hpp"
#include "ready_queue.hpp"

namespace clara_rt {

/// Decides which ready (job, node) runs next, by job priority, DAG readiness and resource limits.
/// Thread-safe; no call blocks except wait_next().
class Scheduler {
 public:
  /// Weights of the high, normal and low classes.
  using Weights = std::array<std::int64_t, 3>;
  /// A dispatched task: (job id, node id).
  using TaskId = std::pair<std::int64_t, std::int64_t>;
  /// Result of complete(): (job finished, next job id or -1, next node id or -1).
  using Completion = std::tuple<bool, std::int64_t, std::int64_t>;

  /// @brief Creates a scheduler.
  /// @param weights Shares of high, normal and low (default 4:2:1).
  /// @throws std::invalid_argument if a weight is < 1.
  explicit Scheduler(const Weights& weights = {4, 2, 1});

  /// @brief Registers an immutable graph; it lives until remove_graph() and its last job.
  /// @param num_nodes Number of nodes (ids 0..num_nodes-1).
  /// @param edges (src, dst) pairs: dst runs after src.
  /// @param resources Resource id of each node, -1 for none.
  /// @return The graph id (0, 1, ...; never reused).
  /// @throws std::invalid_argument on a malformed or cyclic graph (see Dag).
  std::int64_t add_graph(std::int64_t num_nodes, const Dag::EdgeList& edges,
                         const std::vector<std::int64_t>& resources);

  /// @brief Forgets a graph: submit() refuses it from now on; it is freed at once, or when the
  /// last of its active jobs ends.
  /// @throws std::invalid_argument on an unknown (or already removed) graph.
  void remove_graph(std::int64_t graph);

  /// @brief Caps how many tasks of `resource` may run at once (default: unlimited). Raising the
  /// limit releases parked tasks; lowering it lets running tasks finish.
  /// @throws std::invalid_argument if resource < 0 or limit < 1.
  void set_resource_limit(std::int64_t resource, std::int64_t limit);

  /// @brief Caps how many tasks run at once, over all jobs (0: no cap, the default). The runtime
  /// sets it to its number of workers, so that a caller running its own job (take_own()) never
  /// adds a thread to them: it takes a task only while a worker is idle, and no worker takes one
  /// while the caller holds that slot.
  /// @throws std::invalid_argument if limit < 0.
  void set_max_running(std::int64_t limit);

  /// @brief Starts a job of `graph` at `priority` (0..3, see Priority); its roots become ready.
  /// @return The job id, unique for the scheduler's life.
  /// @throws std::invalid_argument on an unknown graph or priority.
  /// @throws std::runtime_error after shutdown().
  std::int64_t submit(std::int64_t graph, std::int64_t priority);

  /// @brief Pops the next ready task by the policy without blocking.
  std::optional<TaskId> try_next();

  /// @brief Like try_next(), but waits up to `timeout_s` seconds (negative: do not wait,
  /// infinite: no limit) for a task. Returns nothing on timeout or after shutdown().
  /// @throws std::invalid_argument if timeout_s is NaN.
  std::optional<TaskId> wait_next(double timeout_s);

  /// @brief Records that the running task (job, node) succeeded: releases its successors (front of
  /// the class) and one parked task of its resource, then pops this worker's next task.
  /// @return (finished, next job, next node): finished is true when this was the job's last task
  /// (its slot is freed); the next task is (-1, -1) when none is ready.
  /// @throws std::invalid_argument if the job is unknown or the task is not running.
  Completion complete(std::int64_t job, std::int64_t node);

  /// @brief Pops a ready task of `job` for the thread that waits on the job, outside the order of
  /// the policy (it is that thread's own work), but never while a more urgent class has a ready
  /// task, and never a task whose resource is at its limit.
  /// @return Nothing when the job has no such task, or is unknown, stopped or finished.
  std::optional<TaskId> take_own(std::int64_t job);

  /// @brief Like complete(), but the next task is the job's own (as take_own()), never another
  /// job's: for the thread that waits on the job.
  /// @throws std::invalid_argument if the job is unknown or the task is not running.
  Completion complete_own(std::int64_t job, std::int64_t node);

  /// @brief Stops a job after a failure: no more of its tasks are released or dispatched.
  /// @return true if no task of the job is running (its slot is freed now); false if some are (the
  /// complete() of the last one reports finished) or if the job is unknown, finished or stopped.
  bool fail(std::int64_t job);

  /// @brief Stops a job at a user's request; same semantics as fail().
  bool cancel(std::int64_t job);

  /// @brief Wakes every waiter; from now on wait_next() returns nothing and submit() throws.
  void shutdown();

  /// @brief Counters: jobs_active, ready_{immediate,high,normal,low}, parked, running, dispatched,
  /// jobs_submitted, jobs_finished, jobs_failed, jobs_cancelled, slots (job slot capacity),
  /// graphs (registered graphs, including removed ones whose jobs still run).
  std::map<std::string, std::int64_t> stats() const;

 private:
  /// Why a job stops early; each reason has its own counter in stats().
  enum class StopReason : std::uint8_t { kFailed, kCancelled };

  enum class NodeState : std::uint8_t {
    kWaiting,
    kReady,
    kReadyReserved,
    kParked,
    kRunning,
    kDone
  };

  struct Graph {
    Dag dag;
    std::vector<std::int32_t> resource_index;  // per node: index into resources_, or -1
    std::int64_t id = -1;
    std::int64_t jobs = 0;  // active jobs of this graph
    bool removed = false;   // remove_graph() called: freed when `jobs` drops to 0
  };

  struct Resource {
    std::int64_t limit = 0;   // set on creation: unlimited until set_resource_limit()
    std::int64_t in_use = 0;  // running tasks plus ready tasks holding a handed-over slot
    std::int64_t parked = 0;  // live parked tasks
    RingDeque<Task> parked_immediate;
    RingDeque<Task> parked_other;
  };

  struct JobSlot {
    std::int64_t id = -1;
    std::uint32_t generation = 0;
    bool active = false;
    bool stopped = false;
    Priority priority = Priority::kNormal;
    Graph* graph = nullptr;
    std::int32_t remaining = 0;  // nodes not done
    std::int32_t running = 0;
    std::int32_t queued = 0;            // live entries in the ready queue
    std::int32_t parked = 0;            // live entries in resource parking lots
    std::vector<std::int32_t> pending;  // unfinished predecessors per node
    std::vector<NodeState> state;
  };

  // Every private method expects mu_ to be held.
  JobSlot* find_job(std::int64_t job);
  JobSlot* live_job(std::int64_t job);
  std::int32_t resource_index(std::int64_t resource);
  bool finish_task(std::int64_t job, std::int64_t node);
  std::optional<Task> pop_task();
  std::optional<Task> take_task_of(std::int64_t job);
  void park(JobSlot& job, const Task& task, Priority priority, std::int32_t resource);
  std::optional<Task> take_parked(std::int32_t resource);
  void release_resource(std::int32_t resource);
  bool stop(std::int64_t job, StopReason reason);
  void free_slot(JobSlot& job);
  bool at_cap() const { return max_running_ > 0 && running_ >= max_running_; }
  std::int64_t wakeups() const;
  void notify(std::int64_t count);

  mutable std::mutex mutex_;
  std::condition_variable ready_cv_;
  ReadyQueue ready_;
  // unique_ptr: jobs keep pointers to their graph while the table changes.
  std::unordered_map<std::int64_t, std::unique_ptr<Graph>> graphs_;
  std::int64_t next_graph_ = 0;
  std::vector<Resource> resources_;
  std::unordered_map<std::int64_t, std::int32_t> resource_ids_;  // resource id -> index
  std::vector<JobSlot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<Task> scratch_;  // tasks released together by set_resource_limit()
  std::int64_t waiters_ = 0;
  std::int64_t running_ = 0;
  std::int64_t max_running_ = 0;  // 0: no cap
  std::int64_t parked_ = 0;
  std::int64_t jobs_active_ = 0;
  std::int64_t dispatched_ = 0;
  std::int64_t jobs_submitted_ = 0;
  std::int64_t jobs_finished_ = 0;
  std::int64_t jobs_failed_ = 0;
  std::int64_t jobs_cancelled_ = 0;
  bool shutdown_ = false;
};

}  // namespace clara_rt
