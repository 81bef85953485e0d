"""Property tests of the platform server against its own published OpenAPI schema (schemathesis).

Requests generated from ``/openapi.json`` (valid and invalid) go to a real ``clara-rt serve``
holding a pipeline, a payload and finished jobs; every answer must be a documented status code
with a documented content type and body, and never a server error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from typing import Any  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

from tests.integration.test_server_api import folder_pipeline  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

TOKEN = "schema-token"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("openapi") / "data"
    with ServerProcess(data, "--workers", "2", "--max-payload", "2M", token=TOKEN) as server:
        client = server.client()
        client.create_pipeline(folder_pipeline("fuzzed"))
        payload = client.create_payload([Path(__file__)])
        client.wait_job(client.create_job("fuzzed", [payload["id"]])["id"], timeout=30)
        yield server


CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance,
          st_checks.content_type_conformance, st_checks.response_schema_conformance]


def test_every_operation_answers_as_documented(live_server: ServerProcess) -> None:
    # Event streams never end on their own: they are tested in test_server_api.
    api = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json").exclude(
        path_regex=r".*/events$")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 25, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate(base_url=live_server.url, timeout=30, checks=CHECKS,
                                   headers={"Authorization": f"Bearer {TOKEN}"})

        try:
            answers_as_documented()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
    # Still serving, and what it held is intact.
    client = live_server.client()
    assert client.get_pipeline("fuzzed")["name"] == "fuzzed"
