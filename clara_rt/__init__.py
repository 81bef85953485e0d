"""clara-rt: an in-process pipeline runtime for medical-imaging AI.

Operators run as threads and pass NumPy or CuPy arrays by reference through typed ports; a C++
scheduler dispatches the DAG and honours Clara job priorities::

    from clara_rt import Operator, Pipeline, Runtime

The names below are imported on first use (PEP 562), so ``import clara_rt`` costs nothing and
``from clara_rt import Operator`` loads the operator module only, not the executor and its C++
scheduler: a tool that only reads DICOM (``clara-rt convert``) starts in the time of its own
imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clara_rt.arrays import Array as Array
    from clara_rt.arrays import default_xp as default_xp
    from clara_rt.arrays import get_array_module as get_array_module
    from clara_rt.errors import BackendError as BackendError
    from clara_rt.errors import BackendUnavailableError as BackendUnavailableError
    from clara_rt.errors import ClaraRTError as ClaraRTError
    from clara_rt.errors import DefinitionError as DefinitionError
    from clara_rt.errors import JobCancelledError as JobCancelledError
    from clara_rt.errors import JobTimeoutError as JobTimeoutError
    from clara_rt.errors import OperatorError as OperatorError
    from clara_rt.errors import PipelineError as PipelineError
    from clara_rt.errors import PortTypeError as PortTypeError
    from clara_rt.errors import PriorityError as PriorityError
    from clara_rt.errors import RuntimeClosedError as RuntimeClosedError
    from clara_rt.errors import SchedulerError as SchedulerError
    from clara_rt.executor import Runtime as Runtime
    from clara_rt.executor import RuntimeStats as RuntimeStats
    from clara_rt.executor import run as run
    from clara_rt.job import Context as Context
    from clara_rt.job import Job as Job
    from clara_rt.job import JobState as JobState
    from clara_rt.job import JobStats as JobStats
    from clara_rt.job import Priority as Priority
    from clara_rt.observer import RuntimeObserver as RuntimeObserver
    from clara_rt.operator import Inputs as Inputs
    from clara_rt.operator import Operator as Operator
    from clara_rt.operator import OperatorSpec as OperatorSpec
    from clara_rt.operator import Outputs as Outputs
    from clara_rt.pipeline import Connection as Connection
    from clara_rt.pipeline import Pipeline as Pipeline
    from clara_rt.ports import PortSpec as PortSpec

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_HOMES: dict[str, str] = {
    **dict.fromkeys(("Array", "default_xp", "get_array_module"), "clara_rt.arrays"),
    **dict.fromkeys(("BackendError", "BackendUnavailableError", "ClaraRTError",
                     "DefinitionError", "JobCancelledError", "JobTimeoutError", "OperatorError",
                     "PipelineError", "PortTypeError", "PriorityError", "RuntimeClosedError",
                     "SchedulerError"), "clara_rt.errors"),
    **dict.fromkeys(("Runtime", "RuntimeStats", "run"), "clara_rt.executor"),
    **dict.fromkeys(("Context", "Job", "JobState", "JobStats", "Priority"), "clara_rt.job"),
    "RuntimeObserver": "clara_rt.observer",
    **dict.fromkeys(("Inputs", "Operator", "OperatorSpec", "Outputs"), "clara_rt.operator"),
    **dict.fromkeys(("Connection", "Pipeline"), "clara_rt.pipeline"),
    "PortSpec": "clara_rt.ports",
}

__all__ = [
    "Array",
    "BackendError",
    "BackendUnavailableError",
    "ClaraRTError",
    "Connection",
    "Context",
    "DefinitionError",
    "Inputs",
    "Job",
    "JobCancelledError",
    "JobState",
    "JobStats",
    "JobTimeoutError",
    "Operator",
    "OperatorError",
    "OperatorSpec",
    "Outputs",
    "Pipeline",
    "PipelineError",
    "PortSpec",
    "PortTypeError",
    "Priority",
    "PriorityError",
    "Runtime",
    "RuntimeClosedError",
    "RuntimeObserver",
    "RuntimeStats",
    "SchedulerError",
    "__version__",
    "default_xp",
    "get_array_module",
    "run",
]


def __getattr__(name: str) -> Any:
    """Import the public name ``name`` from its module on first use, then keep it here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'clara_rt' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
