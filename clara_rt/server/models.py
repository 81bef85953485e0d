"""Request and response bodies of the HTTP API (they make the published OpenAPI schema)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clara_rt.job import PriorityName
from clara_rt.server.config import MAX_TIMEOUT

__all__ = [
    "ExportCreate",
    "ExportOut",
    "ExportUpdate",
    "FileOut",
    "FilesOut",
    "JobCreate",
    "JobOut",
    "JobStateName",
    "JobStatusName",
    "OperatorOut",
    "PayloadOut",
    "PipelineCreate",
    "PipelineOut",
    "PriorityName",
]

MAX_VARIABLES = 256
MAX_VARIABLE_BYTES = 64 << 10  # under Linux's MAX_ARG_STRLEN (128 KiB) for one argv/env entry
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

JobStateName = Literal["pending", "running", "stopped"]
JobStatusName = Literal["healthy", "faulted", "canceled", "timed-out"]
ExportStateName = Literal["pending", "in-progress", "succeeded", "failed"]


class PipelineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: str = Field(description="the Clara pipeline YAML text", max_length=1 << 20)
    filename: str = Field("pipeline.yaml", description="named in error messages",
                          max_length=255)
    replace: bool = Field(False, description="replace a pipeline of the same name")


class PipelineOperatorOut(BaseModel):
    name: str
    description: str
    inputs: list[str] = Field(description="operators this one takes inputs from")
    outputs: list[str]


class PipelineOut(BaseModel):
    id: str
    name: str
    api_version: str
    operators: list[PipelineOperatorOut]
    created: float
    updated: float
    jobs: dict[str, float | int | None] | None = Field(
        None, description="jobs per state and when the last one stopped (describe only)")


class FileOut(BaseModel):
    path: str
    size: int


class FilesOut(BaseModel):
    files: list[FileOut]


class PayloadOut(BaseModel):
    id: str
    name: str
    files: int
    size: int
    created: float
    file_list: list[FileOut] | None = None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pipeline: str = Field(description="pipeline id or name", min_length=1, max_length=255)
    payloads: list[str] = Field(default_factory=list, max_length=100,
                                description="payload ids; their files form the job's input")
    name: str | None = Field(None, max_length=255)
    priority: PriorityName = "normal"
    variables: dict[str, str] = Field(default_factory=dict)
    device: Literal["cpu", "cuda", "auto"] | None = Field(
        None, description="where the job's arrays live (auto: the GPU when there is one); "
                          "default the pipeline's clara-rt: {device: ...}, else cpu")
    timeout: float | None = Field(None, gt=0, le=MAX_TIMEOUT, allow_inf_nan=False, strict=True,
                                  description="seconds (at most 7 days); default: the "
                                              "server's")
    start: bool = Field(False, description="queue the job at once (else POST .../start)")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str | None) -> str | None:
        if name is not None and _CONTROL.search(name):
            raise ValueError(f"job name {name[:80]!r} holds control characters (NUL, newline...)")
        return name

    @field_validator("variables")
    @classmethod
    def _usable_values(cls, variables: dict[str, str]) -> dict[str, str]:
        """Every value must be something a command can be given (issue 16): a name that
        ``${{NAME}}`` can refer to, a value without NUL that fits in one environment entry."""
        if len(variables) > MAX_VARIABLES:
            raise ValueError(f"a job takes at most {MAX_VARIABLES} variables")
        for key, value in variables.items():
            if not _VARIABLE.fullmatch(key):
                raise ValueError(f"variable name {key[:80]!r} is not a name ${{{{NAME}}}} can "
                                 "refer to (letters, digits, '_'; not starting with a digit)")
            if "\x00" in value:
                raise ValueError(f"the value of {key} holds a NUL character, which no command "
                                 "can be given")
            if len(value.encode("utf-8", "surrogatepass")) > MAX_VARIABLE_BYTES:
                raise ValueError(f"the value of {key} is longer than {MAX_VARIABLE_BYTES} bytes "
                                 "(the most one argument or environment entry may hold); pass "
                                 "large data as a payload file")
        return variables


class OperatorOut(BaseModel):
    name: str
    state: str
    start_ms: float | None
    duration_ms: float | None


class HistoryOut(BaseModel):
    time: float
    state: str
    status: str
    note: str | None


class JobOut(BaseModel):
    id: str
    name: str
    pipeline: str
    pipeline_id: str
    payloads: list[str]
    priority: PriorityName
    state: JobStateName
    status: JobStatusName
    queued: bool
    error: str | None
    created: float
    started: float | None
    stopped: float | None
    timeout: float | None
    variables: dict[str, str]
    attempts: int
    operators: list[OperatorOut]
    results_deleted: float | None
    device: str | None = Field(None, description="the device asked for at creation, if any")
    placement: str | None = Field(None, description="where it ran: local or a cluster node")
    transport: str | None = Field(None, description="how payload and results travelled: "
                                                    "in-process, shared-path or object-store")
    history: list[HistoryOut] | None = None


class JobsOut(BaseModel):
    jobs: list[JobOut]


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = Field(min_length=1, max_length=4096,
                      description="result file, relative to the job's output folder")
    destination: str = Field(min_length=1, max_length=255)


class ExportUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: ExportStateName
    retries: int | None = Field(None, ge=0)
    error: str | None = Field(None, max_length=10000)


class ExportOut(BaseModel):
    id: str
    job: str
    file: str
    destination: str
    state: ExportStateName
    retries: int
    error: str | None
    created: float
    updated: float


class ExportsOut(BaseModel):
    exports: list[ExportOut]
