"""clara-rt: an in-process pipeline runtime for medical-imaging AI.

Operators run as threads and pass NumPy or CuPy arrays by reference through typed ports; a C++
scheduler dispatches the DAG and honours Clara job priorities::

    from clara_rt import Operator, Pipeline, Runtime
"""

from __future__ import annotations

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
