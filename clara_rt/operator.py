"""The Operator base class, its port declarations, and what ``compute`` receives.

Lifecycle: ``setup(spec)`` once, when the operator is added to a pipeline (declare ports);
``start()`` once per runtime before its first ``compute``; ``compute(inputs, outputs, context)``
once per job; ``stop()`` when the runtime closes. One operator instance serves every job of its
pipeline, possibly from several worker threads at once: set ``thread_safe = False`` (class
attribute or constructor keyword) and the scheduler never runs it twice at the same time, or
``max_concurrency = N`` to allow at most N at once.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any, ClassVar

from clara_rt.errors import PipelineError
from clara_rt.ports import PortSpec

if TYPE_CHECKING:
    from clara_rt.job import Context

__all__ = ["Inputs", "Operator", "OperatorSpec", "Outputs"]

_name_counters: defaultdict[str, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
_name_lock = threading.Lock()
_RESERVED = frozenset({"name", "spec", "setup", "start", "compute", "stop"})


class OperatorSpec:
    """Ports declared by one operator in ``setup``.

    ``spec.input("in", dtype="float32", shape=(-1, -1))`` or ``spec.input(PortSpec(...))``; the
    same for ``output``. Declaring a port name twice raises :class:`PipelineError`.
    """

    def __init__(self, operator_name: str) -> None:
        self.operator_name = operator_name
        self.inputs: dict[str, PortSpec] = {}
        self.outputs: dict[str, PortSpec] = {}

    def input(self, port: str | PortSpec, **kwargs: Any) -> PortSpec:
        """Declare an input port; keyword arguments are :class:`PortSpec` fields."""
        return self._declare(self.inputs, "input", port, kwargs)

    def output(self, port: str | PortSpec, **kwargs: Any) -> PortSpec:
        """Declare an output port; keyword arguments are :class:`PortSpec` fields."""
        return self._declare(self.outputs, "output", port, kwargs)

    def _declare(self, ports: dict[str, PortSpec], direction: str, port: str | PortSpec,
                 kwargs: dict[str, Any]) -> PortSpec:
        try:
            spec = port if isinstance(port, PortSpec) else PortSpec(port, **kwargs)
        except (TypeError, ValueError) as exc:
            raise PipelineError(f"operator '{self.operator_name}': {direction} {exc}") from exc
        if isinstance(port, PortSpec) and kwargs:
            raise PipelineError(f"operator '{self.operator_name}': pass either a PortSpec or "
                                f"keyword arguments for {direction} '{spec.name}', not both")
        if spec.name in ports:
            raise PipelineError(f"operator '{self.operator_name}' declares {direction} "
                                f"'{spec.name}' twice")
        ports[spec.name] = spec
        return spec


class Inputs(dict[str, Any]):
    """Values an operator receives, by input port name (the very objects the producers emitted).

    ``inputs["volume"]`` or ``inputs.receive("volume")``. Values are shared with other consumers
    and must be treated as read-only.
    """

    __slots__ = ("_operator",)
    _operator: Operator

    def receive(self, port: str) -> Any:
        """Return the value on input ``port``."""
        return self[port]

    def __missing__(self, port: str) -> Any:
        op: Operator = self._operator
        names = ", ".join(op.spec.inputs) or "(none)"
        raise PipelineError(f"operator '{op.name}' has no input '{port}'; inputs are: {names}")


class Outputs(dict[str, Any]):
    """Values an operator emits, by output port name: ``outputs["mask"] = m`` or ``emit``.

    Every declared output must be emitted by ``compute``; the runtime checks each value against
    its port and hands the object itself (no copy) to every consumer.
    """

    __slots__ = ()

    def emit(self, port: str, value: Any) -> None:
        """Emit ``value`` on output ``port``."""
        self[port] = value


class Operator:
    """Base class of every operator.

    Subclasses override :meth:`setup` to declare ports and :meth:`compute` to do the work.
    Keyword arguments become attributes, so ``Scale("a", factor=2.0)`` has ``self.factor == 2.0``;
    a subclass may instead define its own ``__init__`` and call ``super().__init__(name)``.

    Args:
        name: Unique name in its pipeline (no dots or whitespace); defaults to ``"<Class>-<n>"``.
        **params: Parameters, set as attributes. ``thread_safe`` and ``max_concurrency`` here
            override the class attributes of the same names.
    """

    thread_safe: ClassVar[bool] = True
    """``False``: never run two ``compute`` calls of this instance at once."""
    max_concurrency: ClassVar[int | None] = None
    """At most this many concurrent ``compute`` calls of this instance (``None``: no limit)."""
    preload: ClassVar[tuple[str, ...]] = ()
    """Modules ``compute`` imports lazily (``"scipy.ndimage"``), or ``"module:function"`` to
    call once (a cache to fill). The runtime imports them on a background thread when it first
    registers a pipeline holding this operator, so a cold process loads them while earlier
    operators run; importing stays lazy for processes that never run the operator."""

    def __init__(self, name: str | None = None, /, **params: Any) -> None:
        if name is None:
            cls = type(self).__name__
            with _name_lock:
                name = f"{cls}-{next(_name_counters[cls])}"
        _check_name(name)
        self.name = name
        for key, value in params.items():
            if key.startswith("_") or key in _RESERVED:
                raise PipelineError(f"operator '{name}': parameter name '{key}' is reserved")
            setattr(self, key, value)
        self._spec: OperatorSpec | None = None

    @property
    def spec(self) -> OperatorSpec:
        """The ports declared by :meth:`setup` (runs ``setup`` the first time)."""
        if self._spec is None:
            spec = OperatorSpec(self.name)
            self.setup(spec)
            self._spec = spec
        return self._spec

    def concurrency_limit(self) -> int | None:
        """Return how many ``compute`` calls may run at once (``None``: unlimited)."""
        if not self.thread_safe:
            return 1
        limit = self.max_concurrency
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise PipelineError(f"operator '{self.name}': max_concurrency must be an int >= 1 "
                                f"or None, got {limit!r}")
        return limit

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ports with ``spec.input(...)`` / ``spec.output(...)``. Default: none."""

    def start(self) -> None:
        """Prepare before the first ``compute`` in a runtime (load a model, open a client)."""

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Read ``inputs``, write every output to ``outputs``. Called once per job."""
        raise NotImplementedError(f"{type(self).__name__}.compute() is not implemented")

    def stop(self) -> None:
        """Release what ``start`` acquired; called when the runtime closes."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.name}'>"


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name or "." in name or any(c.isspace() for c in name):
        raise PipelineError(f"operator name must be a non-empty string without dots or "
                            f"whitespace, got {name!r}")
