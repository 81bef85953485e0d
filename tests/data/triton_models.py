"""Triton model repositories built at test time from the ONNX models of :mod:`tests.data`.

:func:`chestxray_repository` writes the Python-backend model ``chestxray_classifier``: the
``Flatten -> Gemm -> Softmax`` of :func:`tests.data.onnx_models.centre_classifier` computed with
NumPy from the ONNX file's own initializers, saved as ``W.npy`` and ``b.npy`` next to
``model.py`` (the Triton server's environment has ``numpy<2`` and no ``onnx``). The same ONNX
file then serves ``--inference local`` and the same weights serve Triton. Run as a script to
write both for the chestxray-classify example (``OUT/models/chestxray_classifier.onnx`` and the
repository ``OUT/triton``)::

    python -m tests.data.triton_models .demo/chestxray
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

CHESTXRAY_MODEL = "chestxray_classifier"

_MODEL_PY = '''\
"""Triton python-backend model: probs = softmax(flatten(image) @ W.T + b) (FP32)."""
import os

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))


class TritonPythonModel:
    def initialize(self, args):
        self.w = np.load(os.path.join(HERE, "W.npy"))
        self.b = np.load(os.path.join(HERE, "b.npy"))

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
            logits = x.reshape(x.shape[0], -1).astype(np.float32) @ self.w.T + self.b
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("probs", probs)]))
        return responses

    def finalize(self):
        pass
'''

_CONFIG = '''\
# The centre classifier of tests/data/onnx_models.py, computed with numpy from its initializers.
name: "{name}"
backend: "python"
max_batch_size: 0
input [
  {{ name: "image", data_type: TYPE_FP32, dims: [ 1, 1, {size}, {size} ] }}
]
output [
  {{ name: "probs", data_type: TYPE_FP32, dims: [ 1, {classes} ] }}
]
instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
'''


def onnx_initializers(model: str | Path) -> dict[str, np.ndarray]:
    """Return the initializers of an ONNX file by name."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model)).graph
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def chestxray_repository(root: str | Path, onnx_model: str | Path) -> Path:
    """Write a Triton repository under ``root`` serving ``onnx_model`` as ``chestxray_classifier``.

    ``onnx_model`` is a :func:`~tests.data.onnx_models.centre_classifier` file; its ``W`` and
    ``b`` become ``root/chestxray_classifier/1/{W,b}.npy``. Returns ``root``.
    """
    weights = onnx_initializers(onnx_model)
    w, b = (np.ascontiguousarray(weights[k], dtype=np.float32) for k in ("W", "b"))
    size = math.isqrt(w.shape[1])
    if size * size != w.shape[1] or b.shape != (w.shape[0],):
        raise ValueError(f"{onnx_model}: W {w.shape} / b {b.shape} are not a square-image Gemm")
    folder = Path(root) / CHESTXRAY_MODEL
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    np.save(version / "W.npy", w)
    np.save(version / "b.npy", b)
    (version / "model.py").write_text(_MODEL_PY)
    (folder / "config.pbtxt").write_text(
        _CONFIG.format(name=CHESTXRAY_MODEL, size=size, classes=w.shape[0]))
    return Path(root)


def main(argv: list[str]) -> int:
    """Write ``models/chestxray_classifier.onnx`` and the repository ``triton/`` in argv[0]."""
    from tests.data.onnx_models import centre_classifier

    if len(argv) != 1:
        print("usage: python -m tests.data.triton_models OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    model = centre_classifier(out / "models" / f"{CHESTXRAY_MODEL}.onnx")
    print(model)
    print(chestxray_repository(out / "triton", model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
