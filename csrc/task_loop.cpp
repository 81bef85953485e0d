#include "task_loop.hpp"

#include <time.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>

namespace clara_rt {

namespace {

constexpr const char* kCapsule = "clara_rt._core.TaskLoop";

// PlanNode.hot: what one task reads of its node, in one tuple (clara_rt/plan.py keeps the order).
enum HotField : Py_ssize_t {
  kCompute = 0,  // bound compute(inputs, outputs, context)
  kInputs,       // ((port, slot), ...)
  kChecks,       // ((port, slot, check), ...)
  kNumOutputs,   // int
  kStart,        // index of the start time in job._times
  kEnd,          // index of the end time
  kIndex,        // node index (job._op_states)
  kRelease,      // (slot, ...) dropped after the node
  kOperator,     // the operator (Inputs._operator)
  kSlow,         // True: the node has symbolic ports; Python runs it
  kHotFields
};

// What run_tasks is bound to; holds a strong reference to each object (made and freed with the
// GIL held: by task_loop() and by the capsule's destructor).
struct Loop {
  Loop(Scheduler* bound, PyObject* scheduler_object, PyObject* types)
      : scheduler(bound),
        owner(scheduler_object),
        inputs_type(PyTuple_GET_ITEM(types, 0)),
        outputs_type(PyTuple_GET_ITEM(types, 1)),
        pending(PyTuple_GET_ITEM(types, 2)),
        running(PyTuple_GET_ITEM(types, 3)) {
    for (PyObject* held : {owner, inputs_type, outputs_type, pending, running}) Py_INCREF(held);
  }
  ~Loop() {
    for (PyObject* held : {owner, inputs_type, outputs_type, pending, running}) Py_DECREF(held);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  Scheduler* scheduler;
  PyObject* owner;  // the Python Scheduler
  PyObject* inputs_type;
  PyObject* outputs_type;
  PyObject* pending;
  PyObject* running;
};

// Interned names, made once under the GIL and kept for the life of the process.
struct Names {
  PyObject* plan;
  PyObject* nodes;
  PyObject* hot;
  PyObject* values;
  PyObject* times;
  PyObject* op_states;
  PyObject* context;
  PyObject* stop_reason;
  PyObject* state;
  PyObject* started_ns;
  PyObject* operator_;
  PyObject* succeeded;
  PyObject* run_task;
  PyObject* compute_failed;
  PyObject* bad_outputs;
  PyObject* stopped_outcome;
  PyObject* no_observers;
};
Names* names = nullptr;

bool make_names() {
  if (names != nullptr) return true;
  auto* made = new Names{};
  const char* texts[] = {"_plan",     "nodes",           "hot",          "_values",
                         "_times",    "_op_states",      "context",      "_stop_reason",
                         "_state",    "started_ns",      "_operator",    "succeeded",
                         "_run_task", "_compute_failed", "_bad_outputs", "_stopped_outcome"};
  PyObject** slots[] = {
      &made->plan,     &made->nodes,          &made->hot,         &made->values,
      &made->times,    &made->op_states,      &made->context,     &made->stop_reason,
      &made->state,    &made->started_ns,     &made->operator_,   &made->succeeded,
      &made->run_task, &made->compute_failed, &made->bad_outputs, &made->stopped_outcome};
  static_assert(sizeof(texts) / sizeof(texts[0]) == sizeof(slots) / sizeof(slots[0]));
  for (std::size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); ++i) {
    *slots[i] = PyUnicode_InternFromString(texts[i]);
    if (*slots[i] == nullptr) return false;  // leaks the few made: only on out-of-memory
  }
  made->no_observers = PyTuple_New(0);
  if (made->no_observers == nullptr) return false;
  names = made;
  return true;
}

// An owned reference, released at scope exit.
class Ref {
 public:
  explicit Ref(PyObject* object = nullptr) : object_(object) {}
  ~Ref() { Py_XDECREF(object_); }
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  PyObject* get() const { return object_; }
  explicit operator bool() const { return object_ != nullptr; }

 private:
  PyObject* object_;
};

std::int64_t now_ns() {  // the clock of time.perf_counter_ns() on Linux
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// list[index] as Python reads it (a negative index counts from the end); borrowed.
PyObject* list_get(PyObject* list, Py_ssize_t index) {
  const Py_ssize_t size = PyList_GET_SIZE(list);
  if (index < 0) index += size;
  if (index < 0 || index >= size) {
    PyErr_SetString(PyExc_IndexError, "clara-rt task loop: slot index out of range");
    return nullptr;
  }
  return PyList_GET_ITEM(list, index);
}

// list[index] = value (a new reference is taken); false with IndexError set.
bool list_set(PyObject* list, Py_ssize_t index, PyObject* value) {
  const Py_ssize_t size = PyList_GET_SIZE(list);
  if (index < 0) index += size;
  if (index < 0 || index >= size) {
    PyErr_SetString(PyExc_IndexError, "clara-rt task loop: slot index out of range");
    return false;
  }
  Py_INCREF(value);
  PyList_SetItem(list, index, value);  // steals the new reference, drops the old value
  return true;
}

// Calls runtime.<name>(args...) and drops the result; false with the error set.
template <typename... Args>
bool call_method(PyObject* runtime, PyObject* name, Args... args) {
  Ref result(PyObject_CallMethodObjArgs(runtime, name, args..., nullptr));
  return static_cast<bool>(result);
}

// The job's tables that stay the same while any of its tasks runs.
struct JobTables {
  PyObject* job;
  PyObject* nodes;
  PyObject* values;
  PyObject* times;
  PyObject* op_states;
  PyObject* context;
};

// Runs the fast path of one task whose compute returned: checks and stores the outputs, marks the
// operator, drops released inputs. False with an error set (a bug, or a Python hook raised).
bool finish_task(PyObject* runtime, const JobTables& t, PyObject* node, PyObject* hot,
                 PyObject* outputs) {
  bool ok = PyDict_Size(outputs) == PyLong_AsSsize_t(PyTuple_GET_ITEM(hot, kNumOutputs));
  if (PyErr_Occurred()) return false;
  PyObject* checks = PyTuple_GET_ITEM(hot, kChecks);
  for (Py_ssize_t i = 0; ok && i < PyTuple_GET_SIZE(checks); ++i) {
    PyObject* entry = PyTuple_GET_ITEM(checks, i);
    PyObject* value = PyDict_GetItemWithError(outputs, PyTuple_GET_ITEM(entry, 0));
    if (value == nullptr) {
      if (PyErr_Occurred()) return false;
      ok = false;  // as many outputs as declared, but not the declared names
      break;
    }
    Py_INCREF(value);  // held across the checker, which is Python code
    Ref held(value);
    Ref problem(PyObject_CallOneArg(PyTuple_GET_ITEM(entry, 2), value));
    if (!problem) return false;
    if (problem.get() != Py_None) {
      ok = false;
      break;
    }
    if (!list_set(t.values, PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 1)), value)) return false;
  }
  if (!ok) return call_method(runtime, names->bad_outputs, t.job, node, outputs);
  Ref stop(PyObject_GetAttr(t.job, names->stop_reason));
  if (!stop) return false;
  const Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(hot, kIndex));
  if (stop.get() == Py_None) {
    if (!list_set(t.op_states, index, names->succeeded)) return false;
  } else {
    Ref outcome(PyObject_CallMethodObjArgs(runtime, names->stopped_outcome, t.job, nullptr));
    if (!outcome || !list_set(t.op_states, index, outcome.get())) return false;
  }
  PyObject* release = PyTuple_GET_ITEM(hot, kRelease);
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(release); ++i) {
    if (!list_set(t.values, PyLong_AsSsize_t(PyTuple_GET_ITEM(release, i)), Py_None)) return false;
  }
  return true;
}

// Runs one task as TaskRunner._run_task does; false with an error set only for what the Python
// version would raise (a failing operator is recorded on its job, not raised).
bool run_task(const Loop& loop, PyObject* runtime, const JobTables& t, std::int64_t node_id) {
  if (node_id < 0 || node_id >= PyTuple_GET_SIZE(t.nodes)) {
    PyErr_Format(PyExc_IndexError, "clara-rt task loop: node %lld out of range",
                 static_cast<long long>(node_id));
    return false;
  }
  PyObject* node = PyTuple_GET_ITEM(t.nodes, node_id);
  Ref hot(PyObject_GetAttr(node, names->hot));
  if (!hot) return false;
  if (!PyTuple_Check(hot.get()) || PyTuple_GET_SIZE(hot.get()) != kHotFields) {
    PyErr_SetString(PyExc_TypeError, "clara-rt task loop: PlanNode.hot is not its 10-tuple");
    return false;
  }
  Ref stop(PyObject_GetAttr(t.job, names->stop_reason));
  if (!stop) return false;
  if (stop.get() != Py_None) return true;  // the job was stopped: nothing more of it runs
  if (PyTuple_GET_ITEM(hot.get(), kSlow) == Py_True) {
    return call_method(runtime, names->run_task, t.job, node);
  }
  Ref inputs(PyObject_CallNoArgs(loop.inputs_type));
  if (!inputs) return false;
  if (PyObject_SetAttr(inputs.get(), names->operator_, PyTuple_GET_ITEM(hot.get(), kOperator)) <
      0) {
    return false;
  }
  PyObject* ports = PyTuple_GET_ITEM(hot.get(), kInputs);
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ports); ++i) {
    PyObject* entry = PyTuple_GET_ITEM(ports, i);
    PyObject* value = list_get(t.values, PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 1)));
    if (value == nullptr || PyDict_SetItem(inputs.get(), PyTuple_GET_ITEM(entry, 0), value) < 0) {
      return false;
    }
  }
  Ref outputs(PyObject_CallNoArgs(loop.outputs_type));
  if (!outputs) return false;
  Ref start(PyLong_FromLongLong(now_ns()));  // visible while it runs (Job.operator_states)
  if (!start ||
      !list_set(t.times, PyLong_AsSsize_t(PyTuple_GET_ITEM(hot.get(), kStart)), start.get())) {
    return false;
  }
  Ref state(PyObject_GetAttr(t.job, names->state));
  if (!state) return false;
  if (state.get() == loop.pending &&
      (PyObject_SetAttr(t.job, names->state, loop.running) < 0 ||
       PyObject_SetAttr(t.job, names->started_ns, start.get()) < 0)) {
    return false;
  }
  PyObject* args[3] = {inputs.get(), outputs.get(), t.context};
  PyObject* result = PyObject_Vectorcall(PyTuple_GET_ITEM(hot.get(), kCompute), args, 3, nullptr);
  const std::int64_t end_ns = now_ns();
  const Py_ssize_t end = PyLong_AsSsize_t(PyTuple_GET_ITEM(hot.get(), kEnd));
  if (result == nullptr) {  // compute raised (anything, SystemExit too): record it on the job
    PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    Ref error(value);
    Ref end_time(PyLong_FromLongLong(end_ns));
    if (!error || !end_time || !list_set(t.times, end, end_time.get())) return false;
    return call_method(runtime, names->compute_failed, t.job, node, error.get(),
                       names->no_observers);
  }
  Py_DECREF(result);
  Ref end_time(PyLong_FromLongLong(end_ns));
  if (!end_time || !list_set(t.times, end, end_time.get())) return false;
  return finish_task(runtime, t, node, hot.get(), outputs.get());
}

// Returns owner.<name> (a new reference) if it is a tuple (`tuple`) or a list, else nullptr with
// an error set.
PyObject* table_of(PyObject* owner, PyObject* name, bool tuple) {
  PyObject* table = PyObject_GetAttr(owner, name);
  if (table != nullptr && (tuple ? !PyTuple_Check(table) : !PyList_Check(table))) {
    PyErr_Format(PyExc_TypeError, "clara-rt task loop: %R is not a %s", name,
                 tuple ? "tuple" : "list");
    Py_CLEAR(table);
  }
  return table;
}

PyObject* run_tasks(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 5) {
    PyErr_Format(PyExc_TypeError, "run_tasks() takes 5 arguments (%zd given)", nargs);
    return nullptr;
  }
  const Loop& loop = *static_cast<Loop*>(PyCapsule_GetPointer(self, kCapsule));
  PyObject* runtime = args[0];
  const std::int64_t job_id = PyLong_AsLongLong(args[2]);
  std::int64_t node = PyLong_AsLongLong(args[3]);
  const int own = PyObject_IsTrue(args[4]);
  if (PyErr_Occurred() || own < 0) return nullptr;
  JobTables t{args[1], nullptr, nullptr, nullptr, nullptr, nullptr};
  Ref plan(PyObject_GetAttr(t.job, names->plan));
  if (!plan) return nullptr;
  Ref nodes(table_of(plan.get(), names->nodes, true));
  if (!nodes) return nullptr;
  Ref values(table_of(t.job, names->values, false));
  if (!values) return nullptr;
  Ref times(table_of(t.job, names->times, false));
  if (!times) return nullptr;
  Ref op_states(table_of(t.job, names->op_states, false));
  if (!op_states) return nullptr;
  Ref context(PyObject_GetAttr(t.job, names->context));
  if (!context) return nullptr;
  t.nodes = nodes.get();
  t.values = values.get();
  t.times = times.get();
  t.op_states = op_states.get();
  t.context = context.get();
  Scheduler::Completion done;
  try {
    while (true) {
      if (!run_task(loop, runtime, t, node)) return nullptr;
      done =
          own ? loop.scheduler->complete_own(job_id, node) : loop.scheduler->complete(job_id, node);
      node = std::get<2>(done);
      if (std::get<0>(done) || std::get<1>(done) != job_id) break;
    }
  } catch (const std::exception& error) {
    const bool invalid = dynamic_cast<const std::invalid_argument*>(&error) != nullptr;
    PyErr_SetString(invalid ? PyExc_ValueError : PyExc_RuntimeError, error.what());
    return nullptr;
  }
  return Py_BuildValue("(OLL)", std::get<0>(done) ? Py_True : Py_False,
                       static_cast<long long>(std::get<1>(done)), static_cast<long long>(node));
}

void free_loop(PyObject* capsule) {
  delete static_cast<Loop*>(PyCapsule_GetPointer(capsule, kCapsule));
}

PyMethodDef kRunTasks = {
    "run_tasks", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(run_tasks)),
    METH_FASTCALL, "run_tasks(runtime, job, job_id, node, own) -> (finished, next_job, next_node)"};

}  // namespace

PyObject* task_loop(Scheduler* scheduler, PyObject* owner, PyObject* types) {
  if (!PyTuple_Check(types) || PyTuple_GET_SIZE(types) != 4) {
    PyErr_SetString(PyExc_TypeError,
                    "task_loop() takes (Inputs, Outputs, JobState.PENDING, JobState.RUNNING)");
    return nullptr;
  }
  if (!make_names()) return nullptr;
  auto* loop = new Loop(scheduler, owner, types);
  PyObject* capsule = PyCapsule_New(loop, kCapsule, free_loop);
  if (capsule == nullptr) {
    delete loop;
    return nullptr;
  }
  PyObject* function = PyCFunction_New(&kRunTasks, capsule);
  Py_DECREF(capsule);  // the function holds it
  return function;
}

}  // namespace clara_rt
