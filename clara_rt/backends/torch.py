"""In-process PyTorch inference of TorchScript models and MONAI bundles: :class:`TorchBackend`.

Models. A TorchScript archive (``.ts``, ``.pt``, as ``torch.jit.save`` writes it) or a MONAI
bundle folder (``configs/metadata.json`` + ``models/model.ts``, see
:mod:`clara_rt.backends.monai_bundle`). One loaded module serves every backend, job and pipeline
that uses the same file on the same device: a module-level cache keyed by ``(realpath, mtime,
size, device)`` holds it, counting its users; when the last one closes, the module moves to a
small LRU of idle models (:data:`IDLE_MODELS`), so a pipeline built again does not reload it, and
older idle ones are dropped. Concurrent first uses load it once. A TorchScript module's
``forward`` is reentrant, so worker threads call it at once with no lock of ours.

Interface. Ports need dtypes and shapes, which a TorchScript file does not carry by itself. They
come from, in this order: ``network_data_format=`` given to the backend; a ``metadata.json``
stored inside the archive (``torch.jit.save(..., _extra_files={"metadata.json": ...})``, as
MONAI's ``save_net_with_metadata`` does); the bundle's ``configs/metadata.json``. A tensor is
``[N, num_channels, *spatial_shape]``, ``N`` the batch. A file with none of them is taken as a
3-D imaging net: float32 ``[N, C, D, H, W]`` with every size free, inputs named after
``forward``'s arguments and one output ``output``.

Threads. ``torch.set_num_threads`` is process-wide. Torch's default (one intra-op thread per
core) on top of clara-rt's one worker per core oversubscribes the CPU, so the first model loaded
sets it to ``threads`` (default :func:`default_threads`: half the cores, at least 1), as the ONNX
backend does for its sessions. Pass ``threads`` to choose; the last model loaded wins.

Devices and copies. Inputs reach torch without a copy: contiguous or strided NumPy arrays through
``torch.from_numpy`` (read-only ones, which ``from_numpy`` refuses, through DLPack), CuPy arrays
through DLPack (same device pointer). On the GPU the model runs on the calling worker's current
CuPy stream (wrapped as a ``torch.cuda.ExternalStream``), so it is ordered after the producers'
events the runtime made that stream wait for. Outputs come back on the inputs' device without a
copy: ``Tensor.numpy()`` (shares memory) or ``cupy.from_dlpack``. Inputs on the other device than
the model are copied, and the copies counted (:func:`clara_rt.arrays.transfer_counters`).
``amp=True`` runs under ``torch.autocast`` (float16 on CUDA, bfloat16 on CPU) and casts outputs
back to their declared dtype.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.backends._input_check import InputCheck
from clara_rt.backends._model_cache import (
    CachedModelBackend,
    Key,
    ModelCache,
    file_key,
    import_library,
)
from clara_rt.backends._torch_tensors import external_stream, from_tensor, is_cuda, tensor_for
from clara_rt.backends.base import ModelSpec, TensorSpec
from clara_rt.backends.monai_bundle import bundle_root, load_bundle, parse_network_data_format

__all__ = ["DEFAULT_MAX_BATCH", "IDLE_MODELS", "TorchBackend", "default_device",
           "default_threads"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
"""``max_batch_size`` reported for torch models (their batch axis is free); it caps how many
windows sliding-window inference sends at once."""

IDLE_MODELS = 2
"""Loaded models kept after their last backend closed, most recently used first."""


def default_device() -> str:
    """Return ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``."""
    torch = _torch()
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_threads() -> int:
    """Return the default intra-op thread count: half the cores, at least 1."""
    return max(1, (os.cpu_count() or 1) // 2)


class TorchBackend(CachedModelBackend["_Model"]):
    """One TorchScript model (or MONAI bundle) run in this process by PyTorch.

    Thread-safe: every method may be called from several threads at once. Cheap to create; the
    model is loaded on first use. After :meth:`close` the next use loads it again (or takes it
    from the idle cache).

    Args:
        path: The TorchScript file, or a MONAI bundle folder.
        name: Model name in specs and errors; default the bundle's name or the file's stem.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default :func:`default_device`.
        amp: Run under ``torch.autocast`` (module docstring).
        threads: ``torch.set_num_threads`` value; default :func:`default_threads`.
        network_data_format: MONAI-style ``{"inputs": {...}, "outputs": {...}}`` declaring the
            tensors; overrides what the file or bundle says.
        max_batch_size: Reported in the spec (the batch axis itself is free).

    Attributes:
        url: The path, as given.
        model: The model name.
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None,
                 device: str | None = None, amp: bool = False, threads: int | None = None,
                 network_data_format: Mapping[str, Any] | None = None,
                 max_batch_size: int = DEFAULT_MAX_BATCH) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size!r}")
        super().__init__(_cache)
        self.url = os.fspath(path)
        self._root = bundle_root(path)
        bundle = load_bundle(path) if self._root is not None else None
        self.bundle = bundle
        self.path = bundle.model_file if bundle is not None else Path(path)
        self.model = name or (bundle.name if bundle is not None else self.path.stem)
        self._version = bundle.version if bundle is not None else ""
        self._device, self.amp, self._threads = device, bool(amp), threads
        self._ndf = None if network_data_format is None else dict(network_data_format)
        self._max_batch = max_batch_size
        self._checks: tuple[InputCheck, ...] = ()

    # --- InferenceBackend ---------------------------------------------------------------------

    def spec(self) -> ModelSpec:
        """Return the model's inputs and outputs (free sizes as ``-1``; module docstring).

        Raises:
            BackendUnavailableError: The file does not exist, or torch is not installed.
            BackendError: The file is not TorchScript, or its metadata is malformed.
        """
        return self._opened_spec()

    def infer(self, inputs: Mapping[str, Any],
              outputs: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Run the model; return ``{output name: array}`` on the device of the inputs.

        Args:
            inputs: Every model input by name: NumPy or CuPy arrays of the declared dtype, rank
                and fixed sizes (never cast).
            outputs: Output names to return; default all.

        Raises:
            BackendError: Unknown, missing or mistyped input, unknown output, or the model
                raised (torch's message included).
        """
        loaded = self._open()
        on_gpu = self._check_inputs(inputs)
        names = self._output_names(outputs)
        torch = loaded.torch
        if loaded.device.type == "cuda" and on_gpu:
            with torch.cuda.stream(external_stream(torch, loaded.device)):
                return self._run(loaded, inputs, names, on_gpu)
        return self._run(loaded, inputs, names, on_gpu)

    # close() and warmup() (load the model now, not at the first job): CachedModelBackend

    # --- extras -------------------------------------------------------------------------------

    @property
    def module(self) -> Any:
        """The shared ``torch.jit.ScriptModule`` (loaded if needed)."""
        return self._open().module

    @property
    def device(self) -> str:
        """The device the model runs on (loaded if needed): ``"cpu"``, ``"cuda:0"``."""
        return str(self._open().device)

    def __repr__(self) -> str:
        return f"<TorchBackend '{self.model}' {self.url}>"

    # --- private ------------------------------------------------------------------------------

    def _key(self) -> Key:
        device = self._device or default_device()
        threads = self._threads if self._threads is not None else default_threads()
        return (*file_key(self.path, "TorchScript model file", model=self.model, url=self.url),
                device, threads)

    def _load_spec(self, loaded: _Model) -> None:
        where = f"{self.path} (metadata.json inside the archive)"
        if self._ndf is not None:
            ins, outs = parse_network_data_format(self._ndf, where="network_data_format=")
            found = (tuple(i.tensor() for i in ins), tuple(o.tensor() for o in outs))
        elif isinstance(loaded.metadata.get("network_data_format"), Mapping):
            ins, outs = parse_network_data_format(loaded.metadata["network_data_format"],
                                                  where=where)
            found = (tuple(i.tensor() for i in ins), tuple(o.tensor() for o in outs))
        elif self.bundle is not None:
            found = (tuple(i.tensor() for i in self.bundle.inputs),
                     tuple(o.tensor() for o in self.bundle.outputs))
        else:
            found = (tuple(TensorSpec(a, "float32", (-1,) * 5) for a in loaded.arguments),
                     (TensorSpec("output", "float32", (-1,) * 5),))
        ins_t, outs_t = found
        if len(ins_t) != len(loaded.arguments):
            raise self._error(f"the metadata declares {len(ins_t)} input(s) "
                              f"({', '.join(t.name for t in ins_t)}) but forward() takes "
                              f"{len(loaded.arguments)} ({', '.join(loaded.arguments)})")
        self._spec = ModelSpec(self.model, self._version, ins_t, outs_t,
                               max_batch_size=self._max_batch, platform="pytorch")
        self._checks = tuple(InputCheck(t) for t in ins_t)

    def _check_inputs(self, inputs: Mapping[str, Any]) -> bool:
        """Check names, dtypes, ranks and fixed sizes; return whether any input is on a GPU."""
        on_gpu = False
        for check in self._checks:
            value = inputs.get(check.tensor.name)
            if value is None:
                raise self._error(f"missing input '{check.tensor.name}'; inputs are: "
                                  f"{', '.join(c.tensor.name for c in self._checks)}")
            problem = check.problem(value)
            if problem is not None:
                raise self._error(f"input '{check.tensor.name}' expects {check.describe()}, "
                                  f"got {problem}")
            on_gpu = on_gpu or (type(value) is not np.ndarray and is_cuda(value))
        if len(inputs) != len(self._checks):
            known = {c.tensor.name for c in self._checks}
            unknown = [n for n in inputs if n not in known]
            raise self._error(f"unknown input(s) {', '.join(unknown)}; inputs are: "
                              f"{', '.join(known)}")
        return on_gpu

    def _run(self, loaded: _Model, inputs: Mapping[str, Any], names: tuple[str, ...],
             on_gpu: bool) -> dict[str, Any]:
        torch, device = loaded.torch, loaded.device
        args = [tensor_for(torch, inputs[c.tensor.name], device) for c in self._checks]
        try:
            with torch.inference_mode():
                if self.amp:
                    half = torch.float16 if device.type == "cuda" else torch.bfloat16
                    with torch.autocast(device.type, dtype=half):
                        result = loaded.module(*args)
                else:
                    result = loaded.module(*args)
        except Exception as exc:  # torch.jit.Error, RuntimeError: shape mismatch in a layer
            raise self._error(f"the model raised: {_first_lines(exc)}") from exc
        assert self._spec is not None
        by_name = self._outputs_by_name(result)
        dtypes = {t.name: t.dtype for t in self._spec.outputs}
        return {n: from_tensor(torch, by_name[n], dtypes[n], on_gpu, self.amp) for n in names}

    def _outputs_by_name(self, result: Any) -> dict[str, Any]:
        assert self._spec is not None
        declared = [t.name for t in self._spec.outputs]
        if isinstance(result, Mapping):
            if all(n in result for n in declared):
                return {n: result[n] for n in declared}
            result = list(result.values())
        values = list(result) if isinstance(result, list | tuple) else [result]
        if len(values) < len(declared):
            raise self._error(f"the model returned {len(values)} tensor(s), but "
                              f"{len(declared)} output(s) are declared: {', '.join(declared)}")
        return dict(zip(declared, values, strict=False))


def _first_lines(exc: BaseException, lines: int = 6) -> str:
    text = str(exc).strip().splitlines()
    return "\n".join(text[:lines]) + (" ..." if len(text) > lines else "")


# --- the model cache ------------------------------------------------------------------------


@dataclass
class _Model:
    """One loaded TorchScript module, with what its spec is read from."""

    torch: Any
    module: Any
    device: Any
    arguments: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


def _load(key: Key, backend: TorchBackend) -> _Model:
    torch = _torch()
    path, _mtime, _size, device_name, threads = key
    try:
        device = torch.device(device_name)
        if device.type == "cuda" and device.index is None:  # compare equal to tensors' devices
            device = torch.device("cuda", torch.cuda.current_device())
    except (RuntimeError, AssertionError) as exc:  # AssertionError: a CPU-only torch build
        raise backend._error(f"bad device {device_name!r}: {exc}") from exc
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    extra = {"metadata.json": ""}
    try:
        with warnings.catch_warnings():  # torch 2.10+: "torch.jit.load is deprecated"
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(path, map_location=device, _extra_files=extra)
    except Exception as exc:  # RuntimeError from the zip reader or the unpickler
        raise backend._error(
            f"not a TorchScript archive ({_first_lines(exc, 1).split('. This is')[0]}); save "
            "the model with torch.jit.script(net).save(path) or torch.jit.trace; a torch.save() "
            "checkpoint or state_dict cannot be run without its Python class") from exc
    module.eval()
    log.info("model '%s': TorchScript on %s, %d intra-op thread(s)", backend.model, device,
             threads)
    return _Model(torch, module, device,
                  arguments=tuple(a.name for a in module.forward.schema.arguments[1:]),
                  metadata=_metadata(extra["metadata.json"], path))


_cache: ModelCache[_Model] = ModelCache(_load, idle=IDLE_MODELS)


def _metadata(raw: str | bytes, path: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("%s: the metadata.json stored in the archive is not JSON; ignored", path)
        return {}
    return data if isinstance(data, dict) else {}


def _torch() -> Any:
    return import_library("torch", "PyTorch is not installed: pip install 'clara-rt[torch]' "
                          "(or a CUDA build of torch from pytorch.org)")
