"""PNG views of a volume for the console's viewer: slices, a MIP, windowing and label overlays.

Geometry follows :mod:`clara_rt.operators.volume`: a volume is ``image[k, j, i]`` with spacing
``(dk, dj, di)`` mm. ``axial`` cuts across ``k`` (rows ``j``, columns ``i``), ``coronal``
across ``j`` (rows ``k``, columns ``i``), ``sagittal`` across ``i`` (rows ``k``, columns ``j``)
and ``mip`` is the maximum along ``j`` (front to back), laid out like ``coronal``. Views along
``k`` are flipped so that the head is at the top when ``k`` runs towards the head, and every
view is resampled to square pixels of its finer spacing, so a 2.5 mm x 0.7 mm coronal view
keeps its true proportions. The label overlay uses the colours of the pipeline's own PNG
renderer (:func:`clara_rt.operators.output.render.overlay`). :func:`orientation_marks` names
the patient direction at each edge of a view (R/L, A/P, S/I) from the volume's direction
cosines, so the viewer can print them beside the image.

Pure functions of arrays in and bytes out: no server, no files (see :mod:`.volumes`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["PLANES", "WINDOWS", "ViewError", "auto_window", "orientation_marks", "plane_length",
           "render_png", "render_view", "resolve_window", "to_grey"]

PLANES = ("axial", "coronal", "sagittal", "mip")
WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0), "soft": (40.0, 400.0), "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0)}
"""Window presets in Hounsfield units: name -> ``(level, width)``."""
# plane -> (axis cut across, axis of the view's rows, axis of its columns)
_AXES = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1), "mip": (1, 0, 2)}


# LPS (DICOM patient axes): the letter of each axis's positive and negative direction.
_LPS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))


class ViewError(ValueError):
    """A view that cannot be drawn: unknown plane or window, index outside the volume."""


def plane_length(shape: tuple[int, ...], plane: str) -> int:
    """Number of slices a plane has (1 for ``mip``). Raises :class:`ViewError`."""
    _check_plane(plane)
    return 1 if plane == "mip" else int(shape[_AXES[plane][0]])


def resolve_window(window: str, wl: str | None, auto: tuple[float, float]
                   ) -> tuple[float, float]:
    """Return ``(level, width)`` for a preset name, ``"auto"`` or ``wl="W,L"`` (which wins).

    Raises:
        ViewError: Unknown preset, ``wl`` not two numbers, width not positive.
    """
    if wl:
        parts = wl.split(",")
        try:
            width, level = (float(p) for p in parts)
        except ValueError:
            raise ViewError(f"wl must be 'WIDTH,LEVEL' (two numbers), not {wl!r}") from None
        if not (np.isfinite(width) and np.isfinite(level)) or width <= 0:
            raise ViewError(f"window width must be a positive number, not {parts[0]!r}")
        return level, width
    if window == "auto":
        return auto
    if window not in WINDOWS:
        raise ViewError(f"unknown window {window!r}; windows are: {', '.join(WINDOWS)}, auto")
    return WINDOWS[window]


def orientation_marks(direction: np.ndarray | None, plane: str, *, head_up: bool = True
                      ) -> dict[str, str] | None:
    """The patient direction at the ``top``, ``bottom``, ``left`` and ``right`` of a view.

    Args:
        direction: 3x3 matrix whose columns are the LPS unit vectors of the ``i``, ``j`` and
            ``k`` axes (:class:`~clara_rt.operators.volume.VolumeMeta`), or ``None`` (unknown:
            no marks).
        plane: One of :data:`PLANES`.
        head_up: Whether views along ``k`` are flipped (as :func:`render_view` does).

    Returns:
        e.g. ``{"top": "A", "bottom": "P", "left": "R", "right": "L"}`` for an axial view of a
        head-first supine series; an oblique axis gets two letters, the larger part first
        (``"LP"``). ``None`` without a direction.
    """
    _check_plane(plane)
    if direction is None:
        return None
    cosines = np.asarray(direction, dtype=float)
    _, rows, cols = _AXES[plane]
    # Array axis 0/1/2 is k/j/i, whose direction is column 2/1/0 of the matrix.
    row_dir, col_dir = cosines[:, 2 - rows], cosines[:, 2 - cols]
    if rows == 0 and head_up:
        row_dir = -row_dir  # the view is flipped: rows run against k
    return {"top": _letters(-row_dir), "bottom": _letters(row_dir),
            "left": _letters(-col_dir), "right": _letters(col_dir)}


def auto_window(image: np.ndarray) -> tuple[float, float]:
    """``(level, width)`` spanning the 0.5-99.5 percentiles of ``image`` (a subsample)."""
    step = max(1, round((image.size / 2_000_000) ** (1 / 3)))
    sample = np.asarray(image[::step, ::step, ::step], dtype=np.float32)
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if not hi > lo:
        hi = lo + 1.0
    return (lo + hi) / 2, hi - lo


def to_grey(values: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map intensities to ``uint8``: ``level - width/2`` -> 0, ``level + width/2`` -> 255."""
    lo = level - width / 2
    scaled = (np.asarray(values, dtype=np.float32) - lo) * np.float32(255.0 / width)
    grey: np.ndarray = np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)
    return grey


def render_view(image: np.ndarray, labels: np.ndarray | None,
                spacing: tuple[float, float, float], plane: str, index: int | None,
                window: tuple[float, float], *, head_up: bool = True, alpha: float = 0.4
                ) -> np.ndarray:
    """One view as an RGB ``uint8`` array ``(H, W, 3)`` with square pixels.

    Args:
        image: Intensities ``[k, j, i]``.
        labels: Integer labels of the same shape (0 = none), or ``None``.
        spacing: ``(dk, dj, di)`` in mm.
        plane: One of :data:`PLANES`.
        index: Slice across the plane's axis (``None``: the middle one; ignored for ``mip``).
        window: ``(level, width)``.
        head_up: Flip views along ``k`` (``k`` runs towards the head).
        alpha: Opacity of the label colours.

    Raises:
        ViewError: Unknown plane, index outside the volume, labels of another shape.
    """
    n = plane_length(image.shape, plane)
    axis, rows, cols = _AXES[plane]
    if labels is not None and labels.shape != image.shape:
        raise ViewError(f"labels of shape {labels.shape} do not match the image {image.shape}")
    if plane == "mip":
        grey_plane = image.max(axis=axis)
        label_plane = None if labels is None else labels.max(axis=axis)
    else:
        index = n // 2 if index is None else index
        if not 0 <= index < n:
            raise ViewError(f"index {index} is outside the {plane} plane's slices 0..{n - 1}")
        grey_plane = np.take(image, index, axis=axis)
        label_plane = None if labels is None else np.take(labels, index, axis=axis)
    grey = to_grey(grey_plane, *window)
    lab = None if label_plane is None else np.asarray(label_plane).astype(np.int32)
    if rows == 0 and head_up:
        grey = grey[::-1]
        lab = None if lab is None else lab[::-1]
    grey, lab = _square_pixels(grey, lab, (float(spacing[rows]), float(spacing[cols])))
    if lab is None or not lab.any():
        return np.repeat(grey[:, :, None], 3, axis=2)
    result: np.ndarray = _render_module().overlay(grey, lab, {}, alpha, outline=True)
    return result


def render_png(image: np.ndarray, labels: np.ndarray | None,
               spacing: tuple[float, float, float], plane: str, index: int | None,
               window: tuple[float, float], *, head_up: bool = True, alpha: float = 0.4
               ) -> bytes:
    """:func:`render_view` encoded as PNG (fast compression: these are drawn per request)."""
    from PIL import Image  # only when a view is asked for: an idle server never loads Pillow

    rgb = render_view(image, labels, spacing, plane, index, window, head_up=head_up,
                      alpha=alpha)
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _check_plane(plane: str) -> None:
    if plane not in _AXES:
        raise ViewError(f"unknown plane {plane!r}; planes are: {', '.join(PLANES)}")


def _letters(vector: np.ndarray) -> str:
    """``"L"``, ``"A"``..., or two letters for an oblique vector (parts above 0.3)."""
    order = np.argsort(-np.abs(vector))
    parts = [_LPS_LETTERS[a][0 if vector[a] > 0 else 1] for a in order if abs(vector[a]) > 0.3]
    return "".join(parts[:2])


def _square_pixels(grey: np.ndarray, labels: np.ndarray | None, spacing: tuple[float, float]
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample to square pixels of the finer spacing (bilinear grey, nearest labels)."""
    finest = min(spacing)
    if finest <= 0 or not np.isfinite(finest):
        return grey, labels
    height = max(1, round(grey.shape[0] * spacing[0] / finest))
    width = max(1, round(grey.shape[1] * spacing[1] / finest))
    if (height, width) == grey.shape:
        return grey, labels
    from PIL import Image

    resized = np.asarray(Image.fromarray(grey).resize((width, height), Image.Resampling.BILINEAR))
    if labels is not None:
        rows = np.minimum(((np.arange(height) + 0.5) * grey.shape[0] / height).astype(int),
                          grey.shape[0] - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * grey.shape[1] / width).astype(int),
                          grey.shape[1] - 1)
        labels = labels[rows[:, None], cols[None, :]]
    return resized, labels


def _render_module() -> Any:
    from clara_rt.operators.output import render  # on first use: the console starts without it

    return render
