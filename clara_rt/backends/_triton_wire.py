"""Talking to a KServe-v2 server for :class:`~clara_rt.backends.triton.TritonBackend` (private).

* :class:`Wire` -- runs each server call with bounded retries and turns transport failures into
  :class:`~clara_rt.errors.BackendError` / :class:`~clara_rt.errors.BackendUnavailableError`.
  Only failures that happened before the server had the request are retried: connection
  refused, DNS failure, gRPC ``UNAVAILABLE`` (and, for idempotent calls such as metadata, a reset
  connection). Answers from the server propagate unchanged for the caller to interpret.
* :func:`fetch_spec` -- readiness checks, metadata and configuration -> :class:`ServerModel`.
* :func:`check_inputs` / :func:`check_outputs` (before anything is sent), :func:`parse_url`,
  :func:`import_client`, :func:`tensors` (metadata -> ``TensorSpec``) and :func:`list_models`
  (for error messages).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from clara_rt.backends.base import ModelSpec, TensorSpec
from clara_rt.errors import BackendError, BackendUnavailableError

__all__ = ["TRITON_TO_NUMPY", "ServerModel", "Wire", "check_inputs", "check_outputs",
           "fetch_spec", "import_client", "list_models", "mismatch", "parse_url", "tensors"]

T = TypeVar("T")

TRITON_TO_NUMPY = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
                   "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32",
                   "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64",
                   "BF16": "bfloat16", "BYTES": "object"}
"""Triton datatype -> NumPy dtype name (``BYTES`` tensors are object arrays)."""

BACKOFF_S = 0.05
"""First retry delay; doubled for each further attempt."""


class Wire:
    """Error conversion and retries for one backend (stateless apart from its settings).

    Args:
        url: The backend's URL, for messages.
        model: The model name, for messages.
        timeout: Seconds; retries never sleep past it.
        retries: Extra attempts after a retryable failure.
        server_error: ``tritonclient.utils.InferenceServerException``.
        lost: Extra exception types that mean "connection lost" (geventhttpclient's).
    """

    def __init__(self, url: str, model: str, timeout: float, retries: int,
                 server_error: type[Exception], lost: tuple[type[Exception], ...]) -> None:
        self.url, self.model, self.timeout, self.retries = url, model, timeout, retries
        self.server_error, self._lost = server_error, lost

    def call(self, what: str, fn: Callable[[], T], *, idempotent: bool) -> T:
        """Run ``fn``; retry connection failures that happened before the server had it.

        Raises:
            BackendUnavailableError: The server could not be reached (after the retries) or
                the connection was lost.
            BackendError: The call timed out (an inference; other calls raise the former).
            InferenceServerException: The server answered with an error (not converted here).
        """
        delay, attempt, deadline = BACKOFF_S, 0, time.monotonic() + self.timeout
        while True:
            try:
                return fn()
            except Exception as exc:
                kind = self._classify(exc, idempotent)
                if kind is None:
                    raise
                if (kind == "retry" and attempt < self.retries
                        and time.monotonic() + delay < deadline):
                    time.sleep(delay)
                    delay, attempt = delay * 2, attempt + 1
                    continue
                raise self._transport_error(what, exc, kind, attempt + 1) from exc

    def error(self, message: str, *, unavailable: bool = False) -> BackendError:
        """Return a BackendError (or BackendUnavailableError) naming the model and URL."""
        cls = BackendUnavailableError if unavailable else BackendError
        return cls(f"model '{self.model}' at {self.url}: {message}", model=self.model,
                   url=self.url)

    def _classify(self, exc: Exception, idempotent: bool) -> str | None:
        if isinstance(exc, self.server_error):
            status = str(exc.status())  # type: ignore[attr-defined]
            return {"StatusCode.UNAVAILABLE": "retry",
                    "StatusCode.DEADLINE_EXCEEDED": "timeout"}.get(status)
        if isinstance(exc, ConnectionRefusedError | socket.gaierror):
            return "retry"
        if isinstance(exc, TimeoutError):
            return "timeout"
        if isinstance(exc, (OSError, *self._lost)):
            return "retry" if idempotent else "lost"
        return None

    def _transport_error(self, what: str, exc: Exception, kind: str,
                         attempts: int) -> BackendError:
        if kind == "timeout":
            return self.error(f"{what} timed out after {self.timeout:g} s ({exc})",
                              unavailable=what != "inference")
        if kind == "lost":
            return self.error(f"the connection was lost during {what} ({exc}); not retried, "
                              f"because the server may have accepted the request",
                              unavailable=True)
        return self.error(f"cannot reach the server for {what} after {attempts} attempt(s) "
                          f"({exc}); check that it is running, that the port is right and that "
                          f"the scheme matches it (http:// for the HTTP port, grpc:// for the "
                          f"gRPC port)", unavailable=True)


@dataclass(frozen=True, slots=True)
class ServerModel:
    """What :func:`fetch_spec` learnt: the spec plus what the backend needs to build requests."""

    spec: ModelSpec
    server: str
    """The server's name (``triton``, ``mlserver``)."""
    extensions: frozenset[str]
    datatypes: dict[str, str]
    """Tensor name -> Triton datatype (``FP32``...)."""
    optional: frozenset[str]
    """Inputs the model configuration marks optional."""


def fetch_spec(wire: Wire, client: Any, protocol: str, version: str, kw: dict[str, Any],
               address: str, ssl: bool) -> ServerModel:
    """Check that the server and model are ready; read metadata and (on Triton) the config.

    ``kw`` holds per-call keyword arguments (gRPC's ``client_timeout``).

    Raises:
        BackendUnavailableError: Server unreachable or not ready; model missing or not ready
            (the message lists the server's models).
        InferenceServerException: Any other answer from the server.
    """
    model, call = wire.model, wire.call
    jkw = {**kw, "as_json": True} if protocol == "grpc" else kw
    meta = call("server metadata", lambda: client.get_server_metadata(**jkw), idempotent=True)
    extensions = frozenset(meta.get("extensions", ()))
    if not call("server readiness", lambda: client.is_server_ready(**kw), idempotent=True):
        raise wire.error("the server is live but not ready (models still loading, or one failed "
                         "to load); check the server's log", unavailable=True)
    try:
        ready = call("model readiness", lambda: client.is_model_ready(model, version, **kw),
                     idempotent=True)
    except wire.server_error:  # MLServer's gRPC answers NOT_FOUND rather than "not ready"
        ready = False
    if not ready:
        models = list_models(client, protocol, address, ssl, wire.timeout)
        raise wire.error(f"the model is missing or not ready; the server has: {models}",
                         unavailable=True)
    md = call("model metadata", lambda: client.get_model_metadata(model, version, **jkw),
              idempotent=True)
    config: dict[str, Any] = {}
    if "model_configuration" in extensions:  # MLServer has no config endpoint
        config = call("model config", lambda: client.get_model_config(model, version, **jkw),
                      idempotent=True)
        config = config.get("config", config) if protocol == "grpc" else config
    server = str(meta.get("name", ""))
    spec = ModelSpec(name=model, version=version, inputs=tensors(md.get("inputs", ())),
                     outputs=tensors(md.get("outputs", ())),
                     max_batch_size=int(config.get("max_batch_size", 0)),
                     platform=str(md.get("platform") or config.get("backend") or server))
    datatypes = {t["name"]: t["datatype"] for t in (*md.get("inputs", ()),
                                                     *md.get("outputs", ()))}
    optional = frozenset(i["name"] for i in config.get("input", ()) if i.get("optional"))
    return ServerModel(spec, server, extensions, datatypes, optional)


def parse_url(url: str, protocol: str | None) -> tuple[str, str, int]:
    """Split ``[scheme://]host[:port]`` into ``(scheme, host, port)``; default ports 8000/8001.

    Raises:
        ValueError: Unknown scheme, or a scheme that contradicts ``protocol``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = protocol or "http", url
    if scheme not in ("http", "https", "grpc"):
        raise ValueError(f"url {url!r}: scheme must be http, https or grpc")
    if protocol is not None and protocol != ("grpc" if scheme == "grpc" else "http"):
        raise ValueError(f"url {url!r} does not match protocol {protocol!r}")
    rest = rest.rstrip("/")
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit() or host.endswith(":"):
        host, port = rest, "8001" if scheme == "grpc" else "8000"
    return scheme, host.strip("[]"), int(port)


def import_client(protocol: str, url: str, model: str) -> tuple[Any, Any, tuple[type, ...]]:
    """Import tritonclient's HTTP or gRPC module: ``(module, InferenceServerException, lost)``.

    Raises:
        BackendError: tritonclient (or its HTTP / gRPC extra) is not installed.
    """
    try:
        from tritonclient.utils import InferenceServerException

        if protocol == "grpc":
            import tritonclient.grpc as grpc_mod

            return grpc_mod, InferenceServerException, ()
        import tritonclient.http as http_mod
        from geventhttpclient.response import HTTPConnectionClosed
    except ImportError as exc:
        raise BackendError(f"the Triton backend needs tritonclient ({exc}); install it with "
                           f"pip install 'clara-rt[triton]'", model=model, url=url) from exc
    return http_mod, InferenceServerException, (HTTPConnectionClosed,)


def tensors(items: Any) -> tuple[TensorSpec, ...]:
    """Model-metadata tensors (HTTP: int dims; gRPC JSON: string dims) -> ``TensorSpec``."""
    return tuple(TensorSpec(t["name"], TRITON_TO_NUMPY.get(t["datatype"], t["datatype"].lower()),
                            tuple(int(d) for d in t["shape"])) for t in items)


def check_inputs(wire: Wire, spec: ModelSpec, inputs: Mapping[str, Any],
                 optional: frozenset[str]) -> dict[str, Any]:
    """Check names, dtypes and shapes against ``spec``; return ``{name: array}``.

    Raises:
        BackendError: Unknown or missing input, wrong dtype, rank, fixed dimension or batch.
    """
    by_name = {t.name: t for t in spec.inputs}
    arrays: dict[str, Any] = {}
    for name, value in inputs.items():
        tensor = by_name.get(name)
        if tensor is None:
            raise wire.error(f"the model has no input '{name}'; inputs are: {', '.join(by_name)}")
        array = value if hasattr(value, "dtype") and hasattr(value, "shape") else (
            np.asarray(value))
        problem = mismatch(tensor, array, spec.max_batch_size)
        if problem:
            raise wire.error(f"input '{name}': {problem}")
        arrays[name] = array
    missing = [n for n in by_name if n not in arrays and n not in optional]
    if missing:
        raise wire.error(f"input(s) {', '.join(missing)} missing; got: "
                         f"{', '.join(arrays) or 'none'}")
    return arrays


def check_outputs(wire: Wire, spec: ModelSpec, outputs: tuple[str, ...] | None) -> tuple[str, ...]:
    """Return the outputs to request (all when ``outputs`` is None).

    Raises:
        BackendError: An unknown output name.
    """
    known = [t.name for t in spec.outputs]
    for name in outputs or ():
        if name not in known:
            raise wire.error(f"the model has no output '{name}'; outputs are: {', '.join(known)}")
    return tuple(known) if outputs is None else tuple(outputs)


def mismatch(tensor: TensorSpec, array: Any, max_batch_size: int) -> str | None:
    """Say how ``array`` breaks ``tensor``'s dtype or shape, or return None."""
    got = str(array.dtype)
    if tensor.dtype == "object":
        if array.dtype.kind not in "OSU":
            return f"expected dtype object (BYTES), got {got}"
    elif got != tensor.dtype:
        return f"expected dtype {tensor.dtype}, got {got}"
    want, shape = list(tensor.shape), tuple(array.shape)
    if len(shape) != len(want):
        hint = (f"; the model batches (max_batch_size {max_batch_size}): add a leading batch "
                f"dimension" if max_batch_size and len(shape) == len(want) - 1 else "")
        return f"expected shape {want} (rank {len(want)}), got {shape} (rank {len(shape)}){hint}"
    for axis, (w, g) in enumerate(zip(want, shape, strict=True)):
        if w >= 0 and w != g:
            return f"expected shape {want}, got {shape}: dimension {axis} must be {w}"
    if max_batch_size and shape[0] > max_batch_size:
        return f"batch of {shape[0]} exceeds the model's max_batch_size {max_batch_size}"
    return None


def list_models(client: Any, protocol: str, address: str, ssl: bool, timeout: float) -> str:
    """Return the server's models as ``"name (STATE), ..."`` for an error message; never raises.

    Over HTTP the index is POSTed with ``{}`` directly: tritonclient sends an empty body, which
    MLServer rejects (422).
    """
    try:
        if protocol == "grpc":
            models = client.get_model_repository_index(as_json=True,
                                                       client_timeout=timeout).get("models", [])
        else:
            req = urllib.request.Request(
                f"{'https' if ssl else 'http'}://{address}/v2/repository/index", data=b"{}",
                method="POST", headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                models = json.loads(resp.read())
    except Exception as exc:  # only decorates an error message
        return f"(could not list them: {exc})"
    items = sorted(f"{m.get('name')} ({str(m.get('state') or '?').removeprefix('State.')})"
                   for m in models)
    return ", ".join(items) or "no models"
