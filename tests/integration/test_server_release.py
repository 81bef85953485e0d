"""A long-lived server releases pipelines it no longer uses (issue 18.1): builds evicted from
the registry's cache, replaced and deleted pipelines leave the runtime (operators stopped, C++
graph removed) once their jobs end. The registry, the operator logs observer and the runtime are
the server's own, run in process so their objects can be counted."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from clara_rt import Runtime
from clara_rt.runner.logs import OperatorLogs
from clara_rt.server.config import ServerConfig
from clara_rt.server.pipelines import PipelineRegistry
from clara_rt.server.store import Store

pytest.importorskip("fastapi")

from tests.integration.test_server_api import folder_pipeline


def test_evicted_replaced_and_deleted_pipelines_are_released(tmp_path: Path) -> None:
    config = ServerConfig(data=tmp_path / "data")
    registry = PipelineRegistry(config, Store(config.db_path))
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.txt").write_text("a")
    refs: list[weakref.ref[object]] = []

    def run_once(rt: Runtime, name: str, i: int) -> None:
        built = registry.build(registry.get(name)["id"], {"I": str(i)})
        refs.extend(weakref.ref(op) for op in built.pipeline.operators)
        job = rt.submit(built.pipeline, built.payload_for(inputs), workspace=tmp_path / f"w{i}")
        job.result(timeout=30)

    with Runtime(workers=2) as rt:
        rt.add_observer(OperatorLogs())  # as the server's runtime has
        registry.create(folder_pipeline("kept"))
        for i in range(60):  # distinct variables: 60 builds through a 32-entry cache
            run_once(rt, "kept", i)
        for i in range(10):  # replaced ten times: every older version's build goes
            registry.create(folder_pipeline("swapped", seconds=0.001 * i), replace=True)
            run_once(rt, "swapped", 100 + i)
        registry.create(folder_pipeline("gone"))
        run_once(rt, "gone", 200)
        registry.delete("gone")
        gc.collect()
        alive = sum(ref() is not None for ref in refs)
        stats = rt.stats()
        # The cache holds the 30 newest builds of 'kept' and the current 'swapped' one (a
        # replace forgets the older versions at once); only their operators are alive, and the
        # runtime holds exactly their graphs.
        swapped = registry.get("swapped")["id"]
        assert sum(key[0] == swapped for key in registry._built) == 1
        cached = len(registry._built)
        assert cached == 30 + 1
        assert alive == 2 * cached, f"{alive} of {len(refs)} operators alive"
        assert stats.graphs == stats.pipelines == cached
        assert stats.operators == alive
        run_once(rt, "kept", 0)  # still works after all that
