"""Tiny ONNX models built with ``onnx.helper`` (nothing downloaded), with NumPy references.

* :func:`seg3d` -- a 3-D "segmentation" net: ``Conv(1->1, 3x3x3, mean filter, zero padding)``
  then ``Sigmoid``, on ``image float32[1, 1, D, H, W]`` (D, H, W symbolic) -> ``prob`` of the same
  shape. Reference: :func:`seg3d_reference` (``scipy.ndimage.uniform_filter`` + sigmoid).
* :func:`sigmoid3d` -- ``Sigmoid`` alone on a *fixed* ``[1, 1, 8, 8, 8]`` window: pointwise, so
  sliding-window inference over any volume must equal ``sigmoid(volume)``.
* :func:`threshold_mask` -- ``Cast<uint8>(Greater(image, threshold))`` on ``image float32[D, H,
  W]`` -> ``mask uint8[D, H, W]``: the ONNX twin of the Triton Python-backend model
  ``threshold_mask`` of ``../shared/peers/triton/models`` (same names, threshold 0.5).
* :func:`classifier2d` -- ``Flatten -> Gemm -> Softmax`` on ``image float32[N, 1, 32, 32]`` ->
  ``probs float32[N, 10]``, with seeded weights. Reference: :func:`classifier2d_reference`.

Models use opset 17 and IR version 8, which every onnxruntime >= 1.17 loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from scipy import ndimage

__all__ = [
    "OnnxNet", "classifier2d", "classifier2d_reference", "seg3d", "seg3d_reference", "sigmoid3d",
    "threshold_mask",
]

OPSET = 17
IR_VERSION = 8


@dataclass(frozen=True)
class OnnxNet:
    """A model written to ``path`` and the parameters a reference needs."""

    path: Path
    params: dict[str, Any] = field(default_factory=dict)


def seg3d(path: str | Path, *, bias: float = 0.0, name: str = "seg3d") -> OnnxNet:
    """Write the 3-D mean-filter + sigmoid net to ``path``.

    Args:
        path: Where to write the ``.onnx`` file (parent folders are created).
        bias: Conv bias (added after the mean).
        name: Graph name.
    """
    weight = np.full((1, 1, 3, 3, 3), 1.0 / 27.0, dtype=np.float32)
    conv = helper.make_node("Conv", ["image", "weight", "bias"], ["conv"], kernel_shape=[3, 3, 3],
                            pads=[1, 1, 1, 1, 1, 1])
    sigmoid = helper.make_node("Sigmoid", ["conv"], ["prob"])
    dims: list[int | str] = [1, 1, "D", "H", "W"]
    graph = helper.make_graph(
        [conv, sigmoid], name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, dims)],
        initializer=[numpy_helper.from_array(weight, "weight"),
                     numpy_helper.from_array(np.array([bias], dtype=np.float32), "bias")])
    return OnnxNet(_save(graph, path), {"bias": bias})


def seg3d_reference(image: np.ndarray, *, bias: float = 0.0) -> np.ndarray:
    """NumPy/SciPy result of :func:`seg3d` for ``image`` of shape ``[1, 1, D, H, W]``."""
    mean = ndimage.uniform_filter(image.astype(np.float64), size=(1, 1, 3, 3, 3),
                                  mode="constant", cval=0.0)
    return (1.0 / (1.0 + np.exp(-(mean + bias)))).astype(np.float32)


def sigmoid3d(path: str | Path, *, window: tuple[int, int, int] = (8, 8, 8)) -> OnnxNet:
    """Write ``Sigmoid`` on a fixed ``[1, 1, *window]`` float32 input (``image`` -> ``prob``)."""
    dims = [1, 1, *window]
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["image"], ["prob"])], "sigmoid3d",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, dims)])
    return OnnxNet(_save(graph, path), {"window": window})


def classifier2d(path: str | Path, *, classes: int = 10, seed: int = 0,
                 name: str = "classifier2d") -> OnnxNet:
    """Write the ``Flatten -> Gemm -> Softmax`` classifier to ``path``.

    Args:
        path: Where to write the ``.onnx`` file.
        classes: Number of classes (output width).
        seed: Seed of the weights ``W [classes, 1024]`` and ``b [classes]``.
        name: Graph name.
    """
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((classes, 32 * 32)) * 0.05).astype(np.float32)
    bias = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")])
    return OnnxNet(_save(graph, path), {"W": weight, "b": bias})


def classifier2d_reference(image: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``softmax(W x + b)`` per row of ``image`` (``[N, 1, 32, 32]``)."""
    logits = image.reshape(len(image), -1).astype(np.float64) @ W.T.astype(np.float64) + b
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def threshold_mask(path: str | Path, *, threshold: float = 0.5) -> OnnxNet:
    """Write ``mask = uint8(image > threshold)`` for a 3-D float32 ``image`` to ``path``.

    The default is the ``threshold`` parameter of the Triton model's ``config.pbtxt`` (0.5); the
    comparison is in float32 on both sides, so the masks are equal bit for bit.
    """
    dims: list[int | str] = ["D", "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Greater", ["image", "threshold"], ["above"]),
         helper.make_node("Cast", ["above"], ["mask"], to=TensorProto.UINT8)],
        "threshold_mask",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("mask", TensorProto.UINT8, dims)],
        initializer=[numpy_helper.from_array(np.array(threshold, dtype=np.float32), "threshold")])
    return OnnxNet(_save(graph, path), {"threshold": threshold})


def _save(graph: onnx.GraphProto, path: str | Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="clara-rt tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
