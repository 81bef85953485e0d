"""OnnxClassifierOp: classify a 2-D image with an ONNX model run in-process by onnxruntime.

The model is loaded once, in :meth:`OnnxClassifierOp.start` (the runtime calls it before the
first job), and shared by every job; ``InferenceSession.run`` is thread-safe, so jobs may
classify at the same time. The image is resized (bilinear) to the model's input size and fed as
one float32 ``[1, C, H, W]`` tensor (or the rank the model declares), the grey image repeated
over ``C`` channels.

Providers: ``CPUExecutionProvider``; ``CUDAExecutionProvider`` first when CuPy finds a GPU and
the installed onnxruntime has it (``onnxruntime-gpu``). **The CUDA path has not been run here
(no GPU with onnxruntime-gpu on the development machine).**
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt import BackendError, Context, Inputs, Operator, OperatorSpec, Outputs

__all__ = ["OnnxClassifierOp", "model_input_size", "resize_bilinear"]

log = logging.getLogger(__name__)


class OnnxClassifierOp(Operator):
    """Run an ONNX classifier on a 2-D image; emit the class probabilities and the top class.

    The model must take one float32 input of rank 2 to 4 whose last two axes are the image
    (``[1, C, H, W]``, ``[N, C, H, W]`` with a free batch axis, ``[1, H, W]`` or ``[H, W]``;
    free ``H``/``W`` take the image's own size) and give one output holding one score per class.

    Ports:
        in ``<input>`` (the ``input`` argument, default ``image``): array, 2-D ``("Y", "X")``,
            any numeric dtype, host or GPU (copied to the host for onnxruntime).
        out ``probs``: float32 ``(K,)``, one probability per class.
        out ``result``: object, ``{"label", "index", "probability", "labels", "model"}``:
            the top class, its index and probability, ``{label: probability}`` for every class,
            and the model path.

    Args:
        name: Operator name in its pipeline.
        model: Path of the ``.onnx`` file (``${{MODEL}}`` in a pipeline definition).
        labels: Class names in output order (default ``"0"``, ``"1"``, ...).
        input: Name of the input port.
        softmax: Apply a softmax to the model's output (for models that end in logits).
        providers: onnxruntime execution providers, overriding the choice described above.

    Raises:
        BackendError: From :meth:`start`: onnxruntime is missing, the model file is missing or
            unreadable, or its input does not take a 2-D image; from :meth:`compute`: the
            output does not hold one score per label. The message names the model path.
    """

    def __init__(self, name: str | None = None, /, *, model: str | os.PathLike[str],
                 labels: Sequence[str] | None = None, input: str = "image",
                 softmax: bool = False, providers: Sequence[str] | None = None) -> None:
        super().__init__(name)
        if not str(input).isidentifier():
            raise ValueError(f"input port name must be an identifier, got {input!r}")
        self.model = str(model)
        self.labels = None if labels is None else [str(label) for label in labels]
        self.input, self.softmax = str(input), bool(softmax)
        self.providers = None if providers is None else list(providers)
        self._session: Any = None
        self._input_name = ""
        self._layout: tuple[int | None, ...] = ()

    def setup(self, spec: OperatorSpec) -> None:
        """Declare the image input (named by ``input``), ``probs`` and ``result`` out."""
        spec.input(self.input, shape=("Y", "X"), description="2-D image")
        spec.output("probs", dtype="float32", shape=(-1,), description="class probabilities")
        spec.output("result", kind="object", description="top class and all probabilities")

    def start(self) -> None:
        """Load the model and check that its input takes a 2-D image."""
        ort = _onnxruntime(self.model)
        path = Path(self.model)
        if not path.is_file():
            raise BackendError(f"ONNX model {self.model} does not exist (pass its path, e.g. "
                               "--var MODEL=/path/to/model.onnx)", model=self.model)
        providers = self.providers or _providers(ort)
        try:
            session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise BackendError(f"cannot load ONNX model {self.model}: {exc}",
                               model=self.model) from exc
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            found = ", ".join(f"{i.name}: {i.type} {i.shape}" for i in inputs)
            raise BackendError(f"ONNX model {self.model} must take one float32 image tensor; "
                               f"its inputs are: {found}", model=self.model)
        self._layout = model_input_size(inputs[0].shape, self.model)
        self._input_name, self._session = inputs[0].name, session
        log.info("operator '%s': loaded %s on %s", self.name, self.model,
                 session.get_providers()[0])

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Resize the image to the model's input, run the model, emit ``probs`` + ``result``."""
        if self._session is None:
            raise BackendError(f"operator '{self.name}': the model is not loaded (start() was "
                               "not called)", model=self.model)
        tensor = _tensor(self._host_image(inputs[self.input]), self._layout)
        scores = np.asarray(self._session.run(None, {self._input_name: tensor})[0],
                            dtype=np.float32).reshape(-1)
        probs = _softmax(scores) if self.softmax else scores
        labels = self.labels or [str(i) for i in range(probs.size)]
        if len(labels) != probs.size:
            raise BackendError(f"ONNX model {self.model} gives {probs.size} scores but "
                               f"{len(labels)} labels were given: {', '.join(labels)}",
                               model=self.model)
        top = int(np.argmax(probs))
        outputs.emit("probs", probs)
        outputs.emit("result", {
            "label": labels[top], "index": top, "probability": float(probs[top]),
            "labels": {label: float(p) for label, p in zip(labels, probs, strict=True)},
            "model": self.model,
        })

    def _host_image(self, image: Any) -> np.ndarray:
        """The image on the host; a GPU image is resized there first, so only the model's
        input crosses (one counted copy)."""
        if isinstance(image, np.ndarray) or image.ndim != 2 or not hasattr(image, "get"):
            return _host(image)
        from clara_rt.arrays import to_host
        from clara_rt.operators.preprocess.resize import resize

        size = (self._layout[-2] or image.shape[0], self._layout[-1] or image.shape[1])
        return to_host(resize(image, size))  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Release the session."""
        self._session = None


def model_input_size(shape: Sequence[Any], model: str = "model") -> tuple[int | None, ...]:
    """Return the input layout a 2-D image is fed as: each axis a size, or ``None`` when free.

    Args:
        shape: The model input's shape as onnxruntime reports it (ints, or strings/``None``
            for free axes), rank 2 to 4: ``[..., H, W]`` with at most a batch and a channel axis
            before the image.
        model: Model path, for the error message.

    Returns:
        The shape with free axes as ``None``; the batch axis (rank 4) is always 1.

    Raises:
        BackendError: The rank is not 2 to 4, or the batch or channel axis is fixed to something
            else than 1 (batch) or 1 / 3 (channels).
    """
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    problem = None
    if not 2 <= len(dims) <= 4:
        problem = f"rank {len(dims)}, expected [N, C, H, W], [C, H, W] or [H, W]"
    elif len(dims) == 4 and dims[0] not in (None, 1):
        problem = f"a batch of {dims[0]}, expected 1 or a free batch axis"
    elif len(dims) >= 3 and dims[-3] not in (None, 1, 3):
        problem = f"{dims[-3]} channels, expected 1 or 3"
    if problem is not None:
        raise BackendError(f"ONNX model {model} input shape {list(shape)} does not fit a 2-D "
                           f"image: {problem}", model=model)
    if len(dims) == 4:
        dims[0] = 1
    if len(dims) >= 3 and dims[-3] is None:
        dims[-3] = 1
    return tuple(dims)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D image to ``size`` ``(rows, cols)`` by bilinear interpolation (float32).

    Pixel centres are aligned (``grid_mode``, as ``PIL``/``cv2`` resize), so halving a side
    averages each pair of pixels; edges repeat the border pixel. The same size returns the
    image as float32 (no copy when it already is).
    """
    if tuple(image.shape) == tuple(size):
        return np.asarray(image, dtype=np.float32)
    from scipy import ndimage

    zoom = (size[0] / image.shape[0], size[1] / image.shape[1])
    out = ndimage.zoom(np.asarray(image, dtype=np.float32), zoom, order=1, mode="nearest",
                       grid_mode=True)
    if out.shape != tuple(size):  # zoom rounds the output size; keep exactly what was asked
        raise ValueError(f"resize to {size} gave {out.shape}")
    return out


def _tensor(image: np.ndarray, layout: tuple[int | None, ...]) -> np.ndarray:
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    rows = layout[-2] or image.shape[0]
    cols = layout[-1] or image.shape[1]
    grey = resize_bilinear(image, (rows, cols))
    if len(layout) == 2:
        return np.ascontiguousarray(grey)
    channels = layout[-3] or 1
    tensor = np.repeat(grey[np.newaxis], channels, axis=0)
    return np.ascontiguousarray(tensor[np.newaxis] if len(layout) == 4 else tensor)


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max())
    return (e / e.sum()).astype(np.float32)


def _host(array: Any) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)
    return np.asarray(get() if callable(get) else array)


def _onnxruntime(model: str) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(f"onnxruntime is not installed, needed to run {model}: pip install "
                           "'clara-rt[onnx]' (or onnxruntime-gpu)", model=model) from exc
    return onnxruntime


def _providers(ort: Any) -> list[str]:
    from clara_rt.arrays import cuda_available

    available = ort.get_available_providers()
    if cuda_available() and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
