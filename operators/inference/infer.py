"""InferenceOp: run a model through an inference backend, with ports taken from the model.

The backend is ONNX Runtime in this process (:class:`~clara_rt.backends.onnxruntime.OnnxBackend`),
PyTorch in this process for TorchScript files and MONAI bundles
(:class:`~clara_rt.backends.torch.TorchBackend`) or a Triton / KServe v2 server
(:class:`~clara_rt.backends.triton.TritonBackend`). The operator
asks the backend for the model's interface when it is added to a pipeline and declares one port
per tensor, so ``Pipeline.connect`` checks dtypes and shapes against the model itself. Arrays go
to the backend and come back by reference: the batch axes are added and removed as views.

``--inference local`` (edge use, no server): :func:`set_local_models` points every Triton model at
an ONNX file of the same name, ``DIR/<model>.onnx`` or a Triton repository layout
``DIR/<model>/<version>/model.onnx`` (highest version), run by ONNX Runtime. Call it before the
pipeline is built::

    set_local_models("models/")        # clara-rt run ... --inference local --models models/
    built = build_pipeline(definition, services=services)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, PipelineError, PortSpec
from clara_rt.backends import InferenceBackend, ModelSpec, TensorSpec
from clara_rt.backends.monai_bundle import is_bundle
from clara_rt.errors import BackendError, BackendUnavailableError

__all__ = ["InferenceOp", "find_local_model", "local_models", "set_local_models"]

log = logging.getLogger(__name__)

BackendKind = Literal["onnx", "triton", "torch"]
_TORCH_SUFFIXES = (".ts", ".pt", ".pth")
_local_models: Path | None = None


def set_local_models(models_dir: str | os.PathLike[str] | None) -> Path | None:
    """Serve Triton models from ONNX files in ``models_dir`` (``None``: stop); return the previous.

    Affects :class:`InferenceOp` instances set up (added to a pipeline) afterwards. Process-wide.
    """
    global _local_models
    previous, _local_models = _local_models, None if models_dir is None else Path(models_dir)
    return previous


def local_models() -> Path | None:
    """Return the folder set by :func:`set_local_models`, or ``None``."""
    return _local_models


def find_local_model(models_dir: str | os.PathLike[str], model: str) -> Path:
    """Return the ONNX file serving ``model`` in ``models_dir``.

    Looks for ``DIR/<model>.onnx``, then ``DIR/<model>/<version>/model.onnx`` (highest numeric
    version first), then ``DIR/<model>`` when it is itself a file.

    Raises:
        BackendUnavailableError: None of them exists; the message lists what was tried.
    """
    root = Path(models_dir)
    folder = root / model
    versions = sorted((p for p in folder.iterdir() if p.name.isdigit()),
                      key=lambda p: int(p.name), reverse=True) if folder.is_dir() else []
    tried = [root / f"{model}.onnx", *(v / "model.onnx" for v in versions), folder]
    for path in tried:
        if path.is_file():
            return path
    shown = [str(tried[0]), str(folder / "<version>" / "model.onnx")]
    raise BackendUnavailableError(f"no local ONNX file for model '{model}': tried "
                                  f"{', '.join(shown)}", model=model, url=str(root))


class InferenceOp(Operator):
    """Run a model: one input port per model input, one output port per model output.

    Ports are named after the tensors (``TensorSpec.port()``: ``input.1`` -> ``input_1``) unless
    ``inputs`` / ``outputs`` rename them; their dtypes and shapes are the model's. With
    ``batch=True`` the ports hold one item: the batch axis (the first, when the model batches:
    ``ModelSpec.max_batch_size > 0``) and the size-1 axes after it (a single channel) are left
    out of the ports, added to the inputs as views before inference and taken off the outputs
    after (a model that does not batch loses only leading size-1 axes). So ``float32[1, 1, D, H,
    W]`` gets a ``float32[D, H, W]`` port, ``[N, 1, 32, 32]`` a ``[32, 32]`` one, and a Triton
    model with ``max_batch_size: 0`` and dims ``[-1, -1, -1]`` keeps all three. Inputs may be
    NumPy or CuPy arrays; outputs come back on the same device.

    The backend is created when the operator is added to a pipeline, because the model's
    interface declares the ports. **For Triton the server must be up and the model ready when
    the pipeline is built**; otherwise :class:`~clara_rt.PipelineError` names the model and URL.
    ``start()`` opens the backend again if an earlier runtime stopped it and warms it (loads the
    ONNX session); ``stop()`` closes it. Thread-safe: jobs share one backend.

    Args:
        name: Operator name in its pipeline.
        model: ONNX: the ``.onnx`` file (or a model name found in :func:`set_local_models`'s
            folder). Torch: a TorchScript file (``.ts``, ``.pt``) or a MONAI bundle folder
            (:mod:`clara_rt.backends.torch`). Triton: the model name.
        backend: ``"onnx"``, ``"torch"`` or ``"triton"``; default ``"torch"`` for a ``.ts`` /
            ``.pt`` / ``.pth`` file or a MONAI bundle folder (unless ``url`` is given), else
            ``"triton"`` when a URL is known (``url`` or a service connection), else ``"onnx"``.
        url: Triton server URL (``http://host:8000``, ``grpc://host:8001``). Default: the first
            of ``self.connections`` (service env name -> URL, set from the pipeline YAML's
            ``services:``, e.g. ``NVIDIA_CLARA_TRTISURI``); a URL without a scheme gets
            ``grpc://`` when its env name says GRPC, else ``http://``.
        inputs: Port name -> model input tensor, to rename ports (others keep tensor names).
        outputs: Port name -> model output tensor: only these outputs are computed and emitted.
            Default: every output, ports named after the tensors.
        sliding_window: Run :func:`clara_rt.backends.sliding_window.sliding_window_infer` over
            the input instead of one call, with these keyword arguments (``roi``, ``overlap``,
            ``blend``, ``batch_size``...): for volumes larger than the model takes. The model
            must have one input; the ports then take any spatial size and any dtype (windows
            are cast), the outputs are float32 (float64 for float64 outputs), batch axes are
            always stripped, and each output is blended in its own pass.
        batch: Add and strip the batch (and single-channel) axes, see above.
        backend_args: Extra keyword arguments for the backend class (``intra_op_threads``,
            ``providers`` for ONNX; ``device``, ``amp``, ``threads``, ``network_data_format``
            for torch; timeouts, protocol options for Triton). Not used when
            :func:`set_local_models` swaps a Triton model for an ONNX file.
    """

    def __init__(self, name: str | None = None, /, *, model: str | os.PathLike[str],
                 backend: BackendKind | None = None, url: str | None = None,
                 inputs: Mapping[str, str] | None = None,
                 outputs: Mapping[str, str] | None = None,
                 sliding_window: Mapping[str, Any] | None = None, batch: bool = True,
                 backend_args: Mapping[str, Any] | None = None) -> None:
        super().__init__(name)
        if backend not in (None, "onnx", "triton", "torch"):
            raise ValueError(f"InferenceOp '{self.name}': backend must be 'onnx', 'triton', "
                             f"'torch' or None, got {backend!r}")
        self.model = os.fspath(model)
        self.backend, self.url, self.batch = backend, url, bool(batch)
        self.inputs = dict(inputs or {})
        self.outputs = None if outputs is None else dict(outputs)
        self.sliding_window = None if sliding_window is None else dict(sliding_window)
        self.backend_args = dict(backend_args or {})
        self.connections: dict[str, str] = {}
        self._backend: InferenceBackend | None = None
        self._model_spec: ModelSpec | None = None
        self._feeds: tuple[_Port, ...] = ()
        self._fetches: tuple[_Port, ...] = ()
        self._requested: tuple[str, ...] | None = None

    @property
    def inference_backend(self) -> InferenceBackend | None:
        """The backend serving the model (``None`` after ``stop()``)."""
        return self._backend

    @property
    def model_spec(self) -> ModelSpec:
        """The model's interface, fetched in ``setup``."""
        self.spec  # noqa: B018 - runs setup() once
        assert self._model_spec is not None
        return self._model_spec

    def setup(self, spec: OperatorSpec) -> None:
        """Open the backend, fetch the model's interface and declare its ports.

        Raises:
            PipelineError: The model cannot be reached or loaded (named with its URL or path),
                or ``inputs`` / ``outputs`` name tensors the model does not have.
        """
        backend = self._open()
        self._backend = backend
        model_spec = self._model_spec = self._fetch_spec(backend)
        try:
            self._feeds = self._ports("input", model_spec.inputs, self.inputs, rename_only=True)
            self._fetches = self._ports("output", model_spec.outputs, self.outputs or {},
                                        rename_only=self.outputs is None)
        except PipelineError:
            self.stop()
            raise
        self._requested = (None if self.outputs is None
                           else tuple(p.tensor.name for p in self._fetches))
        for p in self._feeds:
            spec.input(p.spec(output=False))
        for p in self._fetches:
            spec.output(p.spec(output=True))

    def start(self) -> None:
        """Reopen the backend if a runtime stopped it, and warm it (load the model now)."""
        if self._backend is None:
            self._backend = self._open()
        backend = self._backend
        if backend.spec() != self.model_spec:
            raise BackendError(f"operator '{self.name}': model '{self.model}' changed since the "
                               "pipeline was built; build it again", model=self.model,
                               url=backend.url)
        warmup = getattr(backend, "warmup", None)
        if callable(warmup):
            warmup()

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Feed the inputs to the model and emit its outputs (views, no copies, where possible)."""
        backend = self._backend
        if backend is None:
            raise BackendError(f"operator '{self.name}': the backend is closed (stop() was "
                               "called); start() opens it again", model=self.model)
        if self.sliding_window is not None:
            self._compute_sliding(backend, inputs, outputs)
            return
        feed = {p.tensor.name: _add_axes(inputs[p.port], p.axes) for p in self._feeds}
        result = backend.infer(feed, self._requested)
        for p in self._fetches:
            outputs[p.port] = _strip_axes(result[p.tensor.name], p.axes, self, p)

    def stop(self) -> None:
        """Close the backend (ONNX: release the shared session; Triton: the client)."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    # --- private ------------------------------------------------------------------------------

    def _kind(self) -> BackendKind:
        if self.backend is not None:
            return self.backend
        path = Path(self.model)
        if not self.url and (path.suffix in _TORCH_SUFFIXES or is_bundle(path)):
            return "torch"  # even when the pipeline wires a Triton service
        return "triton" if self._url() else "onnx"

    def _url(self) -> str | None:
        if self.url:
            return _with_scheme("", self.url)
        for env, url in (self.connections or {}).items():
            return _with_scheme(env, url)
        return None

    def _open(self) -> InferenceBackend:
        """Create the backend for this model (``set_local_models`` applied)."""
        from clara_rt.backends.onnxruntime import OnnxBackend

        kind, local = self._kind(), _local_models
        try:
            if kind == "triton" and local is not None:
                path = find_local_model(local, self.model)
                log.info("operator '%s': Triton model '%s' served locally from %s", self.name,
                         self.model, path)
                return OnnxBackend(path, name=self.model)
            if kind == "triton":
                return self._triton()
            if kind == "torch":
                from clara_rt.backends.torch import TorchBackend

                return TorchBackend(self.model, **self.backend_args)
            path = Path(self.model)
            if not path.exists() and local is not None:
                path = find_local_model(local, self.model)
            return OnnxBackend(path, **self.backend_args)
        except (BackendError, ValueError, TypeError) as exc:  # TypeError: bad backend_args
            raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> PipelineError:
        """The build-time error for a backend that failed (Triton: name the server, say why)."""
        if (self._kind() != "triton" or _local_models is not None
                or not isinstance(exc, BackendError)):
            return PipelineError(f"operator '{self.name}': {exc}")
        url = self._url() or ""
        where = "" if url in str(exc) else f"model '{self.model}' at {url}: "
        return PipelineError(f"operator '{self.name}': {where}{exc}; the server must be up and "
                             "the model ready when the pipeline is built (its metadata declares "
                             "the ports): start it, point --service at it, or use --inference "
                             "local")

    def _triton(self) -> InferenceBackend:
        url = self._url()
        if url is None:
            raise PipelineError(f"operator '{self.name}': Triton model '{self.model}' needs a "
                                "server URL: pass url=, or wire a service (--service NAME=URL)")
        try:
            from clara_rt.backends.triton import TritonBackend
        except ImportError as exc:
            raise PipelineError(f"operator '{self.name}': the Triton backend is not available "
                                f"({exc}); pip install 'clara-rt[triton]', or run the model "
                                "locally with --inference local") from exc
        backend: InferenceBackend = TritonBackend(url, self.model, **self.backend_args)
        return backend

    def _fetch_spec(self, backend: InferenceBackend) -> ModelSpec:
        try:
            return backend.spec()
        except BackendError as exc:
            backend.close()
            self._backend = None
            raise self._failed(exc) from exc

    def _ports(self, direction: str, tensors: tuple[TensorSpec, ...], names: Mapping[str, str],
               *, rename_only: bool) -> tuple[_Port, ...]:
        by_name = {t.name: t for t in tensors}
        unknown = [t for t in names.values() if t not in by_name]
        if unknown:
            raise PipelineError(f"operator '{self.name}': model '{self.model}' has no {direction} "
                                f"{', '.join(map(repr, unknown))}; its {direction}s are: "
                                f"{', '.join(by_name)}")
        port_of = {tensor: port for port, tensor in names.items()}
        chosen = tensors if rename_only else tuple(by_name[t] for t in names.values())
        sliding = self.sliding_window is not None
        if sliding and direction == "input" and len(chosen) != 1:
            raise PipelineError(f"operator '{self.name}': sliding_window needs a model with one "
                                f"input; model '{self.model}' has {len(chosen)}")
        assert self._model_spec is not None
        batched = self._model_spec.max_batch_size > 0
        return tuple(_Port(port_of.get(t.name) or t.port().name, t,
                           _batch_axes(t.shape, batched) if self.batch or sliding else 0,
                           sliding=sliding) for t in chosen)

    def _compute_sliding(self, backend: InferenceBackend, inputs: Inputs,
                         outputs: Outputs) -> None:
        from clara_rt.backends.sliding_window import sliding_window_infer
        feed = self._feeds[0]
        volume = inputs[feed.port]
        for p in self._fetches:
            out = sliding_window_infer(backend, volume, input_name=feed.tensor.name,
                                       output_name=p.tensor.name, **(self.sliding_window or {}))
            rank = len(p.tensor.shape) - p.axes
            while out.ndim > rank and out.shape[0] == 1:  # (1, *spatial) -> the port's rank
                out = out[0]
            outputs[p.port] = out


@dataclass(frozen=True)
class _Port:
    """One port and its tensor; ``axes`` leading axes are added/stripped (``batch=True``).

    With ``sliding``, the port takes any size per axis and any dtype (inputs) or float (outputs).
    """

    port: str
    tensor: TensorSpec
    axes: int
    sliding: bool = False

    def spec(self, *, output: bool) -> PortSpec:
        shape = self.tensor.shape[self.axes:]
        if not self.sliding:
            return PortSpec(self.port, dtype=self.tensor.dtype, shape=shape)
        dtype = None if not output else "float64" if self.tensor.dtype == "float64" else "float32"
        return PortSpec(self.port, dtype=dtype, shape=(-1,) * len(shape))


def _batch_axes(shape: tuple[int, ...], batched: bool) -> int:
    """How many leading axes are batch or single channel: ``[1, 1, D, H, W]`` -> 2.

    ``batched``: the first axis is the batch whatever its size; else only size-1 axes count.
    One axis is always kept.
    """
    axes = 1 if batched and len(shape) > 1 else 0
    while axes < len(shape) - 1 and shape[axes] == 1:
        axes += 1
    return axes


def _add_axes(value: Any, axes: int) -> Any:
    return value[(None,) * axes] if axes else value


def _strip_axes(value: Any, axes: int, op: InferenceOp, port: _Port) -> Any:
    if not axes:
        return value
    if any(n != 1 for n in value.shape[:axes]):
        raise BackendError(f"operator '{op.name}': output '{port.tensor.name}' of model "
                           f"'{op.model}' has shape {tuple(value.shape)}; expected {axes} "
                           "leading axes of size 1 (batch=True); use batch=False",
                           model=op.model)
    return value[(0,) * axes]


def _with_scheme(env: str, url: str) -> str:
    if "://" in url:
        return url
    return f"{'grpc' if 'GRPC' in env.upper() else 'http'}://{url}"
