"""Resize2DOp and ClassificationResultOp: the steps around InferenceOp in chestxray-classify."""

from __future__ import annotations

import numpy as np
import pytest

from clara_rt import BackendError, PipelineError
from clara_rt.operators.inference.onnx_classify import resize_bilinear
from clara_rt.operators.postprocess.classification import (
    ClassificationResultOp,
    classification_result,
)
from clara_rt.operators.preprocess.resize import Resize2DOp
from tests.unit.test_image_ops import run_op


def test_resize_halves_by_2x2_means_and_keeps_the_same_size() -> None:
    image = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    out = run_op(Resize2DOp("resize", size=(32, 24)), image=image)["resized"]
    assert out.dtype == np.float32 and out.shape == (32, 24)
    expected = image.astype(np.float32).reshape(32, 2, 24, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_array_equal(out, resize_bilinear(image, (32, 24)))  # OnnxClassifierOp's
    same = run_op(Resize2DOp("same", size=(64, 48)), image=image.astype(np.float32))["resized"]
    np.testing.assert_array_equal(same, image.astype(np.float32))


def test_resize_rejects_bad_sizes_and_images() -> None:
    for size in ((32,), (0, 32), (32.5, 32)):
        with pytest.raises(ValueError, match="size must be two positive integers"):
            Resize2DOp("bad", size=size)  # type: ignore[arg-type]
    with pytest.raises((PipelineError, ValueError)):
        run_op(Resize2DOp("r", size=(4, 4)), image=np.zeros((2, 3, 4), np.float32))


def test_classification_result_matches_the_onnx_classifier_shape() -> None:
    out = run_op(ClassificationResultOp("classifier", labels=["normal", "abnormal"],
                                        model="m"), scores=np.array([[0.25, 0.75]], np.float32))
    np.testing.assert_array_equal(out["probs"], np.array([0.25, 0.75], np.float32))
    assert out["probs"].dtype == np.float32
    assert out["result"] == {"label": "abnormal", "index": 1, "probability": 0.75,
                             "labels": {"normal": 0.25, "abnormal": 0.75}, "model": "m"}


def test_classification_result_softmax_default_labels_and_label_count() -> None:
    probs, result = classification_result(np.array([0.0, np.log(3.0)]), softmax=True)
    np.testing.assert_allclose(probs, [0.25, 0.75], rtol=1e-6)
    assert (result["label"], result["index"]) == ("1", 1)
    assert list(result["labels"]) == ["0", "1"]
    with pytest.raises(BackendError, match="model m gives 2 scores but 3 labels were given"):
        classification_result(np.zeros(2), ["a", "b", "c"], model="m")
