"""CommandOperator end to end: real subprocesses, real folders, no mocks.

The genomics tests wire the Clara de novo assembly pipeline (``genomics-denovo.yaml``) by hand,
with its commands verbatim except that the ``${{VAR}}`` variables are filled in here
(``${{JOB_ID}}`` is left to the operator), and run them against the stand-in wrappers in
``tests/data/genomics_bin``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clara_rt import JobCancelledError, JobState, OperatorError, Pipeline, PipelineError, Runtime
from clara_rt.bench import checkout_env
from clara_rt.definition.command import CommandOperator

DATA = Path(__file__).resolve().parents[1] / "data"
GENOMICS_BIN = DATA / "genomics_bin"
GENOMICS_INPUT = DATA / "genomics_input"
YAML = "genomics-denovo.yaml"

GENOMICS_VARS = {
    "MAPPER_ADDITIONAL_PARAMS": "--verbose",
    "MAPPER_THREADS": "4", "MAPPER_KMER_SIZE": "15", "MAPPER_WINDOW_SIZE": "5",
    "MAPPER_INDEX_SIZE": "10",
    "RACON_ADDITIONAL_PARAMS": "-m 8 -x -6",
    "RACON_THREADS": "2", "RACON_LOOPS": "2", "RACON_POLISH_BATCH_SIZE": "100",
}
MAPPER_CMD = ("mapperWrapper.sh ${{MAPPER_ADDITIONAL_PARAMS}} -i /input "
              "-d /mapperOutput/${{JOB_ID}} -o /mapperOutput/${{JOB_ID}}/overlaps.paf "
              "-t ${{MAPPER_THREADS}} -k ${{MAPPER_KMER_SIZE}} -w ${{MAPPER_WINDOW_SIZE}} "
              "-s ${{MAPPER_INDEX_SIZE}}")
MINIASM_CMD = ("miniasmWrapper.sh -f /mapperOutput/${{JOB_ID}}/sample.fasta "
               "-l /mapperOutput/${{JOB_ID}}/overlaps.paf -o /asmOutput/${{JOB_ID}}/reads.gfa")
RACON_CMD = ("raconWrapper.sh ${{RACON_ADDITIONAL_PARAMS}} "
             "-r /mapperOutput/${{JOB_ID}}/sample.fasta -t ${{RACON_THREADS}} "
             "-l ${{RACON_LOOPS}} -p ${{RACON_POLISH_BATCH_SIZE}} "
             "-f /asmOutput/${{JOB_ID}}/reads.gfa -o /raconOutput/${{JOB_ID}} "
             "-a /raconOutput/${{JOB_ID}}/polished_assembly.fa")

READS_FASTA = (">read1\nACGTACGTTAGCCGATAGGC\n>read2\nGATAGGCTTACGGATCCA\n"
               ">read3\nGGATCCATTGACCAGTTAGCAT\n")


@pytest.fixture
def genomics_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Put the stand-in wrappers on PATH and point GENOMICS_TRACE at a fresh file."""
    for tool in ("mapperWrapper.sh", "miniasmWrapper.sh", "raconWrapper.sh"):
        assert os.access(GENOMICS_BIN / tool, os.X_OK), f"{tool} lost its executable bit"
    monkeypatch.setenv("PATH", f"{GENOMICS_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    trace = tmp_path / "trace.log"
    monkeypatch.setenv("GENOMICS_TRACE", str(trace))
    monkeypatch.setenv("CLARA_RT_COMMAND_ENV", "GENOMICS_TRACE")  # commands get only what is named
    return trace


def fill(command: str) -> str:
    """Substitute the pipeline variables by hand, leaving ${{JOB_ID}} to the operator."""
    return re.sub(r"\$\{\{(\w+)\}\}", lambda m: GENOMICS_VARS.get(m[1], m[0]), command)


def genomics_pipeline() -> Pipeline:
    p = Pipeline("denovo-assembly-pipeline")
    mapper = p.add(CommandOperator(
        "mapper", command=["/bin/sh", "-c", fill(MAPPER_CMD)], inputs=[("input", "/input/")],
        outputs=[("mapperOutput", "/mapperOutput")], source=f"{YAML}:3"))
    miniasm = p.add(CommandOperator(
        "miniasm", command=["/bin/sh", "-c", fill(MINIASM_CMD)],
        inputs=[("input", "/input/"), ("mapperOutput", "/mapperOutput")],
        outputs=[("asmOutput", "/asmOutput")], source=f"{YAML}:16"))
    racon = p.add(CommandOperator(
        "racon", command=["/bin/sh", "-c", fill(RACON_CMD)],
        inputs=[("input", "/input/"), ("asmOutput", "/asmOutput"),
                ("mapperOutput", "/mapperOutput")],
        outputs=[("raconOutput", "/raconOutput/")], source=f"{YAML}:29"))
    p.connect(mapper, "mapperOutput", miniasm, "mapperOutput")
    p.connect(mapper, "mapperOutput", racon, "mapperOutput")
    p.connect(miniasm, "asmOutput", racon, "asmOutput")
    return p


def genomics_payload(input_dir: Path) -> dict[str, Path]:
    return {"mapper.input": input_dir, "miniasm.input": input_dir, "racon.input": input_dir}


def one_op(op: CommandOperator, name: str = "one") -> Pipeline:
    p = Pipeline(name)
    p.add(op)
    return p


def test_genomics_pipeline_runs_in_dag_order(genomics_env: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with Runtime(workers=2) as rt:
        job = rt.submit(genomics_pipeline(), genomics_payload(GENOMICS_INPUT), workspace=ws)
        result = job.result(timeout=60)
    jid = str(job.id)
    assert result == {"racon.raconOutput": ws / "racon" / "raconOutput"}
    assert (ws / "mapper/mapperOutput" / jid / "sample.fasta").read_text() == READS_FASTA
    assert (ws / "mapper/mapperOutput" / jid / "overlaps.paf").read_text().splitlines() == [
        "read1\t20\t11\t20\t+\tread2\t18\t0\t9\t9\t9\t255",
        "read2\t18\t9\t18\t+\tread3\t22\t0\t9\t9\t9\t255"]
    gfa = (ws / "miniasm/asmOutput" / jid / "reads.gfa").read_text().splitlines()
    assert gfa[0] == "H\tVN:Z:1.0"
    assert gfa[-2:] == ["L\tread1\t+\tread2\t+\t9M", "L\tread2\t+\tread3\t+\t9M"]
    polished = (ws / "racon/raconOutput" / jid / "polished_assembly.fa").read_text()
    assert polished.startswith(">read1 polished loops=2\nACGTACGTTAGCCGATAGGC\n")
    assert polished.count(">") == 3
    # ${{JOB_ID}} became the job id in every path, and no literal token reached a folder name.
    assert not list(ws.rglob("*JOB_ID*"))
    trace = [line.split() for line in genomics_env.read_text().splitlines()]
    assert [tool for tool, _ in trace] == ["mapper", "miniasm", "racon"]
    stamps = [int(stamp) for _, stamp in trace]
    assert stamps == sorted(stamps)
    timings = job.timings
    assert timings["mapper"][1] <= timings["miniasm"][0]
    assert timings["miniasm"][1] <= timings["racon"][0]
    for op in ("mapper", "miniasm", "racon"):
        assert (ws / op / "stdout.log").exists()
        assert (ws / op / "stderr.log").read_text() == ""


def test_two_genomics_jobs_get_their_own_folders(genomics_env: Path, tmp_path: Path) -> None:
    p = genomics_pipeline()
    with Runtime(workers=2) as rt:
        jobs = [rt.submit(p, genomics_payload(GENOMICS_INPUT), workspace=tmp_path / f"ws{i}")
                for i in range(2)]
        for job in jobs:
            job.result(timeout=60)
    for i, job in enumerate(jobs):
        out = tmp_path / f"ws{i}" / "racon/raconOutput" / str(job.id) / "polished_assembly.fa"
        assert out.read_text().count(">") == 3


def test_stand_in_fails_on_missing_input_with_its_message(genomics_env: Path,
                                                          tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with Runtime(workers=2) as rt:
        job = rt.submit(genomics_pipeline(), genomics_payload(empty), workspace=tmp_path / "ws")
        with pytest.raises(OperatorError, match=r"(?s)operator 'mapper' exited with status 3 "
                           r"\(genomics-denovo.yaml:3\): /bin/sh -c .*no reads \(\*\.fastq\)"):
            job.result(timeout=60)
    assert job.state is JobState.FAILED
    assert not genomics_env.exists()  # nothing downstream ran


def test_environment_of_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARA_RT_TEST_PASSTHROUGH", "kept")
    monkeypatch.setenv("CLARA_RT_TOKEN", "server-secret")
    monkeypatch.setenv("CLARA_RT_COMMAND_ENV", "CLARA_RT_TEST_NAMED,CLARA_RT_TOKEN")
    monkeypatch.setenv("CLARA_RT_TEST_NAMED", "named")
    op = CommandOperator(
        "envdump", command=["/bin/sh", "-c", "env > $NVIDIA_CLARA_WORKSPACE/env.txt"],
        inputs=[("input", "/input")], outputs=[("out", "/output/"), ("extra", "/publish")],
        variables={"GREETING": "hello world", "OUT_FILE": "/output/${{JOB_ID}}/result.nii"},
        connections={"NVIDIA_CLARA_TRTISURI": "127.0.0.1:8000"})
    ws = tmp_path / "ws"
    with Runtime(workers=2) as rt:
        job = rt.submit(one_op(op, "envpipe"), {"envdump.input": GENOMICS_INPUT}, workspace=ws)
        result = job.result(timeout=30)
    folder = ws / "envdump"
    assert result == {"envdump.out": folder / "out", "envdump.extra": folder / "extra"}
    env = dict(line.split("=", 1) for line in (folder / "env.txt").read_text().splitlines()
               if "=" in line)
    assert env["NVIDIA_CLARA_JOBID"] == str(job.id)
    assert env["NVIDIA_CLARA_JOBNAME"] == f"envpipe-{job.id}"
    assert env["NVIDIA_CLARA_INPUTPATHS"] == f"input:{GENOMICS_INPUT}"
    assert env["NVIDIA_CLARA_OUTPUTPATHS"] == f"out:{folder / 'out'};extra:{folder / 'extra'}"
    assert env["NVIDIA_CLARA_WORKSPACE"] == str(folder)
    assert env["NVIDIA_CLARA_TRTISURI"] == "127.0.0.1:8000"
    assert env["GREETING"] == "hello world"
    assert env["OUT_FILE"] == f"{folder / 'out'}/{job.id}/result.nii"
    assert env["CLARA_RT_TEST_NAMED"] == "named"
    assert env["PWD"] == str(folder)
    # Issue 16.2: nothing else of the caller's environment, never its token.
    assert "CLARA_RT_TEST_PASSTHROUGH" not in env and "CLARA_RT_TOKEN" not in env
    assert "server-secret" not in (folder / "env.txt").read_text()
    assert env["HOME"] == str(folder) and env["TMPDIR"] == str(folder / ".tmp")
    assert env["LANG"] == env["LC_ALL"] == "C.UTF-8" and env["PATH"] == os.environ["PATH"]
    shell_own = {"PWD", "SHLVL", "_", "OLDPWD"}
    assert set(env) - shell_own == {
        "PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "CLARA_RT_TEST_NAMED", "GREETING",
        "OUT_FILE", "NVIDIA_CLARA_TRTISURI", "NVIDIA_CLARA_JOBID", "NVIDIA_CLARA_JOBNAME",
        "NVIDIA_CLARA_INPUTPATHS", "NVIDIA_CLARA_OUTPUTPATHS", "NVIDIA_CLARA_WORKSPACE",
        *(["CUDA_VISIBLE_DEVICES"] if "CUDA_VISIBLE_DEVICES" in os.environ else [])}


def test_container_paths_are_rewritten_as_path_prefixes(tmp_path: Path) -> None:
    app_in, lung = tmp_path / "in", tmp_path / "lung"
    app_in.mkdir()
    lung.mkdir()
    args = ["/app/in", "/app/in/", "/app/in/lung/a.nii", "--out=/app/out/${{JOB_ID}}",
            "x:/app/in,'/app/out'", "/app/inx", "/other/app/in", "app/in", "/app", "/input"]
    op = CommandOperator(
        "args", command=["/bin/sh", "-c", 'printf "%s\\n" "$@" > args.txt', "sh", *args],
        inputs=[("a", "/app/in/"), ("lung", "/app/in/lung")], outputs=[("out", "/app/out/")])
    ws = tmp_path / "ws"
    with Runtime(workers=0) as rt:
        job = rt.submit(one_op(op), {"args.a": app_in, "args.lung": lung}, workspace=ws)
        job.result(timeout=30)
    out = ws / "args" / "out"
    assert (ws / "args" / "args.txt").read_text().splitlines() == [
        f"{app_in}", f"{app_in}/", f"{lung}/a.nii", f"--out={out}/{job.id}",
        f"x:{app_in},'{out}'", "/app/inx", "/other/app/in", "app/in", "/app", "/input"]


def test_folder_with_spaces_is_refused_in_a_shell_script_only(tmp_path: Path) -> None:
    ws = tmp_path / "my workspace"
    script = CommandOperator("script", command=["/bin/sh", "-c", "touch /out/x"], inputs=[],
                             outputs=[("out", "/out")])
    direct = CommandOperator("direct", command=["touch", "/out/x"], inputs=[],
                             outputs=[("out", "/out")])
    with Runtime(workers=0) as rt:
        with pytest.raises(OperatorError, match=r"pastes folders into a shell script, but "
                           r".*my workspace/script/out holds spaces"):
            rt.submit(one_op(script), {}, workspace=ws).result(timeout=30)
        rt.submit(one_op(direct), {}, workspace=ws).result(timeout=30)
    assert (ws / "direct" / "out" / "x").exists()


def test_failing_command_fails_the_job_with_status_and_stderr_tail(tmp_path: Path) -> None:
    script = "echo to-stdout; for i in $(seq 1 40); do echo line $i >&2; done; exit 7"
    op = CommandOperator("boom", command=["/bin/sh", "-c", script], inputs=[], outputs=[],
                         source="bad.yaml:12")
    with Runtime(workers=2) as rt:
        job = rt.submit(one_op(op), {}, workspace=tmp_path)
        with pytest.raises(OperatorError, match=r"command of operator 'boom' exited with "
                           r"status 7 \(bad\.yaml:12\): /bin/sh -c ") as info:
            job.result(timeout=30)
    assert info.value.operator == "boom"
    tail = str(info.value).split("last lines of stderr:\n", 1)[1]
    assert tail == "\n".join(f"line {i}" for i in range(21, 41))
    assert (tmp_path / "boom" / "stdout.log").read_text() == "to-stdout\n"
    assert job.state is JobState.FAILED


def test_cancel_kills_the_running_command(tmp_path: Path) -> None:
    script = "sleep 30 & echo $! > sleep.pid; wait"
    op = CommandOperator("slow", command=["/bin/sh", "-c", script], inputs=[], outputs=[])
    with Runtime(workers=2) as rt:
        job = rt.submit(one_op(op), {}, workspace=tmp_path)
        pid_file = tmp_path / "slow" / "sleep.pid"
        sleep_pid = wait_for_pid(pid_file)
        cancelled_at = time.monotonic()
        assert job.cancel()
        assert job.wait(10)
        assert time.monotonic() - cancelled_at < 3.0
    assert job.state is JobState.CANCELLED
    with pytest.raises(JobCancelledError):
        job.result()
    assert wait_until_gone(sleep_pid), f"sleep (pid {sleep_pid}) outlived the cancelled job"


def test_timeout_kills_the_command(tmp_path: Path) -> None:
    op = CommandOperator("slow", command=["sleep", "30"], inputs=[], outputs=[], timeout=0.3,
                         source="slow.yaml:4")
    started = time.monotonic()
    with Runtime(workers=2) as rt, pytest.raises(
            OperatorError, match=r"TimeoutError: command of operator 'slow' ran past its "
            r"timeout of 0\.3 s and was killed \(slow\.yaml:4\)"):
        rt.submit(one_op(op), {}, workspace=tmp_path).result(timeout=30)
    assert time.monotonic() - started < 3.0


def test_missing_executable_is_named(tmp_path: Path) -> None:
    op = CommandOperator("ghost", command=["no-such-tool-clara-rt", "-i", "/input"],
                         inputs=[("input", "/input")], outputs=[])
    with Runtime(workers=2) as rt, pytest.raises(
            OperatorError, match=r"executable 'no-such-tool-clara-rt' not found; give an "
            r"absolute path or put its folder on PATH \(PATH="):
        rt.submit(one_op(op), {"ghost.input": GENOMICS_INPUT}, workspace=tmp_path).result(30)


def test_job_without_workspace_is_refused(tmp_path: Path) -> None:
    op = CommandOperator("nows", command=["true"], inputs=[], outputs=[])
    with Runtime(workers=0) as rt, pytest.raises(
            OperatorError, match=r"needs a job workspace.*Runtime\.submit\(\.\.\., "
            r"workspace=DIR\).*clara-rt run --output"):
        rt.submit(one_op(op), {}).result(timeout=30)


def test_output_folder_with_old_results_is_refused(tmp_path: Path) -> None:
    (tmp_path / "op" / "out").mkdir(parents=True)
    (tmp_path / "op" / "out" / "old.txt").write_text("previous run")
    op = CommandOperator("op", command=["true"], inputs=[], outputs=[("out", "/out")])
    with Runtime(workers=0) as rt, pytest.raises(OperatorError, match=r"is not empty"):
        rt.submit(one_op(op), {}, workspace=tmp_path).result(timeout=30)


@pytest.mark.parametrize(("inputs", "outputs", "match"), [
    ([("a", "input")], [], r"container path must be an absolute folder below /, got 'input'"),
    ([("a", "/")], [], r"got '/'"),
    ([("a", "/data/")], [("b", "/data")], r"declares container path /data more than once"),
])
def test_bad_container_paths(inputs: list[tuple[str, str]], outputs: list[tuple[str, str]],
                             match: str) -> None:
    with pytest.raises(PipelineError, match=match):
        CommandOperator("bad", command=["true"], inputs=inputs, outputs=outputs)


def test_command_must_be_a_list() -> None:
    with pytest.raises(PipelineError, match=r"command must be a non-empty list"):
        CommandOperator("bad", command="echo hi", inputs=[], outputs=[])


def wait_for_pid(path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def wait_until_gone(pid: int, timeout: float = 3.0) -> bool:
    """Whether ``pid`` is gone (or a zombie waiting for init) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


# --- issue 16: values are data, names are one path component, logs keep their tail -----------


def run_cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**checkout_env(), **(env or {})})


def yaml_command(tmp_path: Path, script: str, name: str = "cmd") -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"""\
api-version: 0.4.0
name: values
operators:
- name: {json.dumps(name)}
  container:
    image: none
    command: ["/bin/sh", "-c", {json.dumps(script)}]
  input:
  - path: /input
  output:
  - path: /output
""")
    return path


def test_issue_16_3_run_passes_var_values_as_data(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    pipeline = yaml_command(tmp_path, "sleep ${{SECS}} && echo ok > /output/ok.txt")
    proc = run_cli("run", pipeline, "--input", GENOMICS_INPUT, "--output", tmp_path / "out",
                   "--var", f"SECS=0; id > {marker}")
    assert proc.returncode != 0
    assert not marker.exists(), "a --var value ran as shell text"
    proc = run_cli("run", pipeline, "--input", GENOMICS_INPUT, "--output", tmp_path / "fine",
                   "--var", "SECS=0")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fine" / "cmd" / "output" / "ok.txt").read_text() == "ok\n"


def test_issue_16_3_values_in_argv_and_in_quotes(tmp_path: Path) -> None:
    hostile = "a b'c\"d $(id) `id` ; *"
    op = CommandOperator(
        "echoer", command=["/bin/sh", "-c",
                           "printf '%s|' ${{V}} \"x${{V}}y\" '${{V}}' > /out/v.txt; "
                           "printf '%s' \"$1\" > /out/argv.txt", "sh", "${{V}}"],
        inputs=[], outputs=[("out", "/out")], values={"V": hostile})
    with Runtime(workers=0) as rt:
        rt.submit(one_op(op), {}, workspace=tmp_path / "ws").result(timeout=30)
    out = tmp_path / "ws" / "echoer" / "out"
    assert (out / "v.txt").read_text() == f"{hostile}|x{hostile}y|{hostile}|"
    assert (out / "argv.txt").read_text() == hostile


@pytest.mark.parametrize("bad", ["/tmp/x/absop", "../up", "a\\\\b", "..", "tab\\there"])
def test_issue_16_4_run_and_validate_refuse_unsafe_names_at_their_line(tmp_path: Path,
                                                                       bad: str) -> None:
    pipeline = yaml_command(tmp_path, "true", name=json.loads(f'"{bad}"'))
    for verb in (["validate", pipeline],
                 ["run", pipeline, "--input", GENOMICS_INPUT, "--output", tmp_path / "o"]):
        proc = run_cli(*verb)
        assert proc.returncode != 0
        assert f"{pipeline}:4:" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists() and not Path("/tmp/x/absop.log").exists()


def test_issue_16_4_pipeline_add_refuses_unsafe_names() -> None:
    for bad in ("/tmp/x/absop", "a\\b", "nul\x00", "x" * 200):
        with pytest.raises(PipelineError, match="names become file and folder names"):
            Pipeline("p").add(CommandOperator(bad, command=["true"], inputs=[], outputs=[]))
    with pytest.raises(PipelineError, match="without dots"):  # the constructor refuses these
        CommandOperator("..", command=["true"], inputs=[], outputs=[])


def test_issue_16_17_stdout_far_over_the_limit_keeps_its_tail(tmp_path: Path) -> None:
    op = CommandOperator(
        "chatty", command=["/bin/sh", "-c", "yes 0123456789 | head -c 3000000; echo; echo END"],
        inputs=[], outputs=[("out", "/out")], log_limit=64 * 1024)
    with Runtime(workers=0) as rt:
        rt.submit(one_op(op), {}, workspace=tmp_path / "ws").result(timeout=60)
    log = (tmp_path / "ws" / "chatty" / "stdout.log").read_bytes()
    assert len(log) <= 64 * 1024 + 200
    assert log.startswith(b"[clara-rt: ") and b"earlier bytes of this log were cut" in log
    assert log.endswith(b"\nEND\n")



def test_issue_16_3_job_values_in_interpreter_code_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"pasted into the code of `python3 -c`.*CLARA_VAR_S"):
        CommandOperator("py", command=["python3", "-c", "import time; time.sleep(${{S}})"],
                        inputs=[], outputs=[("out", "/out")], values={"S": "0)#"})
    pipeline = yaml_command(tmp_path, "unused")
    pipeline.write_text(pipeline.read_text().replace(
        '["/bin/sh", "-c", "unused"]', '["python3", "-c", "print(${{S}})"]'))
    proc = run_cli("run", pipeline, "--input", GENOMICS_INPUT, "--output", tmp_path / "o",
                   "--var", "S=__import__('os').system('id')")
    assert proc.returncode == 2 and "pasted into the code of `python3 -c`" in proc.stderr, (
        proc.stderr)
    # As an argument after the code it is plain data.
    op = CommandOperator("py", command=["python3", "-c", "import sys; open('/out/v', 'w')"
                                        ".write(sys.argv[1])", "${{S}}"],
                         inputs=[], outputs=[("out", "/out")], values={"S": "0)#; id"})
    with Runtime(workers=0) as rt:
        rt.submit(one_op(op), {}, workspace=tmp_path / "ws").result(timeout=30)
    assert (tmp_path / "ws" / "py" / "out" / "v").read_text() == "0)#; id"
