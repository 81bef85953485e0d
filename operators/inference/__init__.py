"""Inference operators: models run in-process (ONNX Runtime).

* :class:`OnnxClassifierOp`: a 2-D image through an ONNX classifier -> class probabilities and
  the top class. Needs the optional ``onnxruntime`` package (``pip install 'clara-rt[onnx]'``),
  imported only when the operator starts.
"""

from __future__ import annotations

from clara_rt.operators.inference.onnx_classify import OnnxClassifierOp as OnnxClassifierOp

__all__ = ["OnnxClassifierOp"]
