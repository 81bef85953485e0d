"""ArgmaxOp: a network's per-channel scores -> a label map (MONAI's ``AsDiscrete(argmax=True)``)."""

from __future__ import annotations

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module

__all__ = ["ArgmaxOp"]


class ArgmaxOp(Operator):
    """Take the index of the largest channel at every voxel: ``[C, *spatial]`` -> ``[*spatial]``.

    Softmax or sigmoid before it would not change the result, so it is not needed. NumPy or CuPy
    in, the same out.

    Ports:
        in ``scores``: array ``[C, *spatial]`` (rank ``ndim + 1``), any numeric dtype.
        out ``labels``: uint8 ``[*spatial]`` (``C`` must be <= 256).

    Args:
        name: Operator name in its pipeline.
        ndim: Spatial rank (3 by default).
    """

    def __init__(self, name: str | None = None, /, *, ndim: int = 3) -> None:
        super().__init__(name)
        if ndim not in (1, 2, 3):
            raise ValueError(f"ArgmaxOp '{self.name}': ndim must be 1, 2 or 3, got {ndim!r}")
        self.ndim = int(ndim)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``scores`` in, ``labels`` out."""
        spec.input("scores", shape=(-1,) * (self.ndim + 1), description="channel-first scores")
        spec.output("labels", dtype="uint8", shape=(-1,) * self.ndim, description="label map")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Emit the channel argmax."""
        scores = inputs["scores"]
        if scores.shape[0] > 256:
            raise ValueError(f"operator '{self.name}': {scores.shape[0]} channels do not fit "
                             "uint8 labels (at most 256)")
        xp = get_array_module(scores)
        outputs.emit("labels", xp.argmax(scores, axis=0).astype(xp.uint8))
