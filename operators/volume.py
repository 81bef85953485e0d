"""Volume geometry shared by the imaging operators: :class:`VolumeMeta`.

Convention (every operator in this library follows it):

* A volume is an array indexed ``volume[k, j, i]``: ``k`` the slice (sorted along the slice
  normal), ``j`` the row, ``i`` the column, as DICOM stacks them. NumPy or CuPy.
* Its geometry travels beside it on an ``object`` port named ``meta``: a frozen
  :class:`VolumeMeta`. An operator that changes the grid (resample, crop, pad) emits a new one.
* ``affine_lps`` maps ``(i, j, k, 1)`` to patient coordinates in millimetres, LPS (DICOM);
  ``affine_ras`` is the same in RAS (NIfTI, nibabel).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["LPS_TO_RAS", "VolumeMeta"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class VolumeMeta:
    """Where a volume's voxels are in the patient, and where they came from.

    Attributes:
        spacing: ``(dk, dj, di)`` in mm: slice spacing, row spacing, column spacing (so it lines
            up with the array axes ``[k, j, i]``).
        origin: Patient position (LPS, mm) of voxel ``[0, 0, 0]``.
        direction: 3x3 matrix whose columns are the LPS unit vectors of the ``i``, ``j`` and
            ``k`` axes (row cosine, column cosine, slice normal).
        source: Tags a writer needs later (``StudyInstanceUID``, ``SeriesInstanceUID``,
            ``FrameOfReferenceUID``, ``PatientID``, ``Modality``, ``SOPInstanceUIDs`` in slice
            order, ...). Plain values only.
        files: Source files in slice order (empty when not read from files).
        warnings: What the reader found odd (irregular spacing, missing slices, skipped files).
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
                                                          (0.0, 0.0, 1.0))
    source: dict[str, Any] = field(default_factory=dict, compare=False)
    files: tuple[str, ...] = field(default=(), compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def affine_lps(self) -> np.ndarray:
        """4x4 matrix: ``(i, j, k, 1)`` -> LPS mm."""
        dk, dj, di = self.spacing
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(self.direction, dtype=float) @ np.diag([di, dj, dk])
        affine[:3, 3] = self.origin
        return affine

    @property
    def affine_ras(self) -> np.ndarray:
        """4x4 matrix: ``(i, j, k, 1)`` -> RAS mm (what NIfTI stores)."""
        return LPS_TO_RAS @ self.affine_lps

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(np.prod(self.spacing)) / 1000.0

    @classmethod
    def from_affine_ras(cls, affine: np.ndarray, **kwargs: Any) -> VolumeMeta:
        """Build from a NIfTI-style RAS affine of ``(i, j, k)`` (e.g. ``nibabel`` image.affine)."""
        lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
        axes = lps[:3, :3]
        sizes = np.linalg.norm(axes, axis=0)
        direction = axes / sizes
        return cls(spacing=(float(sizes[2]), float(sizes[1]), float(sizes[0])),
                   origin=tuple(float(v) for v in lps[:3, 3]),  # type: ignore[arg-type]
                   direction=tuple(tuple(float(v) for v in row) for row in direction),
                   **kwargs)

    def with_grid(self, *, spacing: tuple[float, float, float] | None = None,
                  offset: tuple[int, int, int] = (0, 0, 0)) -> VolumeMeta:
        """Return the meta of a resampled (new ``spacing``) and/or cropped grid.

        ``offset`` is the ``(k, j, i)`` index in this grid of the new grid's first voxel
        (negative for padding).
        """
        k, j, i = offset
        origin = self.affine_lps @ np.array([i, j, k, 1.0])
        return replace(self, spacing=spacing or self.spacing,
                       origin=tuple(float(v) for v in origin[:3]))  # type: ignore[arg-type]
