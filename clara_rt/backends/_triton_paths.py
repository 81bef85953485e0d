"""How one Triton request travels: in the request, in system or in CUDA shared memory.

:class:`RequestPaths` holds the inference paths of :class:`~clara_rt.backends.triton.TritonBackend`
(which inherits them): the payload path (binary tensors, or JSON for MLServer), system shared
memory for large host tensors on loopback, and CUDA shared memory for CuPy tensors, each falling
back to the next when the server lacks the extension. The module docstring of ``triton.py``
describes when each is taken. The attributes declared on :class:`RequestPaths` are set by
``TritonBackend.__init__`` and by :meth:`~clara_rt.backends.triton.TritonBackend.spec`.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np

from clara_rt.arrays import to_device, to_host
from clara_rt.backends._triton_shm import CudaRegion, SystemRegion, estimate_output_bytes, pack
from clara_rt.backends._triton_wire import TRITON_TO_NUMPY, Wire
from clara_rt.backends.base import ModelSpec

__all__ = ["AUTO_SHM_MIN_BYTES", "Region", "RequestPaths", "ThreadState"]

log = logging.getLogger("clara_rt.backends.triton")  # one logger for the backend's messages

AUTO_SHM_MIN_BYTES = 1 << 20
"""With ``shared_memory="auto"``, requests whose inputs total this many bytes use shared memory."""

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_NO_EXTENSION = frozenset({"404", "StatusCode.UNIMPLEMENTED"})
_OVERFLOW = re.compile(r"should be at least \d+ bytes")

Region = SystemRegion | CudaRegion


@dataclass(eq=False)
class ThreadState:
    """What one thread owns: its client and its shared-memory regions."""

    client: Any
    system_in: SystemRegion
    system_out: SystemRegion
    cuda: dict[str, CudaRegion] = field(default_factory=dict)

    def regions(self) -> list[Region]:
        return [self.system_in, self.system_out, *self.cuda.values()]


class RequestPaths:
    """The inference paths of a Triton backend, one per way a request's tensors travel."""

    protocol: Literal["http", "grpc"]
    model: str
    version: str
    shared_memory: str
    _host: str
    _mod: Any  # tritonclient.http or tritonclient.grpc
    _ise: Any  # its InferenceServerException
    _wire: Wire
    _kw: dict[str, Any]
    _binary: bool | None
    _binary_auto: bool
    _datatypes: dict[str, str]
    _extensions: frozenset[str]
    _no_system: bool
    _no_cuda: bool
    _prefix: str

    def spec(self) -> ModelSpec:
        """The model's interface (see :meth:`TritonBackend.spec`)."""
        raise NotImplementedError

    # --- inference paths -----------------------------------------------------------------

    def _infer_host(self, state: ThreadState, arrays: dict[str, Any], names: tuple[str, ...],
                    params: dict[str, Any] | None) -> dict[str, Any]:
        if self._system_wanted(arrays, names):
            result = self._infer_system(state, arrays, names, params)
            if result is not None:
                return result
        return self._infer_payload(state, arrays, names, params)

    def _infer_payload(self, state: ThreadState, arrays: dict[str, Any],
                       names: tuple[str, ...], params: dict[str, Any] | None) -> dict[str, Any]:
        binary = self._binary is not False
        flag = {"binary_data": binary} if self.protocol == "http" else {}
        inputs = []
        for name, array in arrays.items():
            item = self._mod.InferInput(name, list(array.shape), self._datatypes[name])
            item.set_data_from_numpy(array, **flag)
            inputs.append(item)
        outputs = [self._mod.InferRequestedOutput(n, **flag) for n in names]
        try:
            result = self._send(state.client, inputs, outputs, params)
        except self._ise as exc:
            if not (flag and binary and self._binary_auto and str(exc.status()) == "422"):
                raise
            log.info("%r: the server rejected binary tensors (422); using JSON from now on", self)
            self._binary = False  # the server did not run a request it could not parse
            return self._infer_payload(state, arrays, names, params)
        return {n: result.as_numpy(n) for n in names}

    def _infer_system(self, state: ThreadState, arrays: dict[str, Any], names: tuple[str, ...],
                      params: dict[str, Any] | None) -> dict[str, Any] | None:
        in_offsets, in_total = pack({n: a.nbytes for n, a in arrays.items()})
        sizes = self._output_sizes(arrays, names)
        out_offsets, out_total = pack(sizes)
        try:
            for region, size in ((state.system_in, in_total), (state.system_out, out_total)):
                region.ensure(size, self._registrar(state.client, "system"),
                              partial(self._unregister, state.client, region))
        except self._ise as exc:
            if str(exc.status()) not in _NO_EXTENSION:
                raise
            self._no_system = True
            log.info("%r: the server has no system shared memory (%s); sending tensors in the "
                     "request instead", self, exc.status())
            return None
        state.system_in.write(arrays, in_offsets)
        inputs, outputs = self._placed(
            arrays, {n: (state.system_in.name, in_offsets[n]) for n in arrays},
            {n: (state.system_out.name, sizes[n], out_offsets[n]) for n in names})
        try:
            result = self._send(state.client, inputs, outputs, params)
        except self._ise as exc:
            if not _OVERFLOW.search(str(exc.message())):
                raise
            log.info("%r: an output outgrew its estimated size; running the request again "
                     "with outputs in the response", self)
            return self._infer_payload(state, arrays, names, params)
        return {n: state.system_out.read(TRITON_TO_NUMPY[self._datatypes[n]],
                                         self._output_shape(result, n), out_offsets[n])
                for n in names}

    def _infer_cupy(self, state: ThreadState, arrays: dict[str, Any], names: tuple[str, ...],
                    params: dict[str, Any] | None) -> dict[str, Any]:
        if self._cuda_wanted(names):
            result = self._infer_cuda(state, arrays, names, params)
            if result is not None:
                return result
        host = self._infer_host(state, {n: to_host(a) for n, a in arrays.items()}, names,
                                params)
        return {n: to_device(a) for n, a in host.items()}

    def _infer_cuda(self, state: ThreadState, arrays: dict[str, Any], names: tuple[str, ...],
                    params: dict[str, Any] | None) -> dict[str, Any] | None:
        """CUDA shared memory, one region per tensor. UNVERIFIED: written without a GPU."""
        import cupy

        device = int(next(iter(arrays.values())).device.id)
        sizes = {f"in_{n}": a.nbytes for n, a in arrays.items()}
        sizes.update({f"out_{n}": b for n, b in self._output_sizes(arrays, names).items()})
        try:
            for key, size in sizes.items():
                region = state.cuda.setdefault(key, CudaRegion(
                    f"{self._prefix}_{threading.get_ident()}_cu{len(state.cuda)}"))
                region.ensure(size, device, self._registrar(state.client, "cuda"),
                              partial(self._unregister, state.client, region))
        except (ImportError, RuntimeError, self._ise) as exc:  # no cuda-python / no extension
            if isinstance(exc, self._ise) and str(exc.status()) not in _NO_EXTENSION:
                raise
            self._no_cuda = True
            log.info("%r: CUDA shared memory unavailable (%s); copying CuPy tensors through "
                     "the host", self, exc)
            return None
        for name, array in arrays.items():
            state.cuda[f"in_{name}"].write(cupy.ascontiguousarray(array))
        inputs, outputs = self._placed(
            arrays, {n: (state.cuda[f"in_{n}"].name, 0) for n in arrays},
            {n: (state.cuda[f"out_{n}"].name, sizes[f"out_{n}"], 0) for n in names})
        result = self._send(state.client, inputs, outputs, params)
        return {n: state.cuda[f"out_{n}"].read(self._datatypes[n], self._output_shape(result, n))
                for n in names}

    # --- plumbing ------------------------------------------------------------------------

    def _system_wanted(self, arrays: dict[str, Any], names: tuple[str, ...]) -> bool:
        if self.shared_memory not in ("auto", "system") or self._no_system:
            return False
        if any(self._datatypes[n] == "BYTES" for n in (*arrays, *names)):
            return False
        return self.shared_memory == "system" or (
            "system_shared_memory" in self._extensions and self._host in _LOCAL_HOSTS
            and sum(a.nbytes for a in arrays.values()) >= AUTO_SHM_MIN_BYTES)

    def _cuda_wanted(self, names: tuple[str, ...]) -> bool:
        if self.shared_memory not in ("auto", "cuda") or self._no_cuda:
            return False
        if any(self._datatypes[n] == "BYTES" for n in names):
            return False
        return self.shared_memory == "cuda" or (
            "cuda_shared_memory" in self._extensions and self._host in _LOCAL_HOSTS)

    def _output_sizes(self, arrays: dict[str, Any], names: tuple[str, ...]) -> dict[str, int]:
        shapes = [tuple(a.shape) for a in arrays.values()]
        spec = self.spec()
        return {t.name: estimate_output_bytes(t.shape, np.dtype(t.dtype).itemsize, shapes)
                for t in spec.outputs if t.name in names}

    def _placed(self, arrays: dict[str, Any], at: dict[str, tuple[str, int]],
                out_at: dict[str, tuple[str, int, int]]) -> tuple[list[Any], list[Any]]:
        """Inputs and requested outputs living in shared-memory regions (name, [size,] offset)."""
        inputs, outputs = [], []
        for name, array in arrays.items():
            item = self._mod.InferInput(name, list(array.shape), self._datatypes[name])
            item.set_shared_memory(at[name][0], array.nbytes, at[name][1])
            inputs.append(item)
        for name, (region, size, offset) in out_at.items():
            item = self._mod.InferRequestedOutput(name)
            item.set_shared_memory(region, size, offset)
            outputs.append(item)
        return inputs, outputs

    def _send(self, client: Any, inputs: list[Any], outputs: list[Any],
              params: dict[str, Any] | None) -> Any:
        return self._wire.call("inference", lambda: client.infer(
            self.model, inputs, model_version=self.version, outputs=outputs, parameters=params,
            **self._kw), idempotent=False)

    def _output_shape(self, result: Any, name: str) -> list[int]:
        out = result.get_output(name)
        if out is None:
            raise self._wire.error(f"the server returned no output '{name}'")
        return [int(d) for d in (out["shape"] if isinstance(out, dict) else out.shape)]

    def _registrar(self, client: Any, kind: str) -> Any:
        """Return ``register(name, key_or_handle, ...)`` for system or CUDA regions."""
        how = (client.register_cuda_shared_memory if kind == "cuda"
               else client.register_system_shared_memory)

        def register(*args: Any) -> None:
            self._wire.call(f"register {kind} shared memory", lambda: how(*args, **self._kw),
                            idempotent=False)

        return register

    def _unregister(self, client: Any, region: Region, name: str) -> None:
        if client is None:
            return
        how = (client.unregister_cuda_shared_memory if isinstance(region, CudaRegion)
               else client.unregister_system_shared_memory)
        self._wire.call("unregister shared memory", lambda: how(name, **self._kw),
                        idempotent=True)
