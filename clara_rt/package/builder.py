"""Write an offline bundle: one folder (and its ``.tar.gz``) that installs and runs a pipeline.

:func:`build_bundle` does, in order: resolve the target (:mod:`.platforms`); read and check the
pipeline and decide the extras (:mod:`.needs`); build or take the clara-rt wheel and download
every dependency for the target (:mod:`.wheels`); copy the pipeline, its custom operators and
models; render the configuration, systemd units and scripts from ``templates/``; hash everything
(:mod:`.manifest`); pack the archive. It works in a hidden folder beside the output and renames
it at the end, so a failure leaves nothing half-written.

Templates hold two kinds of placeholders: ``{{NAME}}`` is filled here (pipeline, versions,
ports), ``@PREFIX@``, ``@BUNDLE@`` and ``@USER@`` by ``install.sh`` on the target, where the
install folder is known.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from clara_rt.errors import PackageError
from clara_rt.package import wheels
from clara_rt.package.manifest import write_manifest
from clara_rt.package.needs import PipelineNeeds, inspect_pipeline
from clara_rt.package.platforms import Target, parse_platform

__all__ = ["Bundle", "BundleSpec", "ae_title_for", "build_bundle"]

Progress = Callable[[str], None]
_MB = 1 << 20
_DEFINITION = "pipeline/pipeline.yaml"
_SCRIPTS = ("install.sh", "register.sh")
_UNITS = ("clara-rt.service", "clara-rt-dicom.service")


@dataclass(frozen=True)
class BundleSpec:
    """What ``clara-rt package`` was asked for (its flags, one to one).

    Attributes:
        pipeline: The pipeline YAML.
        output: The bundle folder to write; the archive is ``<output>.tar.gz`` beside it.
        models: A folder copied to ``pipeline/models/`` (adds the ``onnx`` extra).
        platform: ``manylinux_x86_64``, ``manylinux_aarch64`` or ``manylinux_2_<minor>_<arch>``
            (default: this machine).
        python: ``3.11`` (default: this interpreter's version).
        adapter: A DICOM adapter configuration to ship instead of the generated one.
        gpu: Add the ``gpu`` extra (CuPy, NVML) and let the server see the GPU devices.
        extras: More clara-rt extras (``onnx``, ``triton``, ``gpu``, ``dicom``).
        clara_rt_wheel: A clara-rt wheel built for the target (required for another target).
        port: HTTP port written to ``server.env``.
        dicom_port: DICOM port of the generated adapter configuration.
        workers: ``--workers`` of the server.
        max_running: ``--max-running`` of the server.
        shutdown_grace: ``--shutdown-grace`` of the server (the unit's stop timeout follows).
        memory_budget: ``--memory-budget`` of the server (``None``: its default).
        services: ``--service NAME=URL`` of the server.
        force: Replace an existing output folder and archive.
    """

    pipeline: Path
    output: Path
    models: Path | None = None
    platform: str | None = None
    python: str | None = None
    adapter: Path | None = None
    gpu: bool = False
    extras: tuple[str, ...] = ()
    clara_rt_wheel: Path | None = None
    port: int = 8000
    dicom_port: int = 11112
    workers: int = 2
    max_running: int = 2
    shutdown_grace: float = 30.0
    memory_budget: str | None = None
    services: Mapping[str, str] = field(default_factory=dict)
    force: bool = False


@dataclass(frozen=True)
class Bundle:
    """A bundle :func:`build_bundle` wrote.

    Attributes:
        folder: The bundle folder.
        archive: ``<folder>.tar.gz``.
        manifest: ``bundle.json`` as written.
        size: Bytes of the folder's files.
        archive_size: Bytes of the archive.
        warnings: Things the user should know (command operators, GPU requests...).
        timings: Seconds per step (``wheel``, ``download``, ``archive``, ``total``).
    """

    folder: Path
    archive: Path
    manifest: dict[str, Any]
    size: int
    archive_size: int
    warnings: tuple[str, ...]
    timings: dict[str, float]


def build_bundle(spec: BundleSpec, progress: Progress | None = None) -> Bundle:
    """Write the bundle ``spec`` describes; report the long steps to ``progress``.

    Raises:
        DefinitionError: The pipeline (or ``--adapter`` configuration) is invalid, with
            ``path:line:column``.
        PackageError: A wheel cannot be built or downloaded, a ``--clara-rt-wheel`` for
            another target, or the output is in the way.
        ValueError: A bad ``--platform``, ``--python``, extra or service.
    """
    say = progress or (lambda _message: None)
    started = time.monotonic()
    target = parse_platform(spec.platform, spec.python)
    source = None
    if spec.clara_rt_wheel is None:
        source = wheels.buildable_source(target)  # fails at once for another target
    else:
        wheels.check_wheel(spec.clara_rt_wheel, target)
    folder, archive = _outputs(spec)
    needs = inspect_pipeline(spec.pipeline, models=spec.models, gpu=spec.gpu, extra=spec.extras)
    warnings = [*needs.warnings, *_check_inputs(spec, needs)]
    say(f"package {needs.definition.name} for {target.arch}, Python {target.python_version}, "
        f"glibc {target.glibc[0]}.{target.glibc[1]} or older; extras "
        f"{', '.join(needs.extras)}")
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp makes it private
    try:
        timings, manifest = _fill(staging, spec, needs, target, source, say)
        if spec.force:
            _remove(folder, archive)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    mark = time.monotonic()
    say(f"packing {archive.name}")
    _pack(folder, archive)
    timings["archive"] = time.monotonic() - mark
    timings["total"] = time.monotonic() - started
    size = sum(int(entry["size"]) for entry in manifest["files"].values())
    return Bundle(folder=folder, archive=archive, manifest=manifest, size=size,
                  archive_size=archive.stat().st_size, warnings=tuple(warnings), timings=timings)


def ae_title_for(pipeline: str) -> str:
    """The called AE title of a generated adapter configuration: the pipeline's name in
    capitals, letters, digits, ``-`` and ``_`` only, at most 16 characters."""
    title = re.sub(r"[^A-Z0-9_-]", "", pipeline.upper()).strip("-")[:16]
    return title or "CLARA-RT"


# --- steps ----------------------------------------------------------------------------------


def _outputs(spec: BundleSpec) -> tuple[Path, Path]:
    folder = spec.output.expanduser().resolve()
    archive = folder.with_name(folder.name + ".tar.gz")
    for path in (folder, archive):
        if path.exists() and not spec.force and (path.is_file() or any(path.iterdir())):
            raise PackageError(f"{path} already exists: remove it or pass --force")
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder, archive


def _check_inputs(spec: BundleSpec, needs: PipelineNeeds) -> list[str]:
    notes = []
    if spec.models is not None and not spec.models.is_dir():
        raise PackageError(f"--models {spec.models}: no such folder")
    bad = [f"{k}={v}" for k, v in spec.services.items() if not k or re.search(r"\s", k + v)]
    if bad:
        raise ValueError(f"--service NAME=URL without spaces, got {', '.join(bad)}")
    if spec.memory_budget is not None and re.search(r"\s", spec.memory_budget):
        raise ValueError(f"--memory-budget {spec.memory_budget!r}: no spaces")
    if "triton" in needs.extras and "triton" not in spec.services:
        notes.append(f"the pipeline uses Triton ({needs.reasons['triton']}): set "
                     "--service triton=URL in CLARA_RT_SERVE_ARGS of etc/server.env")
    if spec.adapter is not None:
        notes += _check_adapter(spec.adapter, needs.definition.name)
    return notes


def _check_adapter(path: Path, pipeline: str) -> list[str]:
    from clara_rt.dicom.config import load_config

    config = load_config(path)  # AdapterConfigError: path:line:column
    notes = []
    if not any(pipeline in ae.pipelines for ae in config.ae_titles):
        notes.append(f"{path}: no AE title runs pipeline '{pipeline}'")
    storage = config.dicom.storage
    expected = path.resolve().parent.parent / "var"
    if not storage.is_relative_to(expected):
        notes.append(f"{path}: storage {storage} is outside PREFIX/var, the only folder the "
                     "service may write: set 'storage: ../var/dicom' (relative to etc/)")
    return notes


def _fill(root: Path, spec: BundleSpec, needs: PipelineNeeds, target: Target,
          source: Path | None, say: Progress) -> tuple[dict[str, float], dict[str, Any]]:
    wheel, found, timings = _wheelhouse(root / "wheelhouse", spec, needs, target, source, say)
    # The glibc the wheels really need (the clara-rt wheel built here: the symbols it links).
    target = dataclasses.replace(target, glibc=wheels.needed_glibc(found))
    _copy_pipeline(root / "pipeline", spec, needs)
    version = wheels.WheelName.parse(wheel.name).version
    values = _values(spec, needs, target, version, len(found),
                     sum(p.stat().st_size for p in found))
    _write_templates(root, values)
    if spec.adapter is not None:
        shutil.copyfile(spec.adapter, root / "config" / "adapter.yaml")
    info = {"clara-rt": version, "python": target.python_version,
            "platform": target.platform_tag, "arch": target.arch,
            "glibc": f"{target.glibc[0]}.{target.glibc[1]}",
            "pipeline": needs.definition.name, "definition": _DEFINITION,
            "extras": list(needs.extras), "requirement": values["REQUIREMENT"],
            "operators": [f"pipeline/operators/{p.name}" for p in needs.sources],
            "requirements": list(needs.requirements), "wheels": len(found),
            "created": values["CREATED"]}
    say("hashing the files (bundle.json, SHA256SUMS)")
    return timings, write_manifest(root, info)


def _wheelhouse(house: Path, spec: BundleSpec, needs: PipelineNeeds, target: Target,
                source: Path | None, say: Progress) -> tuple[Path, list[Path], dict[str, float]]:
    mark = time.monotonic()
    wheel = _clara_rt_wheel(spec.clara_rt_wheel, source, house, say)
    timings = {"wheel": time.monotonic() - mark}
    mark = time.monotonic()
    say(f"downloading what clara-rt[{','.join(needs.extras)}] needs ({target.python_tag}, "
        f"manylinux up to {target.platform_tag}; pip download)")
    found = wheels.download(wheel, needs.extras, needs.requirements, target, house)
    timings["download"] = time.monotonic() - mark
    total = sum(p.stat().st_size for p in found)
    largest = sorted(found, key=lambda p: p.stat().st_size, reverse=True)[:3]
    say(f"{len(found)} wheels, {total / _MB:.1f} MB in {timings['download']:.1f} s (largest: "
        + ", ".join(f"{p.name.split('-')[0]} {p.stat().st_size / _MB:.0f} MB" for p in largest)
        + ")")
    return wheel, found, timings


def _clara_rt_wheel(given: Path | None, source: Path | None, house: Path,
                    say: Progress) -> Path:
    house.mkdir(parents=True, exist_ok=True)
    if given is not None:
        return Path(shutil.copy2(given, house / given.name))
    assert source is not None
    say(f"building the clara-rt wheel from {source} (pip wheel --no-deps; compiles the C++ "
        "scheduler)")
    mark = time.monotonic()
    built = wheels.build_clara_rt_wheel(source, house)
    say(f"built {built.name} ({built.stat().st_size / _MB:.1f} MB) in "
        f"{time.monotonic() - mark:.1f} s")
    return built


def _copy_pipeline(dest: Path, spec: BundleSpec, needs: PipelineNeeds) -> None:
    dest.mkdir(parents=True)
    shutil.copyfile(spec.pipeline, dest / "pipeline.yaml")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for source in needs.sources:
        target = dest / "operators" / source.name
        if source.is_dir():
            shutil.copytree(source, target, ignore=skip)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    if spec.models is not None:
        shutil.copytree(spec.models, dest / "models", ignore=skip)


def _values(spec: BundleSpec, needs: PipelineNeeds, target: Target, version: str,
            count: int, total: int) -> dict[str, str]:
    name = needs.definition.name
    serve_args = [*(["--memory-budget", spec.memory_budget] if spec.memory_budget else []),
                  *(f"--service {k}={v}" for k, v in spec.services.items())]
    extra_files = [" + operators/" if needs.sources else "", " + models/" if spec.models else ""]
    return {
        "PIPELINE": name, "PIPELINE_YAML": _yaml_scalar(name), "VERSION": version,
        "PYTHON": target.python_version, "PLATFORM": target.platform_tag, "ARCH": target.arch,
        "GLIBC": f"{target.glibc[0]}.{target.glibc[1]}", "EXTRAS": ", ".join(needs.extras),
        "REQUIREMENT": f"clara-rt[{','.join(needs.extras)}]=={version}",
        "WHEELS": str(count), "WHEEL_MB": f"{total / _MB:.0f}",
        "CREATED": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "PORT": str(spec.port), "DICOM_PORT": str(spec.dicom_port),
        "WORKERS": str(spec.workers), "MAX_RUNNING": str(spec.max_running),
        "SHUTDOWN_GRACE": f"{spec.shutdown_grace:g}",
        "STOP_TIMEOUT": str(int(spec.shutdown_grace) + 30), "SERVE_ARGS": " ".join(serve_args),
        "PRIVATE_DEVICES": "no" if "gpu" in needs.extras else "yes",
        "AE_TITLE": ae_title_for(name), "PIPELINE_EXTRA": "".join(extra_files),
    }


def _write_templates(root: Path, values: dict[str, str]) -> None:
    outputs = {name: root / name for name in (*_SCRIPTS, "README.txt")}
    outputs |= {name: root / "systemd" / name for name in _UNITS}
    outputs |= {name: root / "config" / name for name in ("server.env", "adapter.yaml")}
    for name, path in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(_template(name), values), encoding="utf-8")
        if name in _SCRIPTS:
            path.chmod(0o755)


def _template(name: str) -> str:
    return resources.files("clara_rt.package").joinpath("templates", name).read_text("utf-8")


def _render(text: str, values: Mapping[str, str]) -> str:
    rendered = re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], text)
    assert "{{" not in rendered, "a template placeholder without a value"
    return rendered


def _yaml_scalar(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text) else json.dumps(text)


def _remove(folder: Path, archive: Path) -> None:
    if folder.is_dir():
        shutil.rmtree(folder)
    archive.unlink(missing_ok=True)


def _pack(folder: Path, archive: Path) -> None:
    partial = archive.with_name(archive.name + ".partial")

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    try:
        # Wheels are zip files already: a low level packs nearly as small, several times faster.
        with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
            tar.add(folder / "bundle.json", f"{folder.name}/bundle.json", filter=owned_by_root)
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder)
                if path.is_file() and rel.as_posix() != "bundle.json":
                    tar.add(path, f"{folder.name}/{rel.as_posix()}", filter=owned_by_root)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(archive)
