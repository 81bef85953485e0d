"""WindowOp: clip a CT volume to a Hounsfield window and scale it to float32 ``[0, 1]``."""

from __future__ import annotations

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs
from clara_rt.operators.kernels import window

__all__ = ["PRESETS", "WindowOp", "dims"]

PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
"""Common CT windows: name -> ``(level, width)`` in HU."""


class WindowOp(Operator):
    """Map the window ``[level - width/2, level + width/2]`` to ``[0, 1]`` (float32, clipped).

    One fused pass (:func:`clara_rt.operators.kernels.window`: numba on the host, a CuPy
    ElementwiseKernel on the GPU) instead of NumPy's cast, subtract, divide and clip. NumPy or
    CuPy in, the same out.

    Ports:
        in ``volume``: array, any numeric dtype, shape ``("Z", "Y", "X")`` (rank ``ndim``).
        in ``meta``: object, optional -- passed through unchanged.
        out ``windowed``: float32, same shape as ``volume``.
        out ``meta``: the input ``meta`` (``None`` when not given).

    Args:
        name: Operator name in its pipeline.
        level: Window centre (HU). Ignored when ``preset`` is given.
        width: Window width (HU), > 0. Ignored when ``preset`` is given.
        preset: A key of :data:`PRESETS` (``"lung"``, ``"soft_tissue"``...).
        ndim: Rank of the volume: 3 (default) or 2 for single images.
    """

    def __init__(self, name: str | None = None, /, *, level: float = 40.0, width: float = 400.0,
                 preset: str | None = None, ndim: int = 3) -> None:
        super().__init__(name)
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown window preset {preset!r}; presets are: "
                                 f"{', '.join(PRESETS)}")
            level, width = PRESETS[preset]
        if not float(width) > 0:
            raise ValueError(f"window width must be > 0, got {width!r}")
        self.level, self.width, self.ndim = float(level), float(width), int(ndim)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``volume`` + ``meta`` in, ``windowed`` + ``meta`` out."""
        shape = dims(self.ndim)
        spec.input("volume", shape=shape, description="intensities (HU for CT)")
        spec.input("meta", kind="object", optional=True, description="VolumeMeta, passed on")
        spec.output("windowed", dtype="float32", shape=shape, description="window in [0, 1]")
        spec.output("meta", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Window ``volume``; the input is read, never written."""
        lower = self.level - self.width / 2
        outputs.emit("windowed", window(inputs["volume"], lower, lower + self.width))
        outputs.emit("meta", inputs["meta"])


def dims(ndim: int) -> tuple[str, ...]:
    """Return symbolic port dims for rank ``ndim``: ``("Z", "Y", "X")``, ``("Y", "X")``...

    Raises:
        ValueError: ``ndim`` is not 1, 2 or 3.
    """
    if ndim not in (1, 2, 3):
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}")
    return ("Z", "Y", "X")[3 - ndim:]
