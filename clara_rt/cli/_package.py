"""``clara-rt package``: an offline bundle of a pipeline for an edge box, or its check.

* ``clara-rt package PIPELINE.yaml -o bundle/ [--models DIR] [--platform P] [--python 3.11]
  [--adapter ADAPTER.yaml] [--gpu] [--extra NAME] [--clara-rt-wheel PATH] ...`` writes
  ``bundle/`` and ``bundle.tar.gz`` (see :mod:`clara_rt.package`); progress goes to stderr, the
  summary to stdout.
* ``clara-rt package --check bundle/`` (or ``bundle.tar.gz``) verifies every file's sha256 and
  size and that none is missing or extra.

Exit status: 0 success; 1 the bundle could not be written (pip failed: its last lines are
shown) or the check found problems (all listed); 2 bad arguments or an invalid pipeline
(``path:line:column``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clara_rt.cli._common import parse_pairs, positive_int, progress
from clara_rt.errors import DefinitionError, PackageError

__all__ = ["add"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_MB = 1 << 20


def add(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``package``."""
    p = verbs.add_parser(
        "package", help="write an offline bundle (wheels, pipeline, config, systemd units) of "
                        "a pipeline for an edge box, or --check one",
        description="Write PIPELINE's offline bundle: a folder and FOLDER.tar.gz that install "
                    "with 'sh install.sh' on a machine without internet.")
    p.add_argument("pipeline", nargs="?", type=Path, metavar="PIPELINE.yaml")
    p.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="bundle folder to write (the archive is DIR.tar.gz beside it)")
    p.add_argument("--check", type=Path, metavar="BUNDLE",
                   help="verify a bundle folder or .tar.gz instead: hashes, nothing missing or "
                        "extra")
    p.add_argument("--models", type=Path, metavar="DIR",
                   help="models to ship in pipeline/models/ (adds onnxruntime)")
    p.add_argument("--platform", metavar="P",
                   help="manylinux_x86_64, manylinux_aarch64 or manylinux_2_<minor>_<arch> "
                        "(default: this machine)")
    p.add_argument("--python", metavar="X.Y", help="Python of the target (default: this one)")
    p.add_argument("--adapter", type=Path, metavar="ADAPTER.yaml",
                   help="DICOM adapter configuration to ship (default: one AE title for the "
                        "pipeline, destination left to fill in)")
    p.add_argument("--gpu", action="store_true", help="add the gpu extra (CuPy, NVML)")
    p.add_argument("--extra", action="append", default=[], metavar="NAME",
                   help="another clara-rt extra the operators need: onnx, triton, gpu, dicom, "
                        "torch (repeatable)")
    p.add_argument("--clara-rt-wheel", type=Path, metavar="PATH",
                   help="a clara-rt wheel built for the target (required for another "
                        "architecture or Python)")
    group = p.add_argument_group("settings written to config/ (editable after install)")
    group.add_argument("--port", type=positive_int, default=8000, help="HTTP port (8000)")
    group.add_argument("--dicom-port", type=positive_int, default=11112,
                       help="DICOM port of the generated adapter configuration (11112)")
    group.add_argument("--workers", type=positive_int, default=2, help="worker threads (2)")
    group.add_argument("--max-running", type=positive_int, default=2,
                       help="jobs run at once (2)")
    group.add_argument("--shutdown-grace", type=float, default=30.0, metavar="S",
                       help="seconds running jobs get on stop (30)")
    group.add_argument("--memory-budget", metavar="SIZE|none",
                       help="memory the running jobs' requests may add up to")
    group.add_argument("--service", action="append", default=[], metavar="NAME=URL",
                       help="URL of a service the pipeline uses (triton=URL), repeatable")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output folder and archive")
    p.set_defaults(func=_cmd_package)


def _cmd_package(args: argparse.Namespace) -> int:
    if args.check is not None:
        if args.pipeline is not None or args.output is not None:
            return _usage("--check takes only the bundle: clara-rt package --check BUNDLE")
        return _check(args.check)
    if args.pipeline is None or args.output is None:
        return _usage("package needs PIPELINE.yaml and -o DIR (or --check BUNDLE)")
    if not args.pipeline.is_file():
        return _usage(f"pipeline definition {args.pipeline} does not exist")
    from clara_rt.package import BundleSpec, build_bundle

    try:
        spec = BundleSpec(
            pipeline=args.pipeline, output=args.output, models=args.models,
            platform=args.platform, python=args.python, adapter=args.adapter, gpu=args.gpu,
            extras=tuple(args.extra), clara_rt_wheel=args.clara_rt_wheel, port=args.port,
            dicom_port=args.dicom_port, workers=args.workers, max_running=args.max_running,
            shutdown_grace=args.shutdown_grace, memory_budget=args.memory_budget,
            services=parse_pairs(args.service, "--service"), force=args.force)
        bundle = build_bundle(spec, progress)
    except (DefinitionError, ValueError) as exc:
        return _usage(str(exc))
    except PackageError as exc:
        print(f"clara-rt: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for warning in bundle.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    manifest = bundle.manifest
    print(f"bundle: {bundle.folder} ({len(manifest['files'])} files, "
          f"{bundle.size / _MB:.1f} MB): pipeline {manifest['pipeline']}, clara-rt "
          f"{manifest['clara-rt']}, Python {manifest['python']}, {manifest['platform']} "
          f"(glibc {manifest['glibc']} or newer), extras {', '.join(manifest['extras'])}")
    print(f"archive: {bundle.archive} ({bundle.archive_size / _MB:.1f} MB) in "
          f"{bundle.timings['total']:.0f} s")
    print(f"on the target: tar xzf {bundle.archive.name} && sh {bundle.folder.name}/install.sh "
          "[--prefix DIR]")
    return EXIT_OK


def _check(path: Path) -> int:
    from clara_rt.package.manifest import check_bundle

    result = check_bundle(path)
    if not result.ok:
        print(f"clara-rt: error: {path}: {len(result.problems)} problem(s):", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_FAILED
    m = result.manifest
    print(f"OK: {path}: {result.files} files, {result.size / _MB:.1f} MB verified (pipeline "
          f"{m.get('pipeline')}, clara-rt {m.get('clara-rt')}, Python {m.get('python')}, "
          f"{m.get('platform')})")
    return EXIT_OK


def _usage(message: str) -> int:
    print(f"clara-rt: error: {message}", file=sys.stderr)
    return EXIT_USAGE
