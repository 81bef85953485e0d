"""Triton / KServe-v2 inference backend over HTTP or gRPC: :class:`TritonBackend`.

Design:

* **One spec, fetched once.** The first :meth:`TritonBackend.spec` (or ``infer``) checks that the
  server and the model are ready and reads the model's metadata and configuration, under a lock;
  later calls use the cached :class:`~clara_rt.backends.ModelSpec`. Inputs are checked against it
  (name, dtype, rank, fixed dimensions, batch size) *before* anything is sent.
* **A client per thread.** ``tritonclient``'s clients are not thread-safe, so every thread that
  calls ``infer`` gets its own client (and its own shared-memory regions), all with the same
  settings. :meth:`TritonBackend.close` closes every one of them.
* **Retries only before the server has the request.** Connection refused, DNS failure and gRPC
  ``UNAVAILABLE`` are retried ``retries`` times with exponential backoff (50 ms, 100 ms, ...,
  never past ``timeout``). A connection lost *during* an inference is not retried, nor is any
  answer from the server (HTTP 4xx/5xx, inference errors): the server may have run it.
* **Payload.** Tensors travel as binary data by default. MLServer takes only JSON tensors over
  HTTP: the backend sees it in the server metadata (or in a 422 answer) and switches to JSON for
  good. gRPC is always binary.
* **System shared memory** (Triton's extension, same host only): with ``shared_memory="system"``,
  or ``"auto"`` when the server offers it, runs on loopback and the request's inputs reach
  :data:`AUTO_SHM_MIN_BYTES`, inputs are written into a per-thread region and outputs are read
  from another (their size is estimated from the spec; if the model returns more, the request is
  run once more with the outputs in the response). Outputs are copied out, since the regions are
  reused. A server without the extension (MLServer answers 404 / ``UNIMPLEMENTED``) is detected
  once and the backend falls back to the payload path, logging once at INFO.
* **CUDA shared memory** for CuPy inputs (``"cuda"``, or ``"auto"`` when the server offers it on
  loopback): written to Triton's documented protocol but **unverified** -- no GPU was available.
  Without it, CuPy inputs are copied to the host and outputs copied back to the device.

Outputs are NumPy arrays (CuPy when the inputs were CuPy) and may be read-only (they view the
response buffer); copy one before writing into it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from functools import partial
from itertools import count
from typing import Any, Literal

from clara_rt.backends._triton_paths import AUTO_SHM_MIN_BYTES as AUTO_SHM_MIN_BYTES
from clara_rt.backends._triton_paths import RequestPaths, ThreadState
from clara_rt.backends._triton_shm import SystemRegion
from clara_rt.backends._triton_wire import (
    TRITON_TO_NUMPY,
    Wire,
    check_inputs,
    check_outputs,
    fetch_spec,
    import_client,
    parse_url,
)
from clara_rt.backends.base import ModelSpec

__all__ = ["AUTO_SHM_MIN_BYTES", "TRITON_TO_NUMPY", "TritonBackend"]

log = logging.getLogger(__name__)

_IDS = count(1)


class TritonBackend(RequestPaths):
    """One model on a Triton (or other KServe-v2) server, reached over HTTP or gRPC.

    Thread-safe: share one instance between all jobs that use the model. See the module
    docstring for clients, retries, payloads and shared memory.

    Args:
        url: ``http://host:port``, ``https://host:port``, ``grpc://host:port`` or a bare
            ``host:port`` (HTTP).
        model: Model name on the server.
        version: Model version; ``""`` lets the server choose.
        protocol: ``"http"`` or ``"grpc"``; taken from the URL's scheme when ``None``.
        timeout: Seconds allowed for each call to the server (connect and answer).
        retries: Extra attempts after a connection error that happened before the server got
            the request.
        shared_memory: ``"auto"``, ``"system"``, ``"cuda"`` or ``"none"``.
        binary: Binary tensor payloads over HTTP; ``None`` decides from the server.

    Raises:
        ValueError: Bad URL, protocol, timeout, retries or shared_memory.
        BackendError: ``tritonclient`` is not installed.
    """

    def __init__(self, url: str, model: str, *, version: str = "",
                 protocol: Literal["http", "grpc"] | None = None, timeout: float = 60.0,
                 retries: int = 2,
                 shared_memory: Literal["auto", "system", "cuda", "none"] = "auto",
                 binary: bool | None = None) -> None:
        scheme, self._host, port = parse_url(url, protocol)
        if timeout <= 0 or retries < 0:
            raise ValueError(f"timeout must be > 0 and retries >= 0, got {timeout}, {retries}")
        if shared_memory not in ("auto", "system", "cuda", "none"):
            raise ValueError(f"shared_memory must be auto, system, cuda or none, "
                             f"got {shared_memory!r}")
        self.protocol: Literal["http", "grpc"] = "grpc" if scheme == "grpc" else "http"
        self.url = f"{scheme}://{self._host}:{port}"
        self.model, self.version = model, version
        self.timeout, self.retries, self.shared_memory = timeout, retries, shared_memory
        self._address, self._ssl = f"{self._host}:{port}", scheme == "https"
        self._binary, self._binary_auto = binary, binary is None
        self._mod, self._ise, lost = import_client(self.protocol, self.url, model)
        self._wire = Wire(self.url, model, timeout, retries, self._ise, lost)
        self._kw: dict[str, Any] = {"client_timeout": timeout} if scheme == "grpc" else {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._states: list[ThreadState] = []
        self._spec: ModelSpec | None = None
        self._datatypes: dict[str, str] = {}
        self._optional: frozenset[str] = frozenset()
        self._extensions: frozenset[str] = frozenset()
        self._no_system = self._no_cuda = False  # set once the server refused the extension
        self._prefix = f"clara_rt_{os.getpid()}_{next(_IDS)}"
        self._closed = False

    def __repr__(self) -> str:
        return f"TritonBackend({self.url!r}, {self.model!r})"

    def __enter__(self) -> TritonBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def shared_memory_regions(self) -> tuple[str, ...]:
        """Names of the shared-memory regions this backend has registered with the server now."""
        with self._lock:
            states = list(self._states)
        return tuple(r.name for s in states for r in s.regions() if r.name)

    def spec(self) -> ModelSpec:
        """Return the model's interface, checking readiness and fetching it on the first call.

        Raises:
            BackendUnavailableError: The server is unreachable or not ready, or the model is
                missing or not ready (the message lists the server's models).
            BackendError: Any other failure, e.g. after :meth:`close`.
        """
        spec = self._spec
        if spec is not None:
            return spec
        state = self._state()
        with self._lock:
            if self._spec is None:
                try:
                    found = fetch_spec(self._wire, state.client, self.protocol, self.version,
                                       self._kw, self._address, self._ssl)
                    if self._binary_auto and found.server == "mlserver":
                        self._binary = False  # MLServer rejects binary tensors over HTTP (422)
                    self._extensions, self._datatypes = found.extensions, found.datatypes
                    self._optional, self._spec = found.optional, found.spec  # _spec last
                except self._ise as exc:
                    raise self._wire.error(f"reading its metadata failed: {exc}",
                                           unavailable=True) from exc
            return self._spec

    def infer(self, inputs: Mapping[str, Any], outputs: tuple[str, ...] | None = None, *,
              parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run the model on ``inputs`` (tensor name -> array); return ``{output name: array}``.

        Args:
            inputs: Every required input, as NumPy or CuPy arrays of the declared dtype; with a
                batching model the first dimension is the batch.
            outputs: Outputs to return; all of them when ``None``.
            parameters: Request parameters passed to the model (e.g. ``{"threshold": 0.9}``).

        Raises:
            BackendError: Unknown input or output, wrong dtype or shape (before anything is
                sent), an inference error, a timeout.
            BackendUnavailableError: The server cannot be reached.
        """
        spec = self.spec()
        names = check_outputs(self._wire, spec, outputs)
        arrays = check_inputs(self._wire, spec, inputs, self._optional)
        state = self._state()
        params = dict(parameters) if parameters else None
        try:
            if any(type(a).__module__.startswith("cupy") for a in arrays.values()):
                return self._infer_cupy(state, arrays, names, params)
            return self._infer_host(state, arrays, names, params)
        except self._ise as exc:
            raise self._wire.error(f"inference failed: {exc}") from exc

    def close(self) -> None:
        """Unregister and destroy every shared-memory region, close every client. Idempotent.

        Problems while unregistering (e.g. the server is gone) are logged, not raised.
        """
        with self._lock:
            states, self._states, self._closed = self._states, [], True
        regions = [r for s in states for r in s.regions() if r.name]
        helper = self._new_client() if regions else None  # clients belong to their threads
        for region in regions:
            try:
                region.release(partial(self._unregister, helper, region))
            except Exception as exc:  # best effort: close() must not stop half-way
                log.warning("%r: releasing shared memory region failed: %s", self, exc)
        for client in [s.client for s in states] + ([helper] if helper else []):
            client.close()

    def _state(self) -> ThreadState:
        state: ThreadState | None = getattr(self._local, "state", None)
        if state is not None and not self._closed:
            return state
        tid = threading.get_ident()
        state = ThreadState(self._new_client(), SystemRegion(f"{self._prefix}_{tid}_in"),
                             SystemRegion(f"{self._prefix}_{tid}_out"))
        with self._lock:
            closed = self._closed
            if not closed:
                self._states.append(state)
        if closed:
            state.client.close()
            raise self._wire.error("the backend is closed; create a new one")
        self._local.state = state
        return state

    def _new_client(self) -> Any:
        if self.protocol == "grpc":
            return self._mod.InferenceServerClient(self._address, ssl=self._ssl)
        return self._mod.InferenceServerClient(self._address, connection_timeout=self.timeout,
                                               network_timeout=self.timeout, ssl=self._ssl)
