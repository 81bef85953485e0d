// The runtime's per-task hot path in the plain Python C API: run one job's ready operators back to
// back on the calling thread, completing each in the scheduler directly.
//
// The Python runtime (clara_rt/tasks.py, TaskRunner._run_task) is the reference: this loop does
// the same for an operator without symbolic port dimensions (gather its inputs into an Inputs
// dict, stamp its start, call compute, stamp its end, check each output with its port's checker,
// store it in its slot, mark the operator succeeded, drop inputs nobody else reads), and hands
// everything else back to Python methods of the runtime passed in: a node with symbolic ports or
// a job that has been stopped (_run_task), compute raising (_compute_failed), outputs that do not
// fit (_bad_outputs), an operator that succeeds after its job was stopped (_stopped_outcome). What
// the interpreter costs per task there (two port dicts, stores, two clock reads, a tuple built
// and unpacked by complete()) was most of a no-op operator's time.
#pragma once

#include <Python.h>

#include "scheduler.hpp"

namespace clara_rt {

/// @brief Returns run_tasks(runtime, job, job_id, node, own) -> (finished, next_job, next_node)
/// bound to `scheduler` (owned by the Python object `owner`, kept alive by the function).
///
/// `types` is (Inputs, Outputs, JobState.PENDING, JobState.RUNNING): what the loop makes and
/// compares against, held by the function. run_tasks runs (job_id, node) of `job` and, as long as
/// complete() (complete_own() when `own` is true) hands back a task of the same job, that one
/// too; it returns the last completion, exactly what the scheduler's complete() returns. Returns
/// nullptr with a Python error set on failure.
PyObject* task_loop(Scheduler* scheduler, PyObject* owner, PyObject* types);

}  // namespace clara_rt
