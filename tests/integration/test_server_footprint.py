"""An idle ``clara-rt serve`` stays small: no GPU, inference or imaging stack is imported until a
job needs it, not even when a pipeline is registered (issue: edge deployment, small footprint).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from clara_rt.bench import checkout_env
from tests.conftest import need_peer
from tests.footprint import heavy_in, server_modules


@pytest.fixture(autouse=True)
def _need_server_extra() -> None:
    need_peer(importlib.util.find_spec("fastapi") is not None
              and importlib.util.find_spec("uvicorn") is not None,
              "FastAPI and uvicorn (pip install 'clara-rt[server]')")


def test_idle_server_imports_no_heavy_package() -> None:
    modules, _ = server_modules(sys.executable, checkout_env())
    assert "clara_rt.server.app" in modules and "clara_rt._core" in modules
    assert heavy_in(modules) == []


def test_registering_ct_lung_seg_imports_no_heavy_package() -> None:
    """Building its operators (done at registration, to check the definition) loads no SciPy,
    pydicom, highdicom or Pillow: they load at the first job."""
    pipeline = Path(__file__).resolve().parents[2] / "examples" / "ct-lung-seg" / "pipeline.yaml"
    modules, _ = server_modules(sys.executable, checkout_env(), pipelines=(pipeline,))
    assert "clara_rt.operators.output.dicom_seg" in modules
    assert heavy_in(modules) == []
