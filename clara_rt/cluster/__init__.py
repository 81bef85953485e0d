"""Scale-out: clara-rt jobs spread over the machines of a Ray cluster.

Every node keeps its own long-lived clara-rt runtime in a Ray actor (one per node, one per GPU
on nodes with GPUs); the server, or a :class:`ClusterRuntime` in a Python program, sends each job
to an actor with free capacity. Inside a node nothing changes: operators hand their arrays over
by reference. Needs the ``cluster`` extra (``pip install 'clara-rt[cluster]'``) on the server
and on every node; Ray is imported only by the driver process (:mod:`.bridge`, with
:mod:`.actor_slots` and :mod:`.job_flights`) and the node actors (:mod:`.node_actor`), never by
the server itself (:mod:`.ray_runner`, :mod:`.slot_table`, :mod:`.bridge_process`).

* :class:`ClusterRuntime` (:mod:`.runtime`): ``submit(definition, payload_dir)`` from Python.
* :class:`RayRunner` (:mod:`.ray_runner`): the server's runner (``clara-rt serve --cluster``).
* :class:`LocalCluster` (:mod:`.local`): ``ray start`` processes on this machine (tests, bench).

Names are imported on first use, so that ``clara_rt.server.config`` can use :mod:`.address`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clara_rt.cluster.local import LocalCluster as LocalCluster
    from clara_rt.cluster.ray_runner import RayRunner as RayRunner
    from clara_rt.cluster.run import ClusterError as ClusterError
    from clara_rt.cluster.run import ClusterState as ClusterState
    from clara_rt.cluster.run import ClusterUnavailableError as ClusterUnavailableError
    from clara_rt.cluster.run import RayRun as RayRun
    from clara_rt.cluster.runtime import ClusterJob as ClusterJob
    from clara_rt.cluster.runtime import ClusterRuntime as ClusterRuntime

__all__ = ["ClusterError", "ClusterJob", "ClusterRuntime", "ClusterState",
           "ClusterUnavailableError", "LocalCluster", "RayRun", "RayRunner"]

_WHERE = {"ClusterError": "run", "ClusterState": "run", "ClusterUnavailableError": "run",
          "RayRun": "run", "RayRunner": "ray_runner", "ClusterJob": "runtime",
          "ClusterRuntime": "runtime", "LocalCluster": "local"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'clara_rt.cluster' has no attribute {name!r}")
    return getattr(importlib.import_module(f"clara_rt.cluster.{module}"), name)
