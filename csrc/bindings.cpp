// Python bindings for clara_rt._core. The only file that includes pybind11: declarations only.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bench.hpp"
#include "fastcall.hpp"
#include "ready_queue.hpp"
#include "scheduler.hpp"
#include "task_loop.hpp"

namespace py = pybind11;

#ifndef CLARA_RT_VERSION
#define CLARA_RT_VERSION "dev"
#endif

PYBIND11_MODULE(_core, m) {
  using clara_rt::Priority;
  using clara_rt::Scheduler;

  m.doc() = "clara-rt scheduler core (C++): job priorities, DAG readiness, resource limits.";
  m.attr("__version__") = CLARA_RT_VERSION;
  m.attr("PRIORITY_IMMEDIATE") = static_cast<int>(Priority::kImmediate);
  m.attr("PRIORITY_HIGH") = static_cast<int>(Priority::kHigh);
  m.attr("PRIORITY_NORMAL") = static_cast<int>(Priority::kNormal);
  m.attr("PRIORITY_LOW") = static_cast<int>(Priority::kLow);

  py::class_<Scheduler>(m, "Scheduler", R"doc(
Decide which (job, node) runs next, by job priority, DAG readiness and resource limits.

Immediate tasks are served first; high, normal and low share the rest by smooth weighted round
robin. Thread-safe; only wait_next() blocks, and it releases the GIL.)doc")
      .def(py::init<const Scheduler::Weights&>(), py::arg("weights") = Scheduler::Weights{4, 2, 1},
           "Create a scheduler; weights of high, normal, low (each >= 1, else ValueError).")
      .def("add_graph", &Scheduler::add_graph, py::arg("num_nodes"), py::arg("edges"),
           py::arg("resources"), R"doc(
Register an immutable graph and return its id.

edges are (src, dst) pairs (dst runs after src); resources holds one resource id per node, -1 for
none. Raises ValueError on a bad node id, duplicate edge, wrong resources length or a cycle
("cycle: 2 -> 3 -> 2").)doc")
      .def("remove_graph", &Scheduler::remove_graph, py::arg("graph"),
           py::call_guard<py::gil_scoped_release>(), R"doc(
Forget a graph: submit() refuses it from now on; it is freed at once, or when the last of its
active jobs ends. ValueError on an unknown or already removed graph.)doc")
      .def("set_resource_limit", &Scheduler::set_resource_limit, py::arg("resource"),
           py::arg("limit"),
           "Let at most `limit` (>= 1) tasks of `resource` (>= 0) run at once; default unlimited.")
      .def("set_max_running", &Scheduler::set_max_running, py::arg("limit"), R"doc(
Let at most `limit` tasks run at once over all jobs (0: no cap, the default); the runtime sets
its number of workers, so that a caller running its own job never adds a thread.)doc")
      .def("submit", &Scheduler::submit, py::arg("graph"), py::arg("priority"),
           "Start a job of `graph` at `priority` (PRIORITY_*) and return its id; RuntimeError "
           "after shutdown().")
      .def("try_next", &Scheduler::try_next,
           "Pop the next ready (job, node) by priority policy, or None; never blocks.")
      .def("wait_next", &Scheduler::wait_next, py::arg("timeout_s"),
           py::call_guard<py::gil_scoped_release>(),  // blocks: let other threads run
           "Wait up to timeout_s seconds for a ready (job, node); None on timeout or shutdown.")
      .def("complete", &Scheduler::complete, py::arg("job"), py::arg("node"), R"doc(
Record that the running task (job, node) succeeded and return (finished, next_job, next_node).

Releases its successors and one parked task of its resource, then pops this worker's next task,
(-1, -1) if none. finished is True when this was the job's last task. ValueError if the task is not
running.)doc")
      .def("take_own", &Scheduler::take_own, py::arg("job"), R"doc(
Pop a ready (job, node) of `job` for the thread that waits on it, or None: none is ready, a more
urgent class has a ready task, or its resource is at its limit. Never blocks.)doc")
      .def("complete_own", &Scheduler::complete_own, py::arg("job"), py::arg("node"), R"doc(
Like complete(), but the next task is one of the same job (as take_own()), never another job's.)doc")
      .def("fail", &Scheduler::fail, py::arg("job"), R"doc(
Stop a job after a failure; its queued and parked tasks are dropped.

Return True if none of its tasks is running (the job is over now); otherwise the complete() of its
last running task returns finished=True. Unknown or finished job: False.)doc")
      .def("cancel", &Scheduler::cancel, py::arg("job"),
           "Stop a job at a user's request; same semantics as fail().")
      .def("shutdown", &Scheduler::shutdown,
           "Wake every waiter; wait_next() then returns None at once and submit() raises.")
      .def(
          "fast_calls",
          [](py::object self) {
            PyObject* calls = clara_rt::fast_calls(self.cast<Scheduler*>(), self.ptr());
            if (calls == nullptr) throw py::error_already_set();
            return py::reinterpret_steal<py::tuple>(calls);
          },
          R"doc(
Return (complete, complete_own, try_next, take_own, submit) bound to this scheduler: the same calls
with the same results, through the plain C API instead of pybind11's dispatcher (the per-task
path). They keep the scheduler alive.)doc")
      .def(
          "task_loop",
          [](py::object self, py::tuple types) {
            PyObject* loop = clara_rt::task_loop(self.cast<Scheduler*>(), self.ptr(), types.ptr());
            if (loop == nullptr) throw py::error_already_set();
            return py::reinterpret_steal<py::object>(loop);
          },
          py::arg("types"), R"doc(
Return run_tasks(runtime, job, job_id, node, own) -> (finished, next_job, next_node): the
runtime's task loop in C (clara_rt/tasks.py is the reference). types is (Inputs, Outputs,
JobState.PENDING, JobState.RUNNING). It runs (job_id, node) and the job's next tasks while
complete() (complete_own() when own) hands them to this thread, and hands symbolic ports,
stopped jobs and failures to the runtime's Python methods. Keeps the scheduler alive.)doc")
      .def("stats", &Scheduler::stats,
           "Return counters: jobs, ready tasks per class, parked, running, dispatched, slots.");

  m.def("bench_dispatch", &clara_rt::bench_dispatch, py::arg("num_jobs"), py::arg("chain_length"),
        py::arg("threads"), py::call_guard<py::gil_scoped_release>(),
        R"doc(
Time num_jobs * chain_length dispatches in pure C++ and return the elapsed seconds.

Submits num_jobs linear chains of no-op nodes at normal priority up front, then `threads`
std::threads run wait_next/complete loops until all jobs finish.)doc");
}
