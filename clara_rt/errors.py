"""Exceptions raised by clara-rt.

Everything clara-rt raises on purpose derives from :class:`ClaraRTError`, so a caller can catch the
whole family in one place. Each class says when it is raised and what the caller can do about it.
"""

from __future__ import annotations


class ClaraRTError(Exception):
    """Base class of every error clara-rt raises on purpose."""


class PipelineError(ClaraRTError):
    """The pipeline is wired wrongly.

    Raised while a pipeline is built (``Pipeline.add``, ``Pipeline.connect``,
    ``Pipeline.validate``) or when a job is submitted with a payload that does not match the
    pipeline's open inputs: unknown operator or port, duplicate operator name, incompatible port
    types, a cycle, a missing input. The message names the operator and port and lists the valid
    choices; fix the pipeline.
    """


class PriorityError(ClaraRTError, ValueError):
    """A priority that is not one of ``immediate``, ``high``, ``normal``, ``low`` (or 0..3).

    Raised by :meth:`clara_rt.Priority.parse` (so by ``Runtime.submit``, the server and the
    CLI); also a :class:`ValueError`. The message lists the valid names.
    """


class PortTypeError(PipelineError):
    """A value broke the type its port declares (dtype, shape, device, kind).

    Raised at run time when an operator emits, or a payload supplies, a value that does not match
    the port's :class:`~clara_rt.PortSpec`. The job fails; the message says which operator, which
    port, what was expected and what arrived.
    """


class DefinitionError(ClaraRTError):
    """A pipeline definition file (Clara YAML) is invalid.

    Carries ``path``, ``line`` and ``column`` (1-based, or ``None`` when unknown) so that
    ``clara-rt validate`` can point at the offending spot; the message starts with
    ``path:line:column: `` (or as much of it as is known). Fix the file and load it again.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = path or ""
        if path and line:
            where += f":{line}:{column}" if column else f":{line}"
        super().__init__(f"{where}: {message}" if where else message)


class NotFound(ClaraRTError, LookupError):
    """No record with that id or name (a pipeline, job, payload or export of the server).

    Raised by the platform server's registries (also a :class:`LookupError`); its REST API
    answers 404 with the message. Check the id (``clara-rt list jobs``, ``GET /pipelines``).
    """


class Conflict(ClaraRTError, RuntimeError):
    """The request clashes with the server's records as they are now: a name already taken, a
    record still in use, a job that has already ended.

    Raised by the platform server (also a :class:`RuntimeError`); its REST API answers 409 with
    the message. Change the request, or wait for the record to be free.
    """


class ClientError(ClaraRTError):
    """A request of :class:`clara_rt.client.Client` failed.

    Carries ``status``: the HTTP status the server answered, or ``None`` when none came back
    (server unreachable, connection dropped). The message is the server's ``detail``; a 401
    means a missing or wrong token, 404 an unknown id.
    """

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


class SchedulerError(ClaraRTError):
    """The C++ scheduler core rejected a request.

    Converted from the ``ValueError`` / ``RuntimeError`` that ``clara_rt._core`` raises. Usually a
    bug in clara-rt itself, or a call on a runtime that has been closed; report it with the message.
    """


class RuntimeClosedError(ClaraRTError):
    """A job was submitted to a :class:`~clara_rt.Runtime` after ``close()``.

    Create a new runtime to run more jobs.
    """


class OperatorError(ClaraRTError):
    """An operator's ``compute`` (or ``start``) raised.

    Carries ``operator`` (its name), ``job_id`` (the job's public id, ``None`` in ``start``) and
    ``traceback`` (the formatted traceback text of the original exception, which is also chained
    as ``__cause__``). Only the failing job fails;
    other jobs and the worker threads carry on.
    """

    def __init__(self, message: str, *, operator: str, job_id: str | None,
                 traceback: str = "") -> None:
        self.operator = operator
        self.job_id = job_id
        self.traceback = traceback
        super().__init__(message)


class JobCancelledError(ClaraRTError):
    """``job.result()`` was called on a job that was cancelled (``job.cancel()`` or shutdown)."""


class JobTimeoutError(ClaraRTError, TimeoutError):
    """The job ran past the ``timeout`` given to ``Runtime.submit``; it was stopped.

    Also a :class:`TimeoutError`. Operators already running finish in the background and their
    outputs are discarded; raise the timeout if the pipeline legitimately needs longer.
    """


class BackendError(ClaraRTError):
    """An inference backend failed. Carries ``model`` and ``url`` where known."""

    def __init__(self, message: str, *, model: str | None = None, url: str | None = None) -> None:
        self.model = model
        self.url = url
        super().__init__(message)


class BackendUnavailableError(BackendError):
    """The inference server is unreachable or the model is not ready; retry later or check it."""


class DeviceUnavailableError(ClaraRTError, ValueError):
    """A pipeline or job asked for ``device: cuda`` where CuPy finds no CUDA device.

    Raised before anything runs (``clara-rt run`` exits 2, the server refuses the job with
    400). Ask for ``cpu``, or ``auto`` (the GPU when there is one), or install CuPy for the
    machine's CUDA version.
    """


class PackageError(ClaraRTError):
    """``clara-rt package`` cannot write a bundle (see :mod:`clara_rt.package`).

    Raised for a wheel that cannot be built or downloaded (the message ends with pip's last
    lines), a ``--clara-rt-wheel`` for another target, or an output folder in the way. Nothing
    is left half-written; fix what the message names and run the command again.
    """
