"""Routes of pipelines: register (a YAML body or JSON ``{definition}``), list, describe, read the
definition, delete."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse

from clara_rt.server.deps import WRITE, ServerDep
from clara_rt.server.http_errors import ERRORS
from clara_rt.server.models import PipelineCreate, PipelineOut
from clara_rt.server.payload_routes import content_type
from clara_rt.server.payloads import PayloadTooLarge

__all__ = ["router"]

_YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
               "text/plain"}
_MAX_DEFINITION = 1 << 20


def _yaml_or_json_body() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": PipelineCreate.model_json_schema()},
    }}}


router = APIRouter(tags=["pipelines"])


@router.post("/v1/pipelines", status_code=201, response_model=PipelineOut, dependencies=WRITE,
             responses=ERRORS, openapi_extra=_yaml_or_json_body())
async def create_pipeline(request: Request, s: ServerDep, replace: bool = False,
                          filename: str = "pipeline.yaml") -> dict[str, Any]:
    """Register a Clara pipeline definition (JSON ``{definition}`` or a raw YAML body)."""
    body = await _read_limited(request, _MAX_DEFINITION)
    ctype = content_type(request)
    if ctype == "application/json":
        try:
            spec = PipelineCreate.model_validate_json(body)
        except ValueError as exc:
            raise HTTPException(422, f"bad pipeline request: {exc}") from exc
        text, filename, replace = spec.definition, spec.filename, spec.replace or replace
    elif ctype in _YAML_TYPES or not ctype:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "the definition is not UTF-8 text") from exc
    else:
        raise HTTPException(400, f"send the definition as YAML "
                            f"(Content-Type: application/yaml) or JSON, not {ctype}")
    return await anyio.to_thread.run_sync(
        lambda: s.pipelines.create(text, filename, replace=replace))


@router.get("/v1/pipelines", response_model=list[PipelineOut])
def list_pipelines(s: ServerDep) -> list[dict[str, Any]]:
    return s.pipelines.all()


@router.get("/v1/pipelines/{ref}", response_model=PipelineOut, responses=ERRORS)
def describe_pipeline(ref: str, s: ServerDep) -> dict[str, Any]:
    """The pipeline (by id or name) with its jobs per state."""
    return s.pipelines.describe(ref)


@router.get("/v1/pipelines/{ref}/definition", response_class=PlainTextResponse,
            responses=ERRORS)
def pipeline_definition(ref: str, s: ServerDep) -> str:
    return s.pipelines.definition_text(ref)


@router.delete("/v1/pipelines/{ref}", status_code=204, dependencies=WRITE, responses=ERRORS)
def delete_pipeline(ref: str, s: ServerDep) -> Response:
    s.pipelines.delete(ref)
    return Response(status_code=204)


async def _read_limited(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return bytes(body)
