"""A cluster job as the server and :class:`~clara_rt.cluster.ClusterRuntime` see it
(:class:`RayRun`), what a node needs to run it (:class:`RunSpec`), the runner's view of the
cluster (:class:`ClusterState`) and the cluster errors. :mod:`.ray_runner` places and moves runs
(counting them on the slots of :mod:`.slot_table`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clara_rt.cluster.transport import place_results
from clara_rt.errors import ClaraRTError
from clara_rt.job import JobState
from clara_rt.runner.needs import JobNeeds
from clara_rt.runner.protocol import RunHandle

if TYPE_CHECKING:
    from clara_rt.cluster.ray_runner import RayRunner

__all__ = ["ClusterError", "ClusterState", "ClusterUnavailableError", "RayRun", "RunSpec", "Slot"]

log = logging.getLogger("clara_rt.cluster")

_ROWS_EVERY = 0.5  # seconds a running job's operator rows are cached
_ROWS_WAIT = 0.2  # seconds operator_rows() waits for fresh rows


class ClusterError(ClaraRTError):
    """A cluster job failed; the message says where and why (``job.error`` on the server)."""


class ClusterUnavailableError(ClusterError):
    """The Ray cluster cannot be reached (or the runner is closed). Check the address, that the
    cluster runs and that this machine may connect (token authentication: ``RAY_AUTH_MODE``,
    ``RAY_AUTH_TOKEN``), then try again."""


@dataclass(frozen=True, slots=True)
class ClusterState:
    """A snapshot of the runner's view of the cluster."""

    address: str
    available: bool
    nodes: int
    """Alive nodes Ray reports."""
    slots: int
    """Ready node runtimes (actors)."""
    capacity: int
    """Jobs the slots can run at once."""
    running: int
    """Jobs sent to a slot and not finished."""
    waiting: int
    """Jobs waiting inside the runner for a slot (re-queued after a node died)."""
    reason: str | None
    """Why the cluster is unavailable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSpec:
    """What a node needs to run one job (fields by name only)."""

    job_id: str
    key: tuple[Any, ...]
    """Pipeline identity and version: nodes cache the built pipeline per key and variables."""
    name: str
    text: str
    """The pipeline's YAML."""
    variables: dict[str, str]
    priority: str
    timeout: float | None
    needs: JobNeeds = field(default_factory=JobNeeds)
    job_name: str = ""
    """The job's name (``NVIDIA_CLARA_JOBNAME``); empty: ``<pipeline>-<job id>``."""


@dataclass(eq=False)
class Slot:
    """A ready node runtime as the runner counts it: capacity and what runs on it."""

    id: str
    node_id: str
    placement: str
    capacity: int
    gpus: int
    memory: int
    running: int = 0
    gpu_running: int = 0
    last: float = 0.0


class RayRun:
    """A job on the cluster: the :class:`~clara_rt.runner.protocol.RunHandle` of RayRunner."""

    def __init__(self, runner: RayRunner, spec: RunSpec, message: dict[str, Any],
                 transport: str) -> None:
        self.spec = spec
        self.placement = "waiting for a cluster node"
        self.transport = transport
        self.message = message
        self.attempt = 0
        self.excluded: set[str] = set()
        self.losses: list[str] = []
        self.slot: Slot | None = None
        self.cancel_requested = False
        self.finished = False
        self.started = False  # start() has returned: placements after it are announced
        self._runner = runner
        self._state = JobState.PENDING
        self._error: str | None = None
        self._rows: list[dict[str, Any]] = []
        self._rows_at = 0.0
        self._rows_pending: Future[Any] | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[RunHandle], None]] = []
        self._note_callbacks: list[Callable[[RunHandle, str], None]] = []
        self._notes: list[str] = []

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def error(self) -> str | None:
        return self._error

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends; return whether it has."""
        return self._done.wait(timeout)

    def cancel(self) -> None:
        self._runner._cancel(self)

    def add_done_callback(self, fn: Callable[[RunHandle], None]) -> None:
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        _call(fn, self)

    def add_note_callback(self, fn: Callable[[RunHandle, str], None]) -> None:
        """Call ``fn(run, note)`` when the run moves (re-queued, placed on another node)."""
        with self._lock:
            self._note_callbacks.append(fn)
            notes, self._notes = self._notes, []
        for note in notes:
            _call(fn, self, note)

    def operator_rows(self) -> list[dict[str, Any]]:
        """The latest operator rows; a running job's are fetched from its node at most every
        0.5 s, waiting at most 0.2 s (else the previous rows)."""
        if self._done.is_set():
            return self._rows
        with self._lock:
            now = time.monotonic()
            if (self._rows_pending is None and self.slot is not None
                    and now - self._rows_at > _ROWS_EVERY):
                self._rows_at = now
                self._rows_pending = self._runner._request_rows(self.job_id)
            pending = self._rows_pending
        if pending is not None:
            try:
                rows = pending.result(timeout=_ROWS_WAIT)
            except FutureTimeout:
                return self._rows
            with self._lock:
                if self._rows_pending is pending:
                    self._rows_pending = None
                if rows is not None and not self._done.is_set():
                    self._rows = rows
        return self._rows

    def collect(self, output: Path, workspace: Path) -> None:
        place_results(workspace, output)

    # --- for the runner -------------------------------------------------------------------

    def _note(self, note: str) -> None:
        with self._lock:
            callbacks = list(self._note_callbacks)
            if not callbacks:
                self._notes.append(note)
        for fn in callbacks:
            _call(fn, self, note)

    def _end(self, state: JobState, error: str | None, rows: list[dict[str, Any]] | None
             ) -> None:
        with self._lock:
            self._state, self._error = state, error
            if rows is not None:
                self._rows = rows
            callbacks, self._callbacks = self._callbacks, []
            self._done.set()
        for fn in callbacks:
            _call(fn, self)

def _call(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("cluster runner: a job callback raised")
