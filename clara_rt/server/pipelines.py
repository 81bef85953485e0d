"""Pipeline definitions registered with the server, checked when they arrive and built per job.

A definition is checked with the same parser as ``clara-rt validate`` (errors name the uploaded
file with line and column) and, when every operator can run here, built once so that port types
are checked too. The YAML text is kept as ``<data>/pipelines/<id>.yaml`` (written to a temporary
name and renamed) and its summary in the database. Jobs build the pipeline with their own
variables; built pipelines are cached per (pipeline, version, variables) so a warm server does
not rebuild operators (or reload models) for every job.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from clara_rt.definition.build import BuiltPipeline, build_pipeline, unresolved
from clara_rt.definition.schema import PipelineDefinition, parse_definition
from clara_rt.errors import ClaraRTError, Conflict, DefinitionError, NotFound
from clara_rt.runner.needs import JobNeeds
from clara_rt.server.config import ServerConfig
from clara_rt.server.store import Store, new_id

__all__ = ["Conflict", "NotFound", "PipelineRegistry"]

_BUILT_CACHE = 32


class PipelineRegistry:
    """Create, list, describe, delete and build pipelines."""

    def __init__(self, config: ServerConfig, store: Store) -> None:
        self._config = config
        self._store = store
        self._lock = threading.Lock()
        self._built: OrderedDict[tuple[Any, ...], BuiltPipeline] = OrderedDict()
        self._needs: dict[tuple[str, float], JobNeeds] = {}
        config.pipelines_dir.mkdir(parents=True, exist_ok=True)

    def create(self, text: str, filename: str = "pipeline.yaml", *,
               replace: bool = False) -> dict[str, Any]:
        """Check and register a definition; return its record.

        Raises:
            DefinitionError: The definition is invalid (message ``file:line:col: error: ...``).
            Conflict: A pipeline of that name exists and ``replace`` is false.
        """
        definition = parse_definition(filename, text=text, environ={}, allow_undefined=True)
        try:
            JobNeeds.of(definition.operators)
        except ValueError as exc:
            raise DefinitionError(f"{filename}: {exc}") from exc
        if not unresolved(definition):
            try:
                build_pipeline(definition, services=self._config.services,
                               require_services=False)
            except (ClaraRTError, ValueError) as exc:
                raise DefinitionError(f"{filename}: {exc}") from exc
        now = time.time()
        record = {"name": definition.name, "api_version": definition.api_version,
                  "operators": _operators(definition), "created": now, "updated": now}
        existing = self._store.pipeline(definition.name)
        record_id: str
        if existing is not None and existing["name"] == definition.name:
            if not replace:
                raise Conflict(f"a pipeline named '{definition.name}' exists (id "
                               f"{existing['id']}); delete it first or replace it "
                               "(?replace=true, clara-rt create pipeline --replace)")
            record_id = existing["id"]
            _write_atomic(self._path(record_id), text)
            self._store.replace_pipeline(record_id, record)
            self._forget(record_id)  # its old builds: released once their jobs end
            return self.describe(record_id)
        record_id = new_id()
        record["id"] = record_id
        _write_atomic(self._path(record_id), text)
        try:
            self._store.add_pipeline(record)
        except BaseException:  # e.g. the disk is full: no file without its record
            self._path(record_id).unlink(missing_ok=True)
            raise
        return self.describe(record_id)

    def get(self, ref: str) -> dict[str, Any]:
        """The record of the pipeline with id or name ``ref``, or :class:`NotFound`."""
        record = self._store.pipeline(ref)
        if record is None:
            raise NotFound(f"no pipeline with id or name '{ref}'")
        return record

    def describe(self, ref: str) -> dict[str, Any]:
        record = self.get(ref)
        jobs = self._store.count_jobs_of(record["id"])
        return {**record, "jobs": jobs}

    def definition_text(self, ref: str) -> str:
        return self._path(self.get(ref)["id"]).read_text()

    def all(self) -> list[dict[str, Any]]:
        return self._store.pipelines()

    def delete(self, ref: str) -> None:
        record = self.get(ref)
        busy = self._store.jobs(pipeline=record["id"], state="running", limit=5)
        busy += self._store.jobs(pipeline=record["id"], state="pending", limit=5)
        if busy:
            raise Conflict(f"pipeline '{record['name']}' has unfinished jobs "
                           f"({', '.join(job['id'] for job in busy)}); cancel them first")
        self._store.delete_pipeline(record["id"])
        self._path(record["id"]).unlink(missing_ok=True)
        self._forget(record["id"])

    def build(self, pipeline_id: str, variables: dict[str, str],
              device: str | None = None) -> BuiltPipeline:
        """The runnable pipeline for a job with ``variables`` and ``device`` (cached)."""
        record = self.get(pipeline_id)
        key = (record["id"], record["updated"], tuple(sorted(variables.items())), device)
        with self._lock:
            built = self._built.get(key)
            if built is not None:
                self._built.move_to_end(key)
                return built
        path = self._path(record["id"])
        definition: PipelineDefinition = parse_definition(
            f"{record['name']}.yaml", text=path.read_text(), variables=variables, environ={})
        built = build_pipeline(definition, services=self._config.services, device=device)
        with self._lock:
            self._built[key] = built
            while len(self._built) > _BUILT_CACHE:
                self._built.popitem(last=False)
        return built

    def needs_payload(self, ref: str) -> bool:
        """Whether a job of the pipeline reads a payload (an input with no ``from``)."""
        record = self.get(ref)
        definition = parse_definition(f"{record['name']}.yaml",
                                      text=self._path(record["id"]).read_text(),
                                      environ={}, allow_undefined=True)
        return any(port.from_ is None for op in definition.operators for port in op.inputs)

    def needs(self, pipeline_id: str) -> JobNeeds:
        """Memory and GPUs one job of the pipeline asks for (its operators' ``requests:``)."""
        record = self.get(pipeline_id)
        key = (record["id"], record["updated"])
        with self._lock:
            needs = self._needs.get(key)
        if needs is None:
            definition = parse_definition(f"{record['name']}.yaml",
                                          text=self._path(record["id"]).read_text(),
                                          environ={}, allow_undefined=True)
            needs = JobNeeds.of(definition.operators)
            with self._lock:
                self._needs[key] = needs
        return needs

    def _forget(self, pipeline_id: str) -> None:
        """Drop the cached builds and needs of a replaced or deleted pipeline. Nothing else
        holds a build, so the runtime releases it (operators stopped, graph removed) as soon as
        its last job ends."""
        with self._lock:
            for key in [k for k in self._built if k[0] == pipeline_id]:
                del self._built[key]
            for key in [k for k in self._needs if k[0] == pipeline_id]:
                del self._needs[key]

    def _path(self, pipeline_id: str) -> Path:
        return self._config.pipelines_dir / f"{pipeline_id}.yaml"


def _operators(definition: PipelineDefinition) -> list[dict[str, Any]]:
    return [{"name": op.name, "description": op.description,
             "inputs": sorted({entry.from_ for entry in op.inputs if entry.from_}),
             "outputs": [entry.name or entry.path or "" for entry in op.outputs]}
            for op in definition.operators]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk leaves no half-written (or empty) file behind
        tmp.unlink(missing_ok=True)
        raise
