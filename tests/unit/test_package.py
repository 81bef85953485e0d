"""``clara-rt package`` without the network: targets, what a pipeline needs, the manifest and its
check, the rendered units and configuration, and the CLI's errors.

pip is replaced by fakes that write small wheels (``wheels.build_clara_rt_wheel`` and
``wheels.download``), so a whole bundle is written here in well under a second; the real pip
runs in ``tests/e2e/test_edge_bundle.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from clara_rt.bench import checkout_env
from clara_rt.dicom.config import parse_config
from clara_rt.errors import DefinitionError, PackageError
from clara_rt.package import BundleSpec, build_bundle, check_bundle
from clara_rt.package import wheels as wheels_module
from clara_rt.package.builder import ae_title_for
from clara_rt.package.needs import inspect_pipeline
from clara_rt.package.platforms import Target, parse_platform
from clara_rt.package.wheels import WheelName, check_wheel, needed_glibc

ROOT = Path(__file__).resolve().parents[2]
CT_LUNG_SEG = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"
CHESTXRAY = ROOT / "examples" / "chestxray-classify" / "pipeline.yaml"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
CP = f"cp{sys.version_info[0]}{sys.version_info[1]}"

CUSTOM = """\
api-version: 0.5.0
name: edge-custom
operators:
- name: copy
  clara-rt:
    operator: "edge_site_ops.ops:CopyFolderOp"
  input:
  - path: /input
  output:
  - path: /output
"""
CUSTOM_OPS = """\
from clara_rt import Operator


class CopyFolderOp(Operator):
    def setup(self, spec):
        spec.input("input", kind="path")
        spec.output("output", kind="path")

    def compute(self, inputs, outputs, context):
        outputs["output"] = inputs["input"]
"""
TRITON = """\
api-version: 0.5.0
name: liver
operators:
- name: seg
  clara-rt:
    operator: "clara_rt.operators.inference:InferenceOp"
    args: {model: liver}
  models:
  - name: liver
  input:
  - path: /input
  output:
  - path: /output
"""


# --- targets ----------------------------------------------------------------------------------


def test_platforms_name_the_glibc_and_list_every_tag_pip_needs() -> None:
    arm = parse_platform("manylinux_2_31_aarch64", "3.12")
    assert (arm.arch, arm.glibc, arm.python_tag, arm.platform_tag) == (
        "aarch64", (2, 31), "cp312", "manylinux_2_31_aarch64")
    tags = arm.pip_platforms()
    assert tags[0] == "manylinux_2_31_aarch64" and tags[14] == "manylinux_2_17_aarch64"
    assert tags[15:] == ["manylinux2014_aarch64", "linux_aarch64"]
    assert parse_platform("manylinux2014_x86_64").glibc == (2, 17)
    host = parse_platform(None)
    assert host.is_host and host.python_version == PY
    foreign = "aarch64" if host.arch == "x86_64" else "x86_64"
    assert parse_platform(f"manylinux_{foreign}").glibc == (2, 28)
    assert parse_platform(f"manylinux_{host.arch}").glibc == host.glibc


@pytest.mark.parametrize(("platform", "python", "message"), [
    ("win_amd64", None, r"unknown platform 'win_amd64': expected manylinux_x86_64"),
    ("manylinux_2_12_x86_64", None, r"glibc 2\.12 is older than 2\.17"),
    ("manylinux_x86_64", "3.9", r"--python expects a version like 3\.11 .*got '3\.9'"),
    ("manylinux_x86_64", "three", r"got 'three'"),
])
def test_bad_platforms_are_refused(platform: str, python: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_platform(platform, python)


def test_wheel_names_and_the_glibc_they_need(tmp_path: Path) -> None:
    name = WheelName.parse("pyyaml-6.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64"
                           ".whl")
    assert (name.name, name.version, name.python, name.portable) == (
        "pyyaml", "6.0.4", ("cp311",), True)
    assert not WheelName.parse("clara_rt-0.1.0-cp311-cp311-linux_x86_64.whl").portable
    with pytest.raises(PackageError, match=r"^notes\.txt is not a wheel file name"):
        WheelName.parse("notes.txt")
    found = _fake_wheels(tmp_path, "x86_64", glibc_symbol="2.31")
    assert needed_glibc(found) == (2, 31)  # the linked symbols of the built clara-rt wheel
    newer = tmp_path / "numpy-2.0-cp311-cp311-manylinux_2_34_x86_64.manylinux_2_35_x86_64.whl"
    newer.write_bytes(b"")
    assert needed_glibc([*found, newer]) == (2, 34)  # the oldest tag of each wheel counts


def test_a_given_clara_rt_wheel_must_fit_the_target(tmp_path: Path) -> None:
    target = Target("aarch64", (2, 28), (3, 11))
    wheel = tmp_path / "clara_rt-0.1.0-cp312-cp312-linux_aarch64.whl"
    wheel.write_bytes(b"")
    with pytest.raises(PackageError, match=r"built for cp312, the bundle is for Python 3\.11"):
        check_wheel(wheel, target)
    other = tmp_path / "clara_rt-0.1.0-cp311-cp311-linux_x86_64.whl"
    other.write_bytes(b"")
    with pytest.raises(PackageError, match=r"built for linux_x86_64, the bundle is for aarch64"):
        check_wheel(other, target)
    with pytest.raises(PackageError, match=r"cannot be cross-compiled.*--clara-rt-wheel PATH"):
        wheels_module.buildable_source(target)
    assert check_wheel(wheel.rename(tmp_path / "clara_rt-0.1.0-cp311-cp311-linux_aarch64.whl"),
                       target).version == "0.1.0"


# --- what a pipeline needs ----------------------------------------------------------------------


def test_extras_follow_the_pipeline() -> None:
    assert inspect_pipeline(CT_LUNG_SEG).extras == ("dicom-net", "server")
    with_models = inspect_pipeline(CT_LUNG_SEG, models=ROOT, gpu=True, extra=["dicom"])
    assert with_models.extras == ("dicom", "dicom-net", "gpu", "onnx", "server")
    assert with_models.reasons["onnx"] == "--models"
    classify = inspect_pipeline(CHESTXRAY)
    assert classify.extras == ("dicom-net", "onnx", "server")
    assert classify.reasons["onnx"].startswith("operator 'classifier' (")
    with pytest.raises(ValueError, match=r"^unknown extra test: choose from onnx, triton, gpu"):
        inspect_pipeline(CT_LUNG_SEG, extra=["test"])


def test_models_on_triton_need_the_triton_extra(tmp_path: Path) -> None:
    path = tmp_path / "liver.yaml"
    path.write_text(TRITON)
    needs = inspect_pipeline(path)
    assert needs.extras == ("dicom-net", "server", "triton")
    assert needs.reasons["triton"] == f"operator 'seg' ({path}:4:3)"


def test_custom_operators_are_found_next_to_the_pipeline(custom: Path) -> None:
    needs = inspect_pipeline(custom)
    assert needs.sources == ((custom.parent / "edge_site_ops").resolve(),)
    assert needs.requirements == ()


def test_a_missing_custom_operator_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(CUSTOM.replace("edge_site_ops.ops", "no_such_site.ops"))
    with pytest.raises(DefinitionError, match=re.escape(f"{path}:6:5: operator 'copy': cannot "
                                                        "find module 'no_such_site'")):
        inspect_pipeline(path)


# --- bundles (pip faked) ------------------------------------------------------------------------


def test_bundle_layout_manifest_and_templates(tmp_path: Path, fake_pip: list[list[str]],
                                              custom: Path) -> None:
    models = tmp_path / "models"
    (models / "seg").mkdir(parents=True)
    (models / "seg" / "model.onnx").write_bytes(b"onnx")
    bundle = build_bundle(BundleSpec(pipeline=custom, output=tmp_path / "out" / "edge",
                                     models=models, port=8123, workers=3,
                                     memory_budget="2G", services={"triton": "http://t:8000"}))
    folder = bundle.folder
    assert bundle.archive == folder.with_name("edge.tar.gz")
    assert fake_pip == [["dicom-net", "onnx", "server"]]
    files = set(bundle.manifest["files"])
    assert {"install.sh", "register.sh", "README.txt", "SHA256SUMS", "config/server.env",
            "config/adapter.yaml", "systemd/clara-rt.service", "systemd/clara-rt-dicom.service",
            "pipeline/pipeline.yaml", "pipeline/operators/edge_site_ops/__init__.py",
            "pipeline/operators/edge_site_ops/ops.py", "pipeline/models/seg/model.onnx",
            f"wheelhouse/clara_rt-0.1.0-{CP}-{CP}-linux_{_arch()}.whl"} <= files
    assert not any("__pycache__" in f for f in files)
    manifest = json.loads((folder / "bundle.json").read_text())
    assert {k: manifest[k] for k in ("clara-rt", "python", "glibc", "pipeline", "extras",
                                     "requirement", "operators", "wheels")} == {
        "clara-rt": "0.1.0", "python": PY, "glibc": "2.31", "pipeline": "edge-custom",
        "extras": ["dicom-net", "onnx", "server"],
        "requirement": "clara-rt[dicom-net,onnx,server]==0.1.0",
        "operators": ["pipeline/operators/edge_site_ops"], "wheels": 4}
    assert manifest["platform"] == f"manylinux_2_31_{_arch()}"
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(files) - 1 and all(re.fullmatch(r"[0-9a-f]{64}  \S+", s)
                                               for s in sums)
    env = (folder / "config" / "server.env").read_text()
    for line in ("CLARA_RT_PORT=8123", "CLARA_RT_WORKERS=3", "CLARA_RT_TOKEN=",
                 "CLARA_RT_SERVE_ARGS=--memory-budget 2G --service triton=http://t:8000",
                 "PYTHONPATH=@BUNDLE@/pipeline/operators", "CLARA_RT_DATA=@PREFIX@/var/data"):
        assert f"\n{line}\n" in env
    assert "{{" not in (folder / "install.sh").read_text()
    assert (folder / "install.sh").stat().st_mode & 0o111
    assert check_bundle(folder).ok and check_bundle(bundle.archive).ok


def test_units_have_restart_stop_and_hardening(tmp_path: Path, fake_pip: list[list[str]]) -> None:
    folder = build_bundle(BundleSpec(pipeline=CT_LUNG_SEG, output=tmp_path / "b",
                                     shutdown_grace=45)).folder
    server = _unit(folder / "systemd" / "clara-rt.service")
    assert server["ExecStart"][0].startswith("@PREFIX@/venv/bin/clara-rt serve --data "
                                             "${CLARA_RT_DATA} ")
    assert server["ExecStartPost"] == ["/bin/sh @BUNDLE@/register.sh @PREFIX@/venv "
                                       "http://127.0.0.1:${CLARA_RT_PORT}"]
    assert {k: server[k][0] for k in ("Restart", "RestartSec", "KillSignal", "TimeoutStopSec",
                                      "NoNewPrivileges", "ProtectSystem", "ReadWritePaths",
                                      "PrivateTmp", "PrivateDevices", "EnvironmentFile")} == {
        "Restart": "on-failure", "RestartSec": "5", "KillSignal": "SIGTERM",
        "TimeoutStopSec": "75", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ReadWritePaths": "@PREFIX@/var", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "EnvironmentFile": "@PREFIX@/etc/server.env"}
    assert "MemoryDenyWriteExecute" not in server  # numba JIT-compiles
    dicom = _unit(folder / "systemd" / "clara-rt-dicom.service")
    assert dicom["ExecStart"] == ["@PREFIX@/venv/bin/clara-rt dicom --config "
                                  "@PREFIX@/etc/adapter.yaml --server "
                                  "http://127.0.0.1:${CLARA_RT_PORT}"]
    assert (dicom["After"], dicom["Requires"], dicom["Restart"]) == (
        ["clara-rt.service"], ["clara-rt.service"], ["on-failure"])
    assert "CLARA_RT_SHUTDOWN_GRACE=45\n" in (folder / "config" / "server.env").read_text()


def test_generated_adapter_maps_an_ae_title_to_the_pipeline(
        tmp_path: Path, fake_pip: list[list[str]]) -> None:
    folder = build_bundle(BundleSpec(pipeline=CT_LUNG_SEG, output=tmp_path / "b")).folder
    text = (folder / "config" / "adapter.yaml").read_text().replace("@PREFIX@", str(tmp_path))
    etc = tmp_path / "etc"
    config = parse_config(text, "adapter.yaml", base=etc)
    [ae] = config.ae_titles
    assert (ae.name, ae.pipelines, ae.destinations) == ("CT-LUNG-SEG", ("ct-lung-seg",), ())
    assert config.dicom.storage == tmp_path / "var" / "dicom"
    assert config.dicom.host == "0.0.0.0" and config.dicom.port == 11112
    # The commented destination works once uncommented, as the user is told to do.
    head, mark, tail = text.partition("# destinations:")
    filled = (head.replace("destinations: []", "destinations: [PACS]")
              + re.sub(r"(?m)^# ?", "", mark + tail))
    assert [d.name for d in parse_config(filled, "adapter.yaml", base=etc).destinations] == [
        "PACS"]
    assert ae_title_for("ct-lung-seg") == "CT-LUNG-SEG"
    assert ae_title_for("a very long pipeline name") == "AVERYLONGPIPELIN"
    assert ae_title_for("--") == "CLARA-RT"


def test_a_given_adapter_configuration_is_shipped_with_warnings(
        tmp_path: Path, fake_pip: list[list[str]]) -> None:
    given = ROOT / "examples" / "dicom-adapter" / "adapter.yaml"
    bundle = build_bundle(BundleSpec(pipeline=CT_LUNG_SEG, output=tmp_path / "b",
                                     adapter=given))
    assert (bundle.folder / "config" / "adapter.yaml").read_text() == given.read_text()
    [storage] = bundle.warnings
    assert storage.startswith(f"{given}: storage ") and "set 'storage: ../var/dicom'" in storage
    other = tmp_path / "other.yaml"
    other.write_text(given.read_text().replace("[ct-lung-seg]", "[liver]")
                     .replace("storage: dicom-adapter", "storage: ../var/dicom"))
    bundle = build_bundle(BundleSpec(pipeline=CT_LUNG_SEG, output=tmp_path / "c",
                                     adapter=other))
    assert bundle.warnings == (f"{other}: no AE title runs pipeline 'ct-lung-seg'",)


def test_scripts_are_posix_sh(tmp_path: Path, fake_pip: list[list[str]]) -> None:
    folder = build_bundle(BundleSpec(pipeline=CT_LUNG_SEG, output=tmp_path / "b")).folder
    for script in ("install.sh", "register.sh"):
        text = (folder / script).read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -eu\n" in text
        for shell in ("sh", "dash", "bash"):
            if shutil.which(shell):
                proc = subprocess.run([shell, "-n", str(folder / script)], capture_output=True,
                                      text=True, check=False)
                assert proc.returncode == 0, f"{shell}: {proc.stderr}"
    proc = subprocess.run(["sh", str(folder / "install.sh"), "--bogus"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 1
    assert "install.sh: error: unknown argument '--bogus'" in proc.stderr


def test_check_lists_every_problem(tmp_path: Path, fake_pip: list[list[str]]) -> None:
    bundle = build_bundle(BundleSpec(pipeline=CT_LUNG_SEG, output=tmp_path / "b"))
    folder = bundle.folder
    for made_by_install in ("venv/bin/python", "etc/server.env", "var/data/clara-rt.db"):
        (folder / made_by_install).parent.mkdir(parents=True, exist_ok=True)
        (folder / made_by_install).write_text("installed")
    assert check_bundle(folder).ok
    (folder / "pipeline" / "pipeline.yaml").write_text("changed")
    (folder / "config" / "server.env").unlink()
    (folder / "wheelhouse" / "extra.whl").write_bytes(b"")
    result = check_bundle(folder)
    assert result.problems == (
        "missing: config/server.env",
        f"changed: pipeline/pipeline.yaml (size 7 instead of {CT_LUNG_SEG.stat().st_size})",
        "extra: wheelhouse/extra.whl")
    with tarfile.open(bundle.archive) as tar:
        assert tar.getnames()[0] == "b/bundle.json"
        assert {m.uid for m in tar.getmembers()} == {0}
    assert check_bundle(tmp_path / "nope").problems == (f"no such bundle: {tmp_path / 'nope'}",)


def test_an_existing_output_is_kept_unless_forced(tmp_path: Path,
                                                  fake_pip: list[list[str]]) -> None:
    spec = BundleSpec(pipeline=CT_LUNG_SEG, output=tmp_path / "b")
    build_bundle(spec)
    with pytest.raises(PackageError, match=r"b already exists: remove it or pass --force$"):
        build_bundle(spec)
    again = build_bundle(BundleSpec(pipeline=CT_LUNG_SEG, output=tmp_path / "b", force=True))
    assert check_bundle(again.folder).ok
    assert {p.name for p in tmp_path.iterdir()} == {"b", "b.tar.gz"}


def test_a_failed_download_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          fake_pip: list[list[str]]) -> None:
    def broken(*_args: object) -> list[Path]:
        raise PackageError("downloading the wheels failed: pip exited with status 1")

    monkeypatch.setattr(wheels_module, "download", broken)
    with pytest.raises(PackageError, match="pip exited with status 1"):
        build_bundle(BundleSpec(pipeline=CT_LUNG_SEG, output=tmp_path / "b"))
    assert list(tmp_path.iterdir()) == []


# --- the command line ---------------------------------------------------------------------------


def test_cli_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("api-version: 0.5.0\nname: bad\noperators:\n- name: a\n  clara-rt: "
                   "{operator: 'nowhere_at_all:Op'}\n")
    proc = _clara("package", str(bad), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"clara-rt: error: {bad}:5:13: operator 'a': cannot find "
                                  "module 'nowhere_at_all'")
    foreign = "aarch64" if _arch() == "x86_64" else "x86_64"
    proc = _clara("package", str(CT_LUNG_SEG), "-o", str(tmp_path / "out"), "--platform",
                  f"manylinux_{foreign}")
    assert proc.returncode == 1
    assert "cannot be cross-compiled" in proc.stderr and "--clara-rt-wheel PATH" in proc.stderr
    proc = _clara("package", "--check", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr == (f"clara-rt: error: {tmp_path}: 1 problem(s):\n  bundle.json is "
                           "missing or unreadable: not a clara-rt bundle\n")
    proc = _clara("package", str(CT_LUNG_SEG))
    assert proc.returncode == 2 and "package needs PIPELINE.yaml and -o DIR" in proc.stderr
    assert not (tmp_path / "out").exists()


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def custom(tmp_path: Path) -> Iterator[Path]:
    site = tmp_path / "pipeline-src"
    (site / "edge_site_ops" / "__pycache__").mkdir(parents=True)
    (site / "edge_site_ops" / "__init__.py").write_text("")
    (site / "edge_site_ops" / "ops.py").write_text(CUSTOM_OPS)
    (site / "edge_site_ops" / "__pycache__" / "ops.cpython-311.pyc").write_bytes(b"")
    path = site / "pipeline.yaml"
    path.write_text(CUSTOM)
    yield path
    for name in [m for m in sys.modules if m.split(".")[0] == "edge_site_ops"]:
        del sys.modules[name]


@pytest.fixture
def fake_pip(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace the wheel build and pip download; returns the extras each download asked for."""
    calls: list[list[str]] = []

    def build(root: Path, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        return _fake_wheels(dest, _arch(), glibc_symbol="2.31")[0]

    def download(wheel: Path, extras: Sequence[str], requirements: Sequence[str],
                 target: Target, dest: Path) -> list[Path]:
        calls.append(list(extras))
        (dest / "numpy-2.0-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"numpy")
        (dest / "pyyaml-6.0-py3-none-any.whl").write_bytes(b"yaml")
        return sorted(dest.glob("*.whl"))

    monkeypatch.setattr(wheels_module, "build_clara_rt_wheel", build)
    monkeypatch.setattr(wheels_module, "download", download)
    return calls


def _fake_wheels(folder: Path, arch: str, glibc_symbol: str) -> list[Path]:
    wheel = folder / f"clara_rt-0.1.0-{CP}-{CP}-linux_{arch}.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("clara_rt/_core.so", f"\0GLIBC_2.14\0GLIBC_{glibc_symbol}\0".encode())
    pure = folder / "pydicom-3.0-py3-none-any.whl"
    pure.write_bytes(b"")
    return [wheel, pure]


def _unit(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def _arch() -> str:
    import platform

    return platform.machine()


def _clara(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *args], capture_output=True,
                          text=True, timeout=120, env=checkout_env(), check=False)
