"""The ``inference`` scenario: :class:`~clara_rt.backends.triton.TritonBackend` vs tritonclient.

Needs a running Triton server with the ``double`` model (``x`` FP32 ``[-1, -1]`` -> ``2x``,
``../shared/peers/triton``); its HTTP URL comes from ``url`` or ``CLARA_RT_TRITON_URL``
(default ``http://127.0.0.1:8000``). Without a reachable server the record has no figures and
its note says why. For each input size (1 MiB and 64 MiB of FP32 by default) each round times,
in turn, one request through:

* ``tritonclient (http binary)``: ``InferInput.set_data_from_numpy`` + ``client.infer`` +
  ``as_numpy`` -- what a script would write;
* ``clara-rt (http binary)``: ``TritonBackend.infer`` with ``shared_memory="none"`` (spec check,
  input validation, thread-local client, same payload);
* ``clara-rt (system shm)``: ``TritonBackend.infer`` with ``shared_memory="system"`` (inputs and
  outputs through ``/dev/shm``; outputs copied out).

Figures are medians in ms. Targets: backend overhead over the bare call <= 5 % per size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.errors import BackendError

__all__ = ["inference"]

BARE, BINARY, SHM = "tritonclient (http binary)", "clara-rt (http binary)", "clara-rt (system shm)"


def inference(url: str | None = None, model: str = "double", sizes_mb: tuple[int, ...] = (1, 64),
              repeat: int = 10, *, progress: Progress | None = None) -> BenchRecord:
    """Time one ``model`` request per system and size; medians of the rounds.

    Args:
        url: Triton's HTTP URL; ``CLARA_RT_TRITON_URL`` or ``http://127.0.0.1:8000`` when None.
        model: A model taking ``x`` FP32 ``[1, n]`` and returning ``y`` of the same shape.
        sizes_mb: Input sizes in MiB.
        repeat: Rounds for the largest size; smaller sizes get proportionally more (up to 16x).
        progress: Called with one-line progress messages.
    """
    from clara_rt.backends.triton import TritonBackend

    say = progress or _quiet
    url = url or os.environ.get("CLARA_RT_TRITON_URL", "http://127.0.0.1:8000")
    params: dict[str, Any] = {"url": url, "model": model, "sizes_mb": list(sizes_mb),
                              "repeat": repeat}
    title = f"one '{model}' request over HTTP, FP32 inputs of {sizes_mb} MiB, median of rounds"
    backends: list[TritonBackend] = []
    try:
        backends = [TritonBackend(url, model, shared_memory=m) for m in ("none", "system")]
        backends[0].spec()
    except BackendError as exc:
        for backend in backends:
            backend.close()
        return BenchRecord("inference", title, machine_info(), params, {}, {},
                           notes=f"not measured: {exc}. Start Triton with the 'double' model "
                                 f"and set CLARA_RT_TRITON_URL.")
    binary, shm = backends
    bare = _BareCall(binary.url, model)
    try:
        figures: dict[str, dict[str, float]] = {BARE: {}, BINARY: {}, SHM: {}}
        for mb in sizes_mb:
            x = np.random.default_rng(mb).random((1, mb * (1 << 20) // 4), dtype=np.float32)
            rounds = repeat * max(1, min(16, max(sizes_mb) // mb))
            systems: dict[str, Callable[[], Any]] = {
                BARE: partial(bare, x), BINARY: partial(binary.infer, {"x": x}),
                SHM: partial(shm.infer, {"x": x})}
            for name, t in _rounds(systems, rounds, f"{mb} MiB", say).items():
                figures[name][f"{mb}MiB_ms"] = t * 1e3
    finally:
        bare.close()
        binary.close()
        shm.close()
    ratios, targets = {}, []
    for mb in sizes_mb:
        key = f"{mb}MiB_ms"
        ratios[f"tritonclient / clara-rt http ({mb} MiB)"] = _ratio(figures[BARE][key],
                                                                    figures[BINARY][key])
        ratios[f"http binary / system shm ({mb} MiB)"] = _ratio(figures[BINARY][key],
                                                                figures[SHM][key])
        overhead = (figures[BINARY][key] / figures[BARE][key] - 1) * 100
        targets.append(Target(f"clara-rt overhead over tritonclient at {mb} MiB", overhead, 5.0,
                              "%"))
    return BenchRecord("inference", title, machine_info(), params, figures, ratios,
                       tuple(targets),
                       notes="systems alternate within each round, in reverse order every other "
                             "round; all send the same array to the same server; shm copies the "
                             "outputs out of the region.")


# --- private ------------------------------------------------------------------------------


class _BareCall:
    """The baseline: a plain tritonclient HTTP request with binary tensors."""

    def __init__(self, url: str, model: str) -> None:
        import tritonclient.http as th

        self._th, self._model = th, model
        self._client = th.InferenceServerClient(url.split("://", 1)[-1])

    def __call__(self, x: np.ndarray[Any, Any]) -> Any:
        item = self._th.InferInput("x", list(x.shape), "FP32")
        item.set_data_from_numpy(x)
        return self._client.infer(self._model, [item]).as_numpy("y")

    def close(self) -> None:
        self._client.close()


def _rounds(systems: dict[str, Callable[[], Any]], rounds: int, label: str,
            say: Progress) -> dict[str, float]:
    """Warm every system up, then run ``rounds`` rounds, alternating the order; return medians."""
    for run in systems.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in systems}
    order = list(systems.items())
    for r in range(rounds):
        for name, run in order if r % 2 == 0 else order[::-1]:  # no system always goes first
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
        if r == 0 or (r + 1) % max(1, rounds // 4) == 0:
            say(f"inference: {label} round {r + 1}/{rounds}")
    return {name: float(np.median(t)) for name, t in times.items()}
