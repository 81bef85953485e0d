"""The platform server's routes stay what clients know (issue 18.10: one router per resource).

The published operations (method, path, operation id, success status, token needed) are pinned
here as they were before ``create_app`` was split into routers; the routes left out of the
schema (``/docs``, the console) are still served, by a real ``clara-rt serve``.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi")

from clara_rt.server.app import create_app
from clara_rt.server.config import ServerConfig
from tests.server_process import ServerProcess

# (method, path) -> (operation id, success status, needs the token)
OPERATIONS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("GET", "/health"): ("health_health_get", "200", False),
    ("GET", "/metrics"): ("metrics_metrics_get", "200", False),
    ("GET", "/v1/monitor"): ("monitor_v1_monitor_get", "200", False),
    ("GET", "/v1/events"): ("all_events_v1_events_get", "200", False),
    ("GET", "/v1/exports"): ("list_exports_v1_exports_get", "200", False),
    ("PATCH", "/v1/exports/{export_id}"): ("update_export_v1_exports__export_id__patch", "200",
                                           True),
    ("GET", "/v1/pipelines"): ("list_pipelines_v1_pipelines_get", "200", False),
    ("POST", "/v1/pipelines"): ("create_pipeline_v1_pipelines_post", "201", True),
    ("GET", "/v1/pipelines/{ref}"): ("describe_pipeline_v1_pipelines__ref__get", "200", False),
    ("DELETE", "/v1/pipelines/{ref}"): ("delete_pipeline_v1_pipelines__ref__delete", "204",
                                        True),
    ("GET", "/v1/pipelines/{ref}/definition"): (
        "pipeline_definition_v1_pipelines__ref__definition_get", "200", False),
    ("GET", "/v1/payloads"): ("list_payloads_v1_payloads_get", "200", False),
    ("POST", "/v1/payloads"): ("create_payload_v1_payloads_post", "201", True),
    ("GET", "/v1/payloads/{payload_id}"): (
        "describe_payload_v1_payloads__payload_id__get", "200", False),
    ("DELETE", "/v1/payloads/{payload_id}"): (
        "delete_payload_v1_payloads__payload_id__delete", "204", True),
    ("GET", "/v1/payloads/{payload_id}/archive"): (
        "payload_archive_v1_payloads__payload_id__archive_get", "200", False),
    ("GET", "/v1/payloads/{payload_id}/files/{path}"): (
        "payload_file_v1_payloads__payload_id__files__path__get", "200", False),
    ("GET", "/v1/jobs"): ("list_jobs_v1_jobs_get", "200", False),
    ("POST", "/v1/jobs"): ("create_job_v1_jobs_post", "201", True),
    ("GET", "/v1/jobs/{job_id}"): ("job_status_v1_jobs__job_id__get", "200", False),
    ("DELETE", "/v1/jobs/{job_id}"): ("delete_job_v1_jobs__job_id__delete", "204", True),
    ("POST", "/v1/jobs/{job_id}/start"): ("start_job_v1_jobs__job_id__start_post", "200", True),
    ("POST", "/v1/jobs/{job_id}/cancel"): ("cancel_job_v1_jobs__job_id__cancel_post", "200",
                                           True),
    ("GET", "/v1/jobs/{job_id}/events"): ("job_events_v1_jobs__job_id__events_get", "200",
                                          False),
    ("GET", "/v1/jobs/{job_id}/logs/{operator}"): (
        "job_logs_v1_jobs__job_id__logs__operator__get", "200", False),
    ("GET", "/v1/jobs/{job_id}/trace"): ("trace_v1_jobs__job_id__trace_get", "200", False),
    ("GET", "/v1/jobs/{job_id}/results"): ("job_results_v1_jobs__job_id__results_get", "200",
                                           False),
    ("GET", "/v1/jobs/{job_id}/results/archive"): (
        "job_results_archive_v1_jobs__job_id__results_archive_get", "200", False),
    ("GET", "/v1/jobs/{job_id}/results/files/{path}"): (
        "job_result_file_v1_jobs__job_id__results_files__path__get", "200", False),
    ("GET", "/v1/jobs/{job_id}/exports"): ("job_exports_v1_jobs__job_id__exports_get", "200",
                                           False),
    ("POST", "/v1/jobs/{job_id}/exports"): (
        "create_export_v1_jobs__job_id__exports_post", "201", True),
}


def _published(token: str | None, tmp_path: Path) -> dict[tuple[str, str], tuple[str, str, bool]]:
    schema = create_app(ServerConfig(data=tmp_path / "data", token=token)).openapi()
    return {(method.upper(), path): (op["operationId"], min(op["responses"]), "security" in op)
            for path, ops in schema["paths"].items() for method, op in ops.items()}


def test_issue_18_every_operation_keeps_its_path_id_status_and_token(tmp_path: Path) -> None:
    assert _published("t0ken", tmp_path) == OPERATIONS


def test_issue_18_writes_name_the_bearer_scheme_even_without_a_token(tmp_path: Path) -> None:
    published = _published(None, tmp_path)
    assert {key: row[2] for key, row in published.items()} == {
        key: row[2] for key, row in OPERATIONS.items()}


def test_issue_18_routes_outside_the_schema_are_served(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", token="t0ken") as server:
        url = urlsplit(server.url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        try:
            answers = {}
            for path in ("/", "/docs", "/console/static/console.css", "/console/jobs"):
                conn.request("GET", path)
                response = conn.getresponse()
                answers[path] = (response.status, response.getheader("location"),
                                 (response.getheader("content-type") or "").split(";")[0],
                                 response.read())
        finally:
            conn.close()
    assert answers["/"][:2] == (307, "/console")
    assert answers["/docs"][0::2] == (200, "text/html")
    assert b"/v1/pipelines" in answers["/docs"][3]
    assert answers["/console/static/console.css"][0::2] == (200, "text/css")
    assert answers["/console/jobs"][0::2] == (200, "text/html")
