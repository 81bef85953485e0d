"""Inference backends: Triton / KServe v2 servers and in-process ONNX Runtime.

``import clara_rt.backends`` imports neither tritonclient nor onnxruntime; each backend module
imports its library when it is used.
"""

from __future__ import annotations

from clara_rt.backends.base import InferenceBackend as InferenceBackend
from clara_rt.backends.base import ModelSpec as ModelSpec
from clara_rt.backends.base import TensorSpec as TensorSpec

__all__ = ["InferenceBackend", "ModelSpec", "TensorSpec"]
