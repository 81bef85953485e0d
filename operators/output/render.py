"""Render a volume as PNG views (axial, coronal, sagittal, MIP) with a label overlay.

Geometry: the volume is ``image[k, j, i]`` (see :mod:`clara_rt.operators.volume`). Views are
cut through one voxel (the volume centre or the mask centroid), shown with square pixels (the
2-D view is resampled with ``scipy.ndimage.zoom`` to the finer of its two spacings) and, for
coronal, sagittal and MIP views, with the slice axis flipped so that the patient's head is at
the top when ``k`` runs towards the head (as DICOM loaders sort a standard axial series). Axial
views keep rows and columns as stored (radiological convention for standard orientation).

The overlay blends each label's colour into the grey image with ``alpha`` and draws the label's
outline (its pixels that touch another label or the background) in the full colour.

Device: slices and projections are taken where the arrays live (NumPy or CuPy); only the 2-D
views are copied to the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.arrays import to_host

if TYPE_CHECKING:
    from clara_rt.operators.volume import VolumeMeta

__all__ = ["DEFAULT_COLORS", "VIEWS", "WINDOW_PRESETS", "RenderOp"]

VIEWS = ("axial", "coronal", "sagittal", "mip")
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0), "soft": (40.0, 400.0), "bone": (400.0, 1800.0)}
SLICE_MODES = ("center", "mask-centroid")
DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (0, 200, 0), (0, 128, 255), (255, 215, 0), (255, 0, 255), (0, 215, 215),
    (255, 128, 0), (150, 80, 255))
# view -> (axis the view is cut across, rows axis, columns axis) of the [k, j, i] volume
_AXES = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}


class RenderOp(Operator):
    """Write one PNG per view of ``image`` (with ``mask`` overlaid) into a folder.

    Inputs: ``image`` (intensities ``[k, j, i]``, any real dtype, NumPy or CuPy), ``mask``
    (optional labels ``0..N`` of the same shape), ``meta`` (optional
    :class:`~clara_rt.operators.volume.VolumeMeta`: spacing for the aspect ratio, direction for
    which way is up; without it voxels are taken as 1 mm cubes). Output: ``pngs``, the folder
    ``context.workspace / <operator name>`` holding ``<view>.png`` per view. The folder is
    filled under a temporary name and renamed into place, so it is never half written.

    Args:
        name: Operator name in its pipeline.
        views: Any of ``"axial"``, ``"coronal"``, ``"sagittal"``, ``"mip"``.
        window: ``(level, width)``, a preset name (``"lung"``, ``"soft"``, ``"bone"``: for
            Hounsfield units) or ``None`` for the 0.5-99.5 percentile range of the image.
        slice: ``"center"`` or ``"mask-centroid"`` (the centre of all labelled voxels; the
            volume centre when the mask is empty or absent).
        alpha: Opacity of the label colours inside a label (0..1).
        colors: ``{label: (r, g, b)}``; other labels cycle through :data:`DEFAULT_COLORS`.
        outline: Draw each label's outline in its full colour.
        mip_axis: Direction of the maximum-intensity projection: ``"coronal"`` (front to
            back), ``"sagittal"`` or ``"axial"``.
        **params: Further operator parameters (``thread_safe``, ``max_concurrency``).
    """

    def __init__(self, name: str | None = None, /, *, views: Sequence[str] = VIEWS,
                 window: tuple[float, float] | str | None = None, slice: str = "center",
                 alpha: float = 0.4, colors: Mapping[int, tuple[int, int, int]] | None = None,
                 outline: bool = True, mip_axis: str = "coronal", **params: Any) -> None:
        super().__init__(name, **params)
        self.views = tuple(views)
        _check_choices(self.name, "views", self.views, VIEWS)
        _check_choices(self.name, "slice", (slice,), SLICE_MODES)
        _check_choices(self.name, "mip_axis", (mip_axis,), tuple(_AXES))
        if not self.views:
            raise ValueError(f"operator '{self.name}': views is empty; choose from "
                             f"{', '.join(VIEWS)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"operator '{self.name}': alpha must be in [0, 1], got {alpha}")
        self.window = _parse_window(self.name, window)
        self.slice, self.alpha, self.outline, self.mip_axis = slice, alpha, outline, mip_axis
        self.colors = {int(k): tuple(int(c) for c in v) for k, v in (colors or {}).items()}

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``image`` (and optional ``mask``, ``meta``) in, ``pngs`` (a folder) out."""
        spec.input("image", shape=(-1, -1, -1), description="intensities [k, j, i]")
        spec.input("mask", shape=(-1, -1, -1), optional=True, description="labels, 0 = none")
        spec.input("meta", kind="object", optional=True, description="VolumeMeta (spacing)")
        spec.output("pngs", kind="path", format="png", description="folder of <view>.png")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Render every view and publish the folder."""
        image, mask, meta = inputs["image"], inputs["mask"], inputs["meta"]
        if mask is not None and tuple(mask.shape) != tuple(image.shape):
            raise ValueError(f"operator '{self.name}': mask shape {tuple(mask.shape)} differs "
                             f"from image shape {tuple(image.shape)}")
        if context.workspace is None:
            raise ValueError(f"operator '{self.name}' writes files and needs a job workspace: "
                             "submit the job with Runtime.submit(..., workspace=DIR)")
        lo, hi = self.window_range(image)
        center = self._center(image, mask)
        folder = Path(context.workspace) / self.name
        from PIL import Image  # loaded at the first job: an idle server stays small

        planes = _planes_to_host([self.view_planes(image, mask, view, center)
                                  for view in self.views])
        with _staging(folder) as staging:
            for view, (grey_plane, label_plane) in zip(self.views, planes, strict=True):
                grey, labels = self.finish_view(grey_plane, label_plane, meta, view, (lo, hi))
                rgb = overlay(grey, labels, self.colors, self.alpha, outline=self.outline)
                Image.fromarray(rgb).save(staging / f"{view}.png", format="PNG")
        outputs["pngs"] = folder

    def window_range(self, image: Any) -> tuple[float, float]:
        """Return the ``(low, high)`` intensities mapped to black and white."""
        if self.window is not None:
            level, width = self.window
            return level - width / 2, level + width / 2
        xp = get_array_module(image)
        step = max(1, round((image.size / 2_000_000) ** (1 / 3)))  # enough voxels for percentiles
        sample = image[::step, ::step, ::step].astype(xp.float32)
        lo, hi = (float(v) for v in xp.percentile(sample, xp.asarray([0.5, 99.5])))
        return (lo, hi) if hi > lo else (lo, lo + 1.0)

    def render_view(self, image: Any, mask: Any, meta: VolumeMeta | None, view: str,
                    center: tuple[int, int, int], window: tuple[float, float],
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Return one view as host arrays: grey ``uint8`` and labels (or ``None``), square pixels.

        Args:
            image: The volume ``[k, j, i]``.
            mask: Labels of the same shape, or ``None``.
            meta: Geometry (spacing, direction), or ``None`` for 1 mm cubes, head at high ``k``.
            view: One of :data:`VIEWS`.
            center: ``(k, j, i)`` voxel the slice views go through.
            window: ``(low, high)`` intensities mapped to 0 and 255.
        """
        planes = _planes_to_host([self.view_planes(image, mask, view, center)])[0]
        return self.finish_view(*planes, meta, view, window)

    def view_planes(self, image: Any, mask: Any, view: str, center: tuple[int, int, int],
                    ) -> tuple[Any, Any]:
        """Return the ``(image, labels)`` planes of one view, on the volume's device."""
        axis = _AXES[self.mip_axis if view == "mip" else view][0]
        index = None if view == "mip" else center[axis]
        return _cut(image, axis, index), None if mask is None else _cut(mask, axis, index)

    def finish_view(self, grey_plane: np.ndarray, label_plane: np.ndarray | None,
                    meta: VolumeMeta | None, view: str, window: tuple[float, float],
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Window, orient and square the host planes of one view (see :meth:`render_view`)."""
        rows, cols = _AXES[self.mip_axis if view == "mip" else view][1:]
        grey = np.asarray(grey_plane).astype(np.float32)
        labels = None if label_plane is None else np.asarray(label_plane).astype(np.int32)
        lo, hi = window
        grey = np.clip((grey - lo) * (255.0 / (hi - lo)), 0.0, 255.0)
        spacing = tuple(float(s) for s in meta.spacing) if meta is not None else (1.0, 1.0, 1.0)
        if rows == 0 and _head_at_high_k(meta):
            grey = grey[::-1]
            labels = None if labels is None else labels[::-1]
        grey, labels = _square_pixels(grey, labels, (spacing[rows], spacing[cols]))
        return np.rint(grey).astype(np.uint8), labels

    def _center(self, image: Any, mask: Any) -> tuple[int, int, int]:
        middle = tuple(int(n) // 2 for n in image.shape)
        if self.slice == "center" or mask is None:
            return middle  # type: ignore[return-value]
        xp = get_array_module(mask)
        where = xp.nonzero(mask)
        if where[0].size == 0:
            return middle  # type: ignore[return-value]
        k, j, i = (round(float(idx.mean())) for idx in where)
        return k, j, i


def overlay(grey: np.ndarray, labels: np.ndarray | None, colors: Mapping[int, Sequence[int]],
            alpha: float, *, outline: bool = True) -> np.ndarray:
    """Blend label colours into a grey image.

    Args:
        grey: ``uint8`` image ``(H, W)``.
        labels: Integer labels ``(H, W)`` (0 = none), or ``None``.
        colors: ``{label: (r, g, b)}``; missing labels cycle through :data:`DEFAULT_COLORS`.
        alpha: Colour weight inside a label.
        outline: Paint each label's boundary pixels in the full colour.

    Returns:
        ``uint8`` RGB image ``(H, W, 3)``; unlabelled pixels keep ``r == g == b == grey``.
    """
    rgb = np.repeat(grey[:, :, None], 3, axis=2).astype(np.float32)
    if labels is not None:
        for label in np.unique(labels):
            if label == 0:
                continue
            color = np.asarray(label_color(int(label), colors), dtype=np.float32)
            region = labels == label
            rgb[region] = (1.0 - alpha) * rgb[region] + alpha * color
            if outline:
                from scipy import ndimage

                rgb[region & ~ndimage.binary_erosion(region)] = color
    return np.rint(rgb).astype(np.uint8)


def label_color(label: int, colors: Mapping[int, Sequence[int]] | None = None,
                ) -> tuple[int, int, int]:
    """Return the RGB colour of ``label``: from ``colors``, else from :data:`DEFAULT_COLORS`."""
    if colors and label in colors:
        r, g, b = colors[label]
        return int(r), int(g), int(b)
    return DEFAULT_COLORS[(label - 1) % len(DEFAULT_COLORS)]


def _cut(volume: Any, axis: int, index: int | None) -> Any:
    """Return the plane ``index`` across ``axis``, or the maximum along ``axis`` if ``None``."""
    if index is None:
        return volume.max(axis=axis)
    return get_array_module(volume).take(volume, index, axis=axis)


def _square_pixels(grey: np.ndarray, labels: np.ndarray | None, spacing: tuple[float, float],
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample a view to square pixels of the finer spacing (linear grey, nearest labels)."""
    finest = min(spacing)
    factors = (spacing[0] / finest, spacing[1] / finest)
    if all(abs(f - 1.0) < 1e-6 for f in factors):
        return grey, labels
    from scipy import ndimage

    grey = ndimage.zoom(grey, factors, order=1, mode="nearest", grid_mode=True)
    if labels is not None:
        labels = ndimage.zoom(labels, factors, order=0, mode="nearest", grid_mode=True)
    return grey, labels


def _head_at_high_k(meta: VolumeMeta | None) -> bool:
    """Whether ``k`` runs towards the head (LPS +z), so views along ``k`` need flipping.

    Without geometry, assume a standard axial series sorted along its normal (it does).
    """
    if meta is None:
        return True
    return float(np.asarray(meta.direction, dtype=float)[2, 2]) >= 0.0


def _planes_to_host(planes: list[tuple[Any, Any]]) -> list[tuple[np.ndarray, Any]]:
    """Bring every view's planes to the host in one copy (they are tiny next to the volume).

    NumPy planes come back as they are. CuPy planes are packed, as float64 (exact for the
    int16/float32 images and integer labels rendered here), into one device buffer, copied
    with one :func:`~clara_rt.arrays.to_host` and split again.
    """
    flat = [p for pair in planes for p in pair if p is not None]
    if all(isinstance(p, np.ndarray) for p in flat):
        return planes
    xp = get_array_module(*flat)
    packed = to_host(xp.concatenate([xp.asarray(p, dtype=xp.float64).ravel() for p in flat]))
    out: list[tuple[np.ndarray, Any]] = []
    at = 0
    for pair in planes:
        host: list[Any] = []
        for p in pair:
            if p is None:
                host.append(None)
                continue
            host.append(packed[at:at + p.size].reshape(p.shape).astype(p.dtype))
            at += p.size
        out.append((host[0], host[1]))
    return out


def _parse_window(operator: str, window: tuple[float, float] | str | None,
                  ) -> tuple[float, float] | None:
    if window is None:
        return None
    if isinstance(window, str):
        if window not in WINDOW_PRESETS:
            raise ValueError(f"operator '{operator}': unknown window preset {window!r}; presets "
                             f"are: {', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[window]
    level, width = (float(v) for v in window)
    if width <= 0:
        raise ValueError(f"operator '{operator}': window width must be > 0, got {width}")
    return level, width


def _check_choices(operator: str, what: str, given: Sequence[str], valid: Sequence[str]) -> None:
    bad = [g for g in given if g not in valid]
    if bad:
        raise ValueError(f"operator '{operator}': unknown {what} {', '.join(map(repr, bad))}; "
                         f"valid: {', '.join(valid)}")


@contextlib.contextmanager
def _staging(folder: Path) -> Any:
    """Yield an empty sibling folder; on success it replaces ``folder``, on failure it goes."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: it makes the folder 0700, and the renamed folder would keep that
    # while every other output honours the umask (0755 under the usual 022).
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    staging.mkdir(mode=0o777)
    try:
        yield staging
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
