"""The scenario table behind ``clara-rt bench``: :data:`SCENARIOS` and :func:`run_scenario`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clara_rt.bench._branches import branches
from clara_rt.bench._cluster import cluster
from clara_rt.bench._construct import construct
from clara_rt.bench._dicom import dicom
from clara_rt.bench._dispatch import core, dispatch
from clara_rt.bench._e2e import e2e
from clara_rt.bench._gpu import gpu
from clara_rt.bench._hops import hops
from clara_rt.bench._inference import inference
from clara_rt.bench._kernels import kernels
from clara_rt.bench._load import load
from clara_rt.bench._lungseg import lungseg
from clara_rt.bench._priority import priority
from clara_rt.bench._quick import QUICK
from clara_rt.bench._record import BenchRecord, Progress
from clara_rt.bench._rss import idle_rss
from clara_rt.bench._startup import startup
from clara_rt.bench._throughput import throughput

SCENARIOS: dict[str, Callable[..., BenchRecord]] = {
    "hops": hops,
    "throughput": throughput,
    "core": core,
    "dispatch": dispatch,
    "construct": construct,
    "rss": idle_rss,
    "kernels": kernels,
    "dicom": dicom,
    "inference": inference,
    "startup": startup,
    "priority": priority,
    "branches": branches,
    "e2e": e2e,
    "load": load,
    "cluster": cluster,
    "lungseg": lungseg,
    "gpu": gpu,
}
"""Scenario name (as on the command line) -> function."""

_JOBS_PARAM = {"hops": "jobs", "throughput": "jobs", "core": "jobs", "dispatch": "jobs",
               "priority": "backlog", "load": "jobs", "cluster": "jobs", "gpu": "hop_jobs"}
"""Which keyword ``--jobs`` sets, per scenario that takes it."""


def run_scenario(name: str, *, jobs: int | None = None, repeat: int | None = None,
                 quick: bool = False, progress: Progress | None = None,
                 options: Mapping[str, Any] | None = None) -> BenchRecord:
    """Run scenario ``name`` with its defaults, overriding ``jobs`` / ``repeat`` when given.

    ``jobs`` applies to ``hops``, ``throughput``, ``core``, ``load``, ``cluster`` and
    ``priority`` (its backlog) and is ignored by the others. ``quick`` starts from the small
    sizes of :data:`QUICK`. ``options`` are further keyword arguments of the scenario's function
    (the ``load`` options of ``clara-rt bench``).

    Raises:
        KeyError: ``name`` is not in :data:`SCENARIOS`.
    """
    func = SCENARIOS[name]
    kwargs: dict[str, Any] = {**(QUICK.get(name, {}) if quick else {}), "progress": progress}
    if jobs is not None and name in _JOBS_PARAM:
        kwargs[_JOBS_PARAM[name]] = jobs
    if repeat is not None:
        kwargs["repeat"] = repeat
    kwargs.update(options or {})
    return func(**kwargs)
