// Fast entry points for the scheduler's per-task calls, in the plain Python C API.
//
// A worker calls complete() once per operator and try_next() once per chain (submit() once per
// job), so what a call
// costs in the binding layer is paid on every task. pybind11's generic dispatcher (argument
// loaders, overload resolution, a function_call record) costs several times what the scheduler
// itself does there; these functions parse two integers with METH_FASTCALL and build the result
// directly. They are bound to one Scheduler: the function's `self` is a capsule that holds the
// Scheduler and a reference to its Python object, so the Scheduler lives as long as any of them.
// C++ exceptions become ValueError (std::invalid_argument) or RuntimeError, as pybind11 maps them.
#pragma once

#include <Python.h>

#include "scheduler.hpp"

namespace clara_rt {

/// @brief Returns (complete, complete_own, try_next, take_own, submit) bound to `scheduler`, whose
/// Python object is `owner` (kept alive by them). Same signatures and results as the Scheduler
/// methods of those names. Returns nullptr with a Python error set on failure.
PyObject* fast_calls(Scheduler* scheduler, PyObject* owner);

}  // namespace clara_rt
