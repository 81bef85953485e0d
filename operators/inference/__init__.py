"""Inference operators.

* :class:`InferenceOp`: any model behind a backend — Triton / KServe v2 over HTTP or gRPC, or
  ONNX Runtime in this process — with ports declared from the model's metadata; optional
  sliding-window inference. :func:`set_local_models` serves Triton model names from local ONNX
  files instead (``clara-rt run --inference local --models DIR``).
  TorchScript files and MONAI bundles run in-process with PyTorch.
* :class:`ArgmaxOp`: per-channel scores -> a uint8 label map.
* :class:`OnnxClassifierOp`: a 2-D image through an ONNX classifier -> class probabilities and
  the top class.

The models need optional packages (``pip install 'clara-rt[onnx]'`` / ``'clara-rt[torch]'`` /
``'clara-rt[triton]'``), imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clara_rt.operators._lazy import lazy_names

if TYPE_CHECKING:
    from clara_rt.operators.inference.argmax import ArgmaxOp as ArgmaxOp
    from clara_rt.operators.inference.infer import InferenceOp as InferenceOp
    from clara_rt.operators.inference.infer import local_models as local_models
    from clara_rt.operators.inference.infer import set_local_models as set_local_models
    from clara_rt.operators.inference.onnx_classify import OnnxClassifierOp as OnnxClassifierOp

# public name -> its module, imported on first use (PEP 562): a pipeline that uses one
# operator of this package does not import the others (nor what they import)
_HOMES: dict[str, str] = {
    "ArgmaxOp": "argmax",
    **dict.fromkeys(("InferenceOp", "local_models", "set_local_models"), "infer"),
    "OnnxClassifierOp": "onnx_classify",
}

__all__ = ["ArgmaxOp", "InferenceOp", "OnnxClassifierOp", "local_models", "set_local_models"]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, __all__)
