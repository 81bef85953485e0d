"""Issue 16: property tests with hostile names, result paths and job values (a few seconds).

* Any operator or port name in a YAML definition either parses into one safe path component or
  fails with a DefinitionError located at its line; nothing else escapes the reader.
* Any result path asked for either names a regular file inside the output folder or is "not
  found", whatever links the folder holds.
* Any job value reaches a shell script as exactly that text, never as code.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clara_rt.definition import parse_definition
from clara_rt.definition._argv import VAR_PREFIX, fill_argument, fill_script
from clara_rt.errors import DefinitionError
from clara_rt.names import MAX_NAME_LENGTH, name_problem

pytest.importorskip("fastapi")  # result_file lives in the server package

from clara_rt.server.pipelines import NotFound
from clara_rt.server.results import drop_links, result_file, result_files

HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["..", ".", "/", "/tmp/x/absop", "../../etc", "a/b", "a\\b", "\x00",
                     "a\nb", "\t", " ", "x" * (MAX_NAME_LENGTH + 1), "C:\\x", "~root",
                     "\u202e", "op\u2028", "-rf"]),
    st.lists(st.sampled_from(["..", "a", "/", "\\", ".", "\x00", "\x1b"]), max_size=6).map(
        "".join),
)
FAST = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def definition(op_name: str, port_name: str = "out") -> str:
    return f"""\
api-version: 0.5.0
name: hostile
operators:
- name: {json.dumps(op_name)}
  container:
    image: none
    command: ["true"]
  input:
  - path: /input
  output:
  - name: {json.dumps(port_name)}
    path: /output
"""


@FAST
@given(HOSTILE)
def test_issue_16_4_operator_names_are_one_component_or_a_located_error(name: str) -> None:
    try:
        parsed = parse_definition("hostile.yaml", text=definition(name), environ={})
    except DefinitionError as exc:
        assert exc.line in (4, 11) or "hostile.yaml:" in str(exc), str(exc)
        return
    got = parsed.operators[0].name
    assert name_problem(got) is None
    base = Path("/srv/jobs/1/logs")
    assert (base / f"{got}.log").parent == base
    assert os.path.normpath(base / got).startswith(f"{base}/")


@FAST
@given(HOSTILE)
def test_issue_16_4_port_names_are_one_component_or_a_located_error(name: str) -> None:
    try:
        parsed = parse_definition("hostile.yaml", text=definition("op", name), environ={})
    except DefinitionError as exc:
        assert exc.line is not None, str(exc)
        return
    port = parsed.operators[0].outputs[0].name
    assert port is not None and name_problem(port) is None


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    secret = root / "secret.txt"
    secret.write_text("outside")
    out = root / "output"
    (out / "op" / "port").mkdir(parents=True)
    (out / "op" / "port" / "mask.nii").write_bytes(b"inside")
    (out / "top.txt").write_text("inside")
    for name, to in (("passwd", "/etc/passwd"), ("root", "/"), ("up", ".."),
                     ("secret", str(secret)), ("loop", "loop"), ("rel", "../secret.txt")):
        (out / name).symlink_to(to)
    (out / "op" / "port" / "sneaky").symlink_to("../../../secret.txt")
    return out


PARTS = st.sampled_from(["..", ".", "", "op", "port", "mask.nii", "top.txt", "passwd", "root",
                         "up", "secret", "loop", "rel", "sneaky", "etc", "secret.txt", "%2e%2e",
                         "output", "\x00", "\\"])


@FAST
@given(st.one_of(st.lists(PARTS, max_size=6).map("/".join), st.text(max_size=30)))
def test_issue_16_1_result_paths_stay_inside_the_output(output: Path, path: str) -> None:
    try:
        found = result_file(output, path)
    except NotFound:
        return
    assert found.is_relative_to(output.resolve())
    assert not found.is_symlink() and found.is_file()
    assert found.read_bytes() == b"inside"


def test_issue_16_1_listing_and_drop_links(output: Path, tmp_path: Path) -> None:
    assert [rel for rel, _ in result_files(output)] == ["op/port/mask.nii", "top.txt"]
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(output), str(copy)], check=True)
    assert drop_links(copy) == ["loop", "op/port/sneaky", "passwd", "rel", "root", "secret",
                                "up"]
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*")) == [
        "op", "op/port", "op/port/mask.nii", "top.txt"]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
               max_size=30))
def test_issue_16_3_job_values_are_never_shell_code(value: str) -> None:
    script = fill_script("printf '%s|' ${{V}} \"${{V}}\" '${{V}}'", {"V": value})
    done = subprocess.run(["/bin/sh", "-c", script], env={VAR_PREFIX + "V": value,
                          "PATH": os.environ["PATH"]}, capture_output=True, check=True)
    assert done.stdout == f"{value}|{value}|{value}|".encode()
    assert fill_argument("--n=${{V}}", {"V": value}) == f"--n={value}"
