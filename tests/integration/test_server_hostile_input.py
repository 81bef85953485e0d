"""Property tests (hypothesis) of the server's intake against one real ``clara-rt serve``.

Generated tar archives (odd names, links, devices, duplicates, a file under a file, too many
members, too many bytes), garbage bodies, multipart forms and download paths go to a server with
small limits. Every answer must be 201 or a documented 4xx, never a server error; a refused
upload leaves nothing behind; an accepted one lists exactly its regular files, each inside the
payload; a download never leaves the payload folder. Examples are derandomized and few (the
whole module takes well under a minute) so CI runs the same cases every time.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.server_process import ServerProcess, wait_for  # noqa: E402

TOKEN = "hostile-token"
MAX_FILES = 20
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
UPLOAD_ANSWERS = {201, 400, 413}

SEGMENTS = st.one_of(
    st.sampled_from(["a", "b", "a.txt", "..", ".", "", "n" * 256, "ü", "x y", "\\", "c:",
                     "...", "-", "~", "$HOME", "%2e%2e"]),
    st.text(st.characters(min_codepoint=1, max_codepoint=0x10FFFF,
                          exclude_categories=("Cs",)), max_size=12),
)
NAMES = st.builds(lambda lead, parts: lead + "/".join(parts), st.sampled_from(["", "/", "./"]),
                  st.lists(SEGMENTS, min_size=1, max_size=4))
KINDS = st.sampled_from([tarfile.REGTYPE] * 6 + [tarfile.DIRTYPE, tarfile.SYMTYPE,
                                                 tarfile.LNKTYPE, tarfile.FIFOTYPE])
MEMBERS = st.lists(st.tuples(NAMES, KINDS, st.binary(max_size=64)), min_size=1,
                   max_size=MAX_FILES + 3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("hostile") / "data"
    with ServerProcess(data, "--max-payload", "256K", "--max-files", str(MAX_FILES),
                       token=TOKEN) as proc:
        yield proc


def request(server: ServerProcess, method: str, path: str, body: bytes | None = None,
            ctype: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if ctype:
        headers["Content-Type"] = ctype
    status, ctype_out, data = server.request(method, path, body, headers)
    return status, json.loads(data) if "json" in ctype_out else data


def tar_of(members: list[tuple[str, bytes, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
                tar.addfile(info)
    return buffer.getvalue()


def check_upload(server: ServerProcess, status: int, body: Any, files: int | None) -> None:
    """The invariants of every upload answer (``files``: regular files it should hold)."""
    assert status in UPLOAD_ANSWERS, (status, body)
    event(f"answer {status}")  # --hypothesis-show-statistics shows the mix
    wait_for(lambda: list((server.data / "tmp").iterdir()) == [], 5, "tmp to be empty")
    if status != 201:
        assert isinstance(body, dict) and body["detail"], body
        return
    status, described = request(server, "GET", f"/v1/payloads/{body['id']}")
    assert status == 200, described
    listed = [f["path"] for f in described["file_list"]]
    if files is not None:
        assert len(listed) == files == body["files"], (listed, body)
    folder = (server.data / "payloads" / body["id"]).resolve()
    for rel in listed:
        target = (folder / rel).resolve()
        assert target.is_relative_to(folder) and target.is_file() and not (
            folder / rel).is_symlink(), rel
    assert request(server, "DELETE", f"/v1/payloads/{body['id']}")[0] == 204


@SETTINGS
@given(members=MEMBERS, big=st.integers(0, 5).map(lambda n: n == 0))
def test_tar_intake_answers_4xx_or_holds_exactly_its_files(server: ServerProcess,
                                                           members: list[Any], big: bool) -> None:
    if big:  # over --max-payload 256K once unpacked
        members = [*members, ("big.bin", tarfile.REGTYPE, b"\0" * (300 << 10))]
    status, body = request(server, "POST", "/v1/payloads", tar_of(members), "application/x-tar")
    regular = sum(kind == tarfile.REGTYPE for _, kind, _ in members)
    check_upload(server, status, body, regular)
    if any(kind in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE) for _, kind, _
           in members):
        assert status != 201, "links and special files are never accepted"
    if len(members) > MAX_FILES or big:
        assert status != 201


@SETTINGS
@given(garbage=st.binary(max_size=4096), cut=st.integers(min_value=0, max_value=4096),
       ctype=st.sampled_from(["application/x-tar", "application/gzip", ""]))
def test_garbage_and_truncated_archives_are_4xx(server: ServerProcess, garbage: bytes,
                                                cut: int, ctype: str) -> None:
    archive = tar_of([("a.txt", tarfile.REGTYPE, b"x" * 2000), ("b", tarfile.REGTYPE, b"y")])
    for body in (garbage, archive[:cut], archive[:cut] + garbage):
        status, answer = request(server, "POST", "/v1/payloads", body, ctype or None)
        check_upload(server, status, answer, None)


@SETTINGS
@given(parts=st.lists(st.tuples(NAMES, st.binary(max_size=64)), min_size=0,
                      max_size=MAX_FILES + 3),
       tail=st.sampled_from([b"--B--\r\n", b"--B--", b"", b"--B\r\n", b"junk"]))
def test_multipart_intake_answers_4xx_or_holds_exactly_its_files(
        server: ServerProcess, parts: list[tuple[str, bytes]], tail: bytes) -> None:
    body = b"".join(
        b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\""
        + name.replace('"', "%22").replace("\r", "").replace("\n", "").encode("utf-8",
                                                                             "surrogatepass")
        + b"\"\r\n\r\n" + data + b"\r\n" for name, data in parts) + tail
    status, answer = request(server, "POST", "/v1/payloads", body,
                             "multipart/form-data; boundary=B")
    check_upload(server, status, answer, len(parts) if tail.startswith(b"--B--") else None)


@SETTINGS
@given(path=NAMES)
def test_downloads_never_leave_the_payload(server: ServerProcess, path: str) -> None:
    status, body = request(server, "POST", "/v1/payloads",
                           tar_of([("in/side.txt", tarfile.REGTYPE, b"inside")]),
                           "application/x-tar")
    assert status == 201, body
    quoted = "/".join(_quote(part) for part in path.split("/"))
    status, data = request(server, "GET", f"/v1/payloads/{body['id']}/files/{quoted}")
    assert status in (200, 400, 404, 422), (path, status, data)
    if status == 200:
        assert data == b"inside", (path, data)
    request(server, "DELETE", f"/v1/payloads/{body['id']}")


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


def test_the_server_survived_the_suite(server: ServerProcess) -> None:
    status, health = request(server, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert [p for p in (server.data / "payloads").iterdir()] == []
    assert not Path(server.data / "tmp").exists() or list((server.data / "tmp").iterdir()) == []
