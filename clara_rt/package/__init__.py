"""``clara-rt package``: one offline bundle that installs a pipeline as services on an edge box.

A bundle is a folder (and the same as ``<folder>.tar.gz``) holding everything a machine without
internet needs to run one pipeline behind the platform server and the DICOM adapter::

    wheelhouse/          clara-rt (built here, or --clara-rt-wheel) and every wheel it needs
    pipeline/            pipeline.yaml, operators/ (custom operator code), models/
    config/              server.env (port, token, limits), adapter.yaml (AE title -> pipeline)
    systemd/             clara-rt.service (serve + registration), clara-rt-dicom.service
    install.sh           verify, python3 -m venv, pip install --no-index from wheelhouse/
    register.sh          ExecStartPost: wait for /health, clara-rt create pipeline --replace
    README.txt, bundle.json (target, extras, sha256 + size of every file), SHA256SUMS

:func:`build_bundle` writes one (:mod:`.builder`); :func:`check_bundle` verifies one
(:mod:`.manifest`). :mod:`.needs` decides what a pipeline needs, :mod:`.wheels` talks to pip,
:mod:`.platforms` names the target. ``templates/`` holds the scripts, units and configuration.
"""

from __future__ import annotations

from clara_rt.package.builder import Bundle as Bundle
from clara_rt.package.builder import BundleSpec as BundleSpec
from clara_rt.package.builder import build_bundle as build_bundle
from clara_rt.package.manifest import CheckResult as CheckResult
from clara_rt.package.manifest import check_bundle as check_bundle

__all__ = ["Bundle", "BundleSpec", "CheckResult", "build_bundle", "check_bundle"]
