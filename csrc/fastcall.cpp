#include "fastcall.hpp"

#include <stdexcept>

namespace clara_rt {

namespace {

constexpr const char* kCapsule = "clara_rt._core.Scheduler";

struct Bound {
  Scheduler* scheduler;
  PyObject* owner;  // the Python Scheduler: a strong reference
};

void free_bound(PyObject* capsule) {
  auto* bound = static_cast<Bound*>(PyCapsule_GetPointer(capsule, kCapsule));
  if (bound == nullptr) return;
  Py_XDECREF(bound->owner);
  delete bound;
}

Scheduler* scheduler_of(PyObject* capsule) {
  return static_cast<Bound*>(PyCapsule_GetPointer(capsule, kCapsule))->scheduler;
}

// Parses `count` integer arguments; false with a TypeError/OverflowError set otherwise.
bool parse_ints(const char* name, PyObject* const* args, Py_ssize_t nargs, Py_ssize_t count,
                std::int64_t* out) {
  if (nargs != count) {
    PyErr_Format(PyExc_TypeError, "%s() takes %zd argument(s) (%zd given)", name, count, nargs);
    return false;
  }
  for (Py_ssize_t i = 0; i < count; ++i) {
    out[i] = PyLong_AsLongLong(args[i]);
    if (out[i] == -1 && PyErr_Occurred()) return false;
  }
  return true;
}

void set_error(const std::exception& error) {
  const bool invalid = dynamic_cast<const std::invalid_argument*>(&error) != nullptr;
  PyErr_SetString(invalid ? PyExc_ValueError : PyExc_RuntimeError, error.what());
}

// Builds a tuple of `count` new references (nullptr items: an error is set, the rest freed).
PyObject* tuple_of(PyObject* const* items, Py_ssize_t count) {
  PyObject* tuple = nullptr;
  bool ok = true;
  for (Py_ssize_t i = 0; i < count; ++i) ok = ok && items[i] != nullptr;
  if (ok) tuple = PyTuple_New(count);
  for (Py_ssize_t i = 0; i < count; ++i) {
    if (tuple != nullptr) {
      PyTuple_SET_ITEM(tuple, i, items[i]);
    } else {
      Py_XDECREF(items[i]);
    }
  }
  return tuple;
}

PyObject* task_or_none(const std::optional<Scheduler::TaskId>& task) {
  if (!task) Py_RETURN_NONE;
  PyObject* items[2] = {PyLong_FromLongLong(task->first), PyLong_FromLongLong(task->second)};
  return tuple_of(items, 2);
}

PyObject* completion(const Scheduler::Completion& done) {
  PyObject* items[3] = {PyBool_FromLong(std::get<0>(done) ? 1 : 0),
                        PyLong_FromLongLong(std::get<1>(done)),
                        PyLong_FromLongLong(std::get<2>(done))};
  return tuple_of(items, 3);
}

PyObject* complete(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  std::int64_t ids[2];
  if (!parse_ints("complete", args, nargs, 2, ids)) return nullptr;
  try {
    return completion(scheduler_of(self)->complete(ids[0], ids[1]));
  } catch (const std::exception& error) {
    set_error(error);
    return nullptr;
  }
}

PyObject* complete_own(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  std::int64_t ids[2];
  if (!parse_ints("complete_own", args, nargs, 2, ids)) return nullptr;
  try {
    return completion(scheduler_of(self)->complete_own(ids[0], ids[1]));
  } catch (const std::exception& error) {
    set_error(error);
    return nullptr;
  }
}

PyObject* try_next(PyObject* self, PyObject* const* /*args*/, Py_ssize_t nargs) {
  if (!parse_ints("try_next", nullptr, nargs, 0, nullptr)) return nullptr;
  try {
    return task_or_none(scheduler_of(self)->try_next());
  } catch (const std::exception& error) {
    set_error(error);
    return nullptr;
  }
}

PyObject* take_own(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  std::int64_t job;
  if (!parse_ints("take_own", args, nargs, 1, &job)) return nullptr;
  try {
    return task_or_none(scheduler_of(self)->take_own(job));
  } catch (const std::exception& error) {
    set_error(error);
    return nullptr;
  }
}

PyObject* submit(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  std::int64_t ids[2];
  if (!parse_ints("submit", args, nargs, 2, ids)) return nullptr;
  try {
    return PyLong_FromLongLong(scheduler_of(self)->submit(ids[0], ids[1]));
  } catch (const std::exception& error) {
    set_error(error);
    return nullptr;
  }
}

PyMethodDef kMethods[] = {
    {"complete", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(complete)),
     METH_FASTCALL, "Scheduler.complete(job, node) (fast path)."},
    {"complete_own", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(complete_own)),
     METH_FASTCALL, "Scheduler.complete_own(job, node) (fast path)."},
    {"try_next", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(try_next)),
     METH_FASTCALL, "Scheduler.try_next() (fast path)."},
    {"take_own", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(take_own)),
     METH_FASTCALL, "Scheduler.take_own(job) (fast path)."},
    {"submit", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(submit)), METH_FASTCALL,
     "Scheduler.submit(graph, priority) (fast path)."},
};

}  // namespace

PyObject* fast_calls(Scheduler* scheduler, PyObject* owner) {
  auto* bound = new Bound{scheduler, owner};
  Py_INCREF(owner);
  PyObject* capsule = PyCapsule_New(bound, kCapsule, free_bound);
  if (capsule == nullptr) {
    Py_DECREF(owner);
    delete bound;
    return nullptr;
  }
  constexpr Py_ssize_t kCount = sizeof(kMethods) / sizeof(kMethods[0]);
  PyObject* result = PyTuple_New(kCount);
  if (result != nullptr) {
    for (Py_ssize_t i = 0; i < kCount; ++i) {
      PyObject* function = PyCFunction_New(&kMethods[i], capsule);
      if (function == nullptr) {
        Py_CLEAR(result);
        break;
      }
      PyTuple_SET_ITEM(result, i, function);
    }
  }
  Py_DECREF(capsule);  // the functions hold it
  return result;
}

}  // namespace clara_rt
