"""The ``clara-rt`` command line: one module per verb group, one small function per verb.

* ``validate PIPELINE.yaml``, ``graph PIPELINE.yaml``, ``run PIPELINE.yaml --input --output``
  (:mod:`clara_rt.cli._pipeline`): Clara pipeline definitions.
* ``convert DICOM_DIR OUT.nii[.gz]`` (:mod:`clara_rt.cli._convert`): a DICOM series to NIfTI.
* ``bench SCENARIO`` (:mod:`clara_rt.cli._bench`): clara-rt against its baselines.
* ``serve`` (:mod:`clara_rt.cli._serve`): the platform server.
* ``package PIPELINE.yaml -o DIR``, ``package --check DIR`` (:mod:`clara_rt.cli._package`): an
  offline bundle for an edge box.
* ``bundle PATH [-o pipeline.yaml]`` (:mod:`clara_rt.cli._bundle`): a pipeline YAML that runs a
  MONAI bundle in-process.
* ``create pipeline|job``, ``start job``, ``list jobs|pipelines|payloads``, ``cancel job``,
  ``describe job|pipeline``, ``wait job``, ``download JOB``, ``logs JOB OPERATOR``
  (:mod:`clara_rt.cli._client`): Clara-CLI-style client verbs against ``serve``.

Exit status: 0 success; 1 a job failed (or was cancelled / timed out); 2 a bad definition or bad
arguments. To add a verb: write ``add(subparsers)`` in a module that declares its parser and sets
``func``, and list the verb with its module and one-line help in :data:`VERBS`. A verb function
takes the parsed arguments and returns the exit status.

Start-up: :func:`main` imports only the module of the verb on the command line; the other verbs
are declared from :data:`VERBS` (name and help, no import), so ``clara-rt convert`` loads neither
the server nor the pipeline runtime. ``tests/unit/test_cli_startup.py`` checks that the table
matches what the modules declare.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

__all__ = ["VERBS", "build_parser", "main"]

# verb -> (module that declares it, its one-line help), in the order ``--help`` lists them
VERBS: dict[str, tuple[str, str]] = {
    "validate": ("_pipeline", "check a pipeline definition"),
    "graph": ("_pipeline", "draw a pipeline definition"),
    "run": ("_pipeline", "run one job of a pipeline definition"),
    "convert": ("_convert", "convert a DICOM series to NIfTI (like dcm2niix)"),
    "bench": ("_bench", "measure clara-rt against a baseline"),
    "dicom": ("_dicom", "run the DICOM adapter (DICOM in, jobs, results out)"),
    "serve": ("_serve", "run the platform server (REST API for pipelines, payloads, jobs and "
                        "results)"),
    "create": ("_client", "register a pipeline or create a job on a clara-rt server"),
    "start": ("_client", "start (queue) a created job"),
    "cancel": ("_client", "cancel a job"),
    "wait": ("_client", "wait for a job to stop"),
    "list": ("_client", "list jobs, pipelines or payloads"),
    "describe": ("_client", "show one job or pipeline in detail"),
    "download": ("_client", "download a job's results"),
    "logs": ("_client", "print an operator's log of a job"),
    "package": ("_package", "write an offline bundle (wheels, pipeline, config, systemd units) "
                            "of a pipeline for an edge box, or --check one"),
    "bundle": ("_bundle", "write a pipeline YAML that runs a MONAI bundle (TorchScript) "
                          "in-process"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the ``clara-rt`` command line and return its exit status.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        0 on success, 1 when a verb fails, 2 on a usage error (argparse exits with 2 itself).
    """
    args_in = sys.argv[1:] if argv is None else argv
    args = build_parser(_verb_of(args_in)).parse_args(args_in)
    status: int = args.func(args)
    if argv is None and args.verb in _EXIT_AT_ONCE:
        _exit_at_once(status)
    return status


_EXIT_AT_ONCE = frozenset({"run"})
"""One-shot verbs whose process ends without tearing its heap down (see :func:`_exit_at_once`)."""


def _exit_at_once(status: int) -> None:
    """End the process now: run the ``atexit`` handlers, flush stdio, ``os._exit(status)``.

    A finished ``clara-rt run`` has closed its runtime and files; what is left is the interpreter
    freeing every object one by one (highdicom's standard tables alone are ~0.5 s), which is
    ~1 s of a cold ct-lung-seg run for nothing (issue 19.1). Only for the console script and
    ``python -m clara_rt.cli`` (``argv is None``): an in-process ``main([...])`` returns.
    """
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def build_parser(verb: str | None = "") -> argparse.ArgumentParser:
    """Return the parser: every verb declared in full, or only ``verb``'s module loaded.

    Args:
        verb: ``""`` (the default) declares every verb in full (imports every verb module);
            a verb name declares that verb's module in full and the others by name and help
            only; ``None`` declares every verb by name and help only (enough for ``--help``
            and for an unknown verb's error).
    """
    from clara_rt import __version__

    parser = argparse.ArgumentParser(
        prog="clara-rt", description="In-process pipeline runtime for medical-imaging AI.")
    parser.add_argument("--version", action="version", version=f"clara-rt {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    wanted = dict.fromkeys(module for module, _ in VERBS.values()) if verb == "" else (
        [VERBS[verb][0]] if verb in VERBS else [])
    declared: dict[str, argparse.ArgumentParser] = {}
    for module in wanted:
        importlib.import_module(f"clara_rt.cli.{module}").add(verbs)
        declared = dict(verbs.choices)
    stubs = {name: verbs.add_parser(name, help=help_)
             for name, (_, help_) in VERBS.items() if name not in declared}
    if stubs and verb == "":
        raise RuntimeError(f"clara-rt cli: VERBS lists {sorted(stubs)} but no module declares "
                           "them")
    _order(verbs, list(VERBS))
    return parser


# --- private ------------------------------------------------------------------------------


def _verb_of(argv: list[str]) -> str | None:
    """Return the verb on the command line (the first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def _order(verbs: argparse._SubParsersAction[argparse.ArgumentParser],
           names: list[str]) -> None:
    """List the verbs in ``--help`` in ``names``'s order, wherever they were declared."""
    rank = {name: i for i, name in enumerate(names)}
    verbs._choices_actions.sort(key=lambda a: rank.get(a.dest, len(rank)))
