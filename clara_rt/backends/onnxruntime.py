"""In-process inference with ONNX Runtime: :class:`OnnxBackend`.

Sessions. One ``onnxruntime.InferenceSession`` serves every backend, job and pipeline that uses the
same model file with the same providers and thread count: a module-level cache keyed by
``(realpath, mtime, size, providers, threads)`` holds it, counting the backends that use it, and
drops it when the last one closes. A backend opens its session on first use (``spec``, ``infer``
or :meth:`OnnxBackend.warmup`); concurrent first uses build it once. ``InferenceSession.run`` is
thread-safe, so every worker thread calls the one session at once with no lock of ours.

Threads. ONNX Runtime's default gives each session an intra-op pool of one thread per core whose
threads spin while they wait. clara-rt already runs one worker thread per core, and each worker
calling ``run`` joins the pool's work, so that default puts about twice as many busy threads as
cores on the machine for each model loaded. :class:`OnnxBackend` therefore defaults to
``intra_op_threads = max(1, cpu_count // 2)`` with spinning off: a job alone still gets half the
cores, concurrent jobs add their own calling threads without crowding the others out, and idle
pools burn no CPU that other operators need. Measured on 2 cores (seg3d 96^3, two threads calling
one session): ORT's default (2 spinning threads) 240-270 runs/s, ours (1 thread, no spinning)
290-350 runs/s; a job alone then takes ~1.5x longer (4.5 vs 3 ms). ``intra_op_threads`` sets it.

Devices. I/O binding keeps arrays where they are: NumPy inputs are bound in place, CuPy inputs by
device pointer, and outputs come back on the inputs' device (NumPy over ORT's output buffer, CuPy
over its device buffer via DLPack). With the CUDA provider the caller's CuPy stream is synchronised
before the run and ORT synchronises its own at the end of ``run``. A CPU-only session given CuPy
inputs copies through the host. The CUDA path follows ONNX Runtime's documented I/O binding API
and has not been run on a GPU in clara-rt's tests yet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.arrays import cuda_available, to_device, to_host
from clara_rt.backends._input_check import InputCheck
from clara_rt.backends._model_cache import (
    CachedModelBackend,
    Key,
    ModelCache,
    file_key,
    import_library,
)
from clara_rt.backends._onnx_io import ONNX_DTYPES, bind_inputs, is_cuda, to_cupy, to_numpy
from clara_rt.backends.base import ModelSpec, TensorSpec
from clara_rt.errors import BackendError

__all__ = ["DEFAULT_MAX_BATCH", "OnnxBackend", "default_intra_op_threads", "default_providers"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
"""``max_batch_size`` of a model whose tensors all start with a symbolic dimension (ONNX Runtime
sets no limit; this caps how many windows sliding-window inference sends at once)."""


def default_providers() -> tuple[str, ...]:
    """Return the CUDA execution provider (then CPU) when CuPy finds a GPU and this onnxruntime
    build has it, else the CPU provider alone."""
    ort = _ort()
    if cuda_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        return ("CUDAExecutionProvider", "CPUExecutionProvider")
    return ("CPUExecutionProvider",)


def default_intra_op_threads() -> int:
    """Return the default intra-op pool size: half the cores, at least 1 (module docstring)."""
    return max(1, (os.cpu_count() or 1) // 2)


class OnnxBackend(CachedModelBackend[Any]):
    """One ONNX model run in this process by ONNX Runtime (an :class:`InferenceBackend`).

    Thread-safe: every method may be called from several threads at once. Cheap to create; the
    file is read on first use. After :meth:`close` the next use opens the session again.

    Args:
        path: The ``.onnx`` file.
        name: Model name in specs and errors; default: the file's stem, or ``X`` for a Triton
            repository layout ``X/<version>/model.onnx``.
        providers: ONNX Runtime execution providers, in order of preference; default
            :func:`default_providers`.
        intra_op_threads: Threads of the session's intra-op pool; default
            :func:`default_intra_op_threads` (see the module docstring).
        max_batch_size: Reported as :attr:`ModelSpec.max_batch_size` when every tensor's first
            dimension is symbolic. When each is 1 or symbolic (a batch of one, as exporters
            write ``[1, C, ...]``) the spec says 1; otherwise 0 (no batch dimension).

    Attributes:
        url: The model file path, as given.
        model: The model name.
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None,
                 providers: list[str] | tuple[str, ...] | None = None,
                 intra_op_threads: int | None = None,
                 max_batch_size: int = DEFAULT_MAX_BATCH) -> None:
        if intra_op_threads is not None and intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads!r}")
        super().__init__(_cache)
        self.path = Path(path)
        self.url = os.fspath(path)
        self.model, self._version = _name_and_version(self.path, name)
        self._providers = None if providers is None else tuple(providers)
        self._threads = intra_op_threads
        self._max_batch = max_batch_size
        self._cuda = False
        self._expected: dict[str, InputCheck] = {}

    # --- InferenceBackend ---------------------------------------------------------------------

    def spec(self) -> ModelSpec:
        """Return the model's inputs and outputs (symbolic dimensions as ``-1``).

        Raises:
            BackendUnavailableError: The file does not exist.
            BackendError: onnxruntime cannot load it, or a tensor type is not supported.
        """
        return self._opened_spec()

    def infer(self, inputs: Mapping[str, Any],
              outputs: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Run the model; return ``{output name: array}`` on the device of the inputs.

        Args:
            inputs: Every model input by name: NumPy or CuPy arrays of the model's dtype and
                rank (never cast: a wrong dtype is an error, not a silent copy).
            outputs: Output names to compute; default all.

        Raises:
            BackendError: Unknown, missing or mistyped input, unknown output, or onnxruntime
                failed (its message included).
        """
        session = self._open()
        on_gpu = self._check_inputs(inputs)
        names = self._output_names(outputs)
        if on_gpu and not self._cuda:
            return self._infer_via_host(inputs, names)
        binding = session.io_binding()
        device, _bound = bind_inputs(binding, inputs, on_gpu)  # _bound: alive until run
        for out in names:
            binding.bind_output(out, *device)
        try:
            session.run_with_iobinding(binding)
            values = binding.get_outputs()
        except Exception as exc:  # onnxruntime's Fail / InvalidArgument / RuntimeException
            raise self._error(f"onnxruntime failed: {exc}") from exc
        convert = to_cupy if on_gpu else to_numpy
        return {out: convert(value) for out, value in zip(names, values, strict=True)}

    # close() and warmup() (open the session now, not at the first job): CachedModelBackend

    # --- extras -------------------------------------------------------------------------------

    @property
    def session(self) -> Any:
        """The shared ``onnxruntime.InferenceSession`` (opened if needed)."""
        return self._open()

    @property
    def providers(self) -> tuple[str, ...]:
        """The execution providers the session uses (opened if needed)."""
        return tuple(self._open().get_providers())

    def __repr__(self) -> str:
        return f"<OnnxBackend '{self.model}' {self.url}>"

    # --- private ------------------------------------------------------------------------------

    def _key(self) -> Key:
        providers = self._providers if self._providers is not None else default_providers()
        threads = self._threads if self._threads is not None else default_intra_op_threads()
        return (*file_key(self.path, "ONNX model file", model=self.model, url=self.url),
                providers, threads)

    def _load_spec(self, session: Any) -> None:
        ins = tuple(self._tensor(arg) for arg in session.get_inputs())
        outs = tuple(self._tensor(arg) for arg in session.get_outputs())
        firsts = {t.shape[0] if len(t.shape) > 1 else 0 for t in (*ins, *outs)}
        batch = self._max_batch if firsts == {-1} else 1 if firsts <= {1, -1} else 0
        self._spec = ModelSpec(self.model, self._version, ins, outs, max_batch_size=batch,
                               platform="onnxruntime")
        self._expected = {t.name: InputCheck(t) for t in ins}
        self._cuda = "CUDAExecutionProvider" in session.get_providers()

    def _tensor(self, arg: Any) -> TensorSpec:
        dtype = ONNX_DTYPES.get(arg.type)
        if dtype is None:
            raise self._error(f"tensor '{arg.name}' has type {arg.type}, which clara-rt does "
                              f"not support; supported: {', '.join(ONNX_DTYPES)}")
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
        return TensorSpec(arg.name, dtype, shape)

    def _check_inputs(self, inputs: Mapping[str, Any]) -> bool:
        """Check names, dtypes, ranks and fixed sizes; return whether any input is on a GPU."""
        expected = self._expected
        on_gpu = False
        for name, value in inputs.items():
            exp = expected.get(name)
            if exp is None:
                raise self._error(f"unknown input '{name}'; inputs are: {', '.join(expected)}")
            problem = exp.problem(value)
            if problem is not None:
                raise self._error(f"input '{name}' expects {exp.describe()}, got {problem}")
            on_gpu = on_gpu or (type(value) is not np.ndarray and is_cuda(value))
        if len(inputs) != len(expected):
            missing = [n for n in expected if n not in inputs]
            raise self._error(f"missing input(s) {', '.join(missing)}; inputs are: "
                              f"{', '.join(expected)}")
        return on_gpu

    def _infer_via_host(self, inputs: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
        log.debug("model '%s': CPU session given CuPy inputs; copying through the host",
                  self.model)
        host = {k: to_host(v) if is_cuda(v) else v for k, v in inputs.items()}
        result = self.infer(host, names)
        return {k: to_device(v) for k, v in result.items()}


# --- the session cache ----------------------------------------------------------------------


def _new_session(key: Key, backend: OnnxBackend) -> Any:
    ort = _ort()
    path, _mtime, _size, providers, threads = key
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(path, sess_options=options, providers=list(providers))
    except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile, ...
        raise BackendError(f"cannot load ONNX model '{backend.model}' from {path}: {exc}",
                           model=backend.model, url=backend.url) from exc
    log.info("model '%s': ONNX Runtime session on %s, %d intra-op thread(s)", backend.model,
             ", ".join(session.get_providers()), threads)
    return session


_cache: ModelCache[Any] = ModelCache(_new_session)


def _name_and_version(path: Path, name: str | None) -> tuple[str, str]:
    """``X/1/model.onnx`` -> ``("X", "1")``; ``dir/seg.onnx`` -> ``("seg", "")``."""
    version = path.parent.name if path.name == "model.onnx" else ""
    if version.isdigit():
        return name or path.parent.parent.name or path.stem, version
    return name or path.stem, ""


def _ort() -> Any:
    return import_library("onnxruntime", "onnxruntime is not installed: pip install "
                          "'clara-rt[onnx]' (or onnxruntime-gpu for CUDA)")
