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
``func``, and call it from :func:`build_parser`. A verb function takes the parsed arguments and
returns the exit status.
"""

from __future__ import annotations

import argparse

from clara_rt.cli import _bench, _bundle, _client, _convert, _dicom, _package, _pipeline, _serve

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``clara-rt`` command line and return its exit status.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        0 on success, 1 when a verb fails, 2 on a usage error (argparse exits with 2 itself).
    """
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every verb."""
    from clara_rt import __version__

    parser = argparse.ArgumentParser(
        prog="clara-rt", description="In-process pipeline runtime for medical-imaging AI.")
    parser.add_argument("--version", action="version", version=f"clara-rt {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _pipeline.add(verbs)
    _convert.add(verbs)
    _bench.add(verbs)
    _dicom.add(verbs)
    _serve.add(verbs)
    _client.add(verbs)
    _package.add(verbs)
    _bundle.add(verbs)
    return parser
