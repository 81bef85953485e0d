"""Issue 18.10: the server's and client's errors join ClaraRTError; records are named fields."""

from __future__ import annotations

import dataclasses

import pytest

from clara_rt import errors
from clara_rt.client import Client, ClientError
from clara_rt.cluster.run import RunSpec
from clara_rt.errors import ClaraRTError, Conflict, NotFound
from clara_rt.runner.needs import JobNeeds


@pytest.mark.parametrize(("cls", "also"), [(NotFound, LookupError), (Conflict, RuntimeError),
                                           (ClientError, Exception)])
def test_server_and_client_errors_are_clara_rt_errors(cls: type[Exception],
                                                      also: type[Exception]) -> None:
    assert issubclass(cls, ClaraRTError) and issubclass(cls, also)
    assert cls.__module__ == "clara_rt.errors" and cls.__doc__


def test_the_old_names_are_the_same_classes() -> None:
    pipelines = pytest.importorskip("clara_rt.server.pipelines")
    assert pipelines.NotFound is errors.NotFound and pipelines.Conflict is errors.Conflict


def test_a_refused_connection_is_a_client_error_with_no_status() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ClaraRTError) as caught:
        Client(f"http://127.0.0.1:{port}", timeout=5).list_jobs()
    assert isinstance(caught.value, ClientError) and caught.value.status is None


def test_run_spec_fields_are_named_and_frozen() -> None:
    with pytest.raises(TypeError):
        RunSpec("id", ("p", 1), "p", "", {}, "normal", None)  # type: ignore[misc]
    spec = RunSpec(job_id="id", key=("p", 1), name="p", text="", variables={},
                   priority="normal", timeout=None, needs=JobNeeds(memory=1))
    assert spec.needs.memory == 1 and spec.job_name == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.priority = "low"  # type: ignore[misc]
