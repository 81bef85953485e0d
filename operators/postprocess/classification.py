"""ClassificationResultOp: a model's class scores -> probabilities and the top class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clara_rt import BackendError, Context, Inputs, Operator, OperatorSpec, Outputs

__all__ = ["ClassificationResultOp", "classification_result"]


class ClassificationResultOp(Operator):
    """Turn the scores of a classifier (an ``InferenceOp``'s output) into ``probs`` + ``result``.

    The outputs are those of
    :class:`~clara_rt.operators.inference.onnx_classify.OnnxClassifierOp`, so a pipeline whose
    model runs through ``InferenceOp`` (Triton, or ONNX Runtime with ``--inference local``)
    writes the same ``probs.npy`` and ``result.json``.

    Ports:
        in ``scores``: array, the model's output, any shape holding one score per class
            (``[K]``, ``[1, K]``...), any float dtype; CuPy is copied to the host.
        out ``probs``: float32 ``(K,)``.
        out ``result``: object, ``{"label", "index", "probability", "labels", "model"}``.

    Args:
        name: Operator name in its pipeline.
        labels: Class names in score order (default ``"0"``, ``"1"``, ...).
        model: What ``result["model"]`` names (the Triton model, a path...).
        softmax: Apply a softmax to the scores (for models that end in logits).
    """

    def __init__(self, name: str | None = None, /, *, labels: Sequence[str] | None = None,
                 model: str = "", softmax: bool = False) -> None:
        super().__init__(name)
        self.labels = None if labels is None else [str(label) for label in labels]
        self.model, self.softmax = str(model), bool(softmax)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``scores`` in, ``probs`` and ``result`` out."""
        spec.input("scores", description="one score per class")
        spec.output("probs", dtype="float32", shape=(-1,), description="class probabilities")
        spec.output("result", kind="object", description="top class and all probabilities")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Emit the probabilities and the top class."""
        probs, result = classification_result(inputs["scores"], self.labels, model=self.model,
                                               softmax=self.softmax)
        outputs.emit("probs", probs)
        outputs.emit("result", result)


def classification_result(scores: Any, labels: Sequence[str] | None = None, *, model: str = "",
                          softmax: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(probs, result)`` for one image's scores, as :class:`ClassificationResultOp`.

    Raises:
        BackendError: The number of scores is not the number of labels (both are named).
    """
    get = getattr(scores, "get", None)
    host = np.asarray(get() if callable(get) and not isinstance(scores, np.ndarray) else scores)
    probs = np.asarray(host, dtype=np.float32).reshape(-1)
    if softmax:
        e = np.exp(probs - probs.max())
        probs = (e / e.sum()).astype(np.float32)
    names = list(labels) if labels is not None else [str(i) for i in range(probs.size)]
    if len(names) != probs.size:
        raise BackendError(f"model {model or '(unnamed)'} gives {probs.size} scores but "
                           f"{len(names)} labels were given: {', '.join(names)}",
                           model=model or None)
    top = int(np.argmax(probs))
    return probs, {
        "label": names[top], "index": top, "probability": float(probs[top]),
        "labels": {name: float(p) for name, p in zip(names, probs, strict=True)},
        "model": model,
    }
