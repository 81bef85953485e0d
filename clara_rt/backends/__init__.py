"""Inference backends: Triton / KServe v2 servers, in-process ONNX Runtime and PyTorch.

``import clara_rt.backends`` imports none of tritonclient, onnxruntime or torch; each backend
module imports its library when it is used (:mod:`clara_rt.backends.torch` runs TorchScript
files and MONAI bundles, :mod:`clara_rt.backends.monai_bundle` reads bundle metadata).
"""

from __future__ import annotations

from clara_rt.backends.base import InferenceBackend as InferenceBackend
from clara_rt.backends.base import ModelSpec as ModelSpec
from clara_rt.backends.base import TensorSpec as TensorSpec

__all__ = ["InferenceBackend", "ModelSpec", "TensorSpec"]
