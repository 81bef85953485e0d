"""The nibabel-free NIfTI-1 writer (``operators/io/_nifti1.py``) against nibabel itself.

An uncompressed file must be byte for byte what nibabel writes for the same image (qform and
sform code 1, units mm) across dtypes, byte orders and affines (axial, flipped, oblique, with
a negative determinant); a ``.nii.gz`` must decompress to those bytes.
"""

from __future__ import annotations

import gzip
import itertools
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from clara_rt.bench import checkout_env
from clara_rt.operators.io import write_nifti
from clara_rt.operators.io._nifti1 import write_nifti1
from clara_rt.operators.volume import VolumeMeta


def _rotation(seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([[a*a + b*b - c*c - d*d, 2 * (b*c - a*d), 2 * (b*d + a*c)],
                     [2 * (b*c + a*d), a*a + c*c - b*b - d*d, 2 * (c*d - a*b)],
                     [2 * (b*d - a*c), 2 * (c*d + a*b), a*a + d*d - b*b - c*c]])


AFFINES = {
    "axial-lps": np.diag([-0.7, -0.7, 1.25, 1.0]),
    "identity": np.eye(4),
    "oblique": _rotation(1),
    "oblique-flipped": _rotation(2) @ np.diag([1.0, 1.0, -1.0]),
}


def _nibabel_bytes(data: np.ndarray, affine: np.ndarray, path: Path) -> bytes:
    image = nib.Nifti1Image(data.transpose(2, 1, 0), affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    nib.save(image, path)
    return path.read_bytes()


@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<f4", "|u1", "<i4", "<u2", "<f8"])
def test_bytes_equal_nibabel(tmp_path: Path, name: str, dtype: str) -> None:
    rotation = AFFINES[name][:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.8, 1.25])
    affine[:3, 3] = [-120.5, 33.25, 7.0]
    data = np.random.default_rng(0).integers(-100, 100, (4, 5, 6)).astype(dtype)
    write_nifti1(data, affine, tmp_path / "ours.nii")
    assert (tmp_path / "ours.nii").read_bytes() == _nibabel_bytes(data, affine,
                                                                   tmp_path / "nib.nii")
    write_nifti1(data, affine, tmp_path / "ours.nii.gz")
    assert gzip.decompress((tmp_path / "ours.nii.gz").read_bytes()) == (
        tmp_path / "nib.nii").read_bytes()


def test_axis_aligned_headers_equal_nibabel(tmp_path: Path) -> None:
    """All 48 axial/coronal/sagittal orientations, flips included: half turns and zero
    components of the quaternion carry LAPACK's signs in nibabel's header, and in ours."""
    data = np.zeros((3, 4, 5), np.int16)
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            affine = np.eye(4)
            affine[:3, :3] = 0.0
            for column, row in enumerate(perm):
                affine[row, column] = signs[column] * (0.7, 0.8, 1.25)[column]
            write_nifti1(data, affine, tmp_path / "ours.nii")
            assert (tmp_path / "ours.nii").read_bytes() == _nibabel_bytes(
                data, affine, tmp_path / "nib.nii"), (perm, signs)


def test_non_contiguous_and_bool_volumes(tmp_path: Path) -> None:
    volume = np.arange(2 * 3 * 4, dtype=np.int16).reshape(4, 3, 2).transpose(2, 1, 0)
    meta = VolumeMeta(spacing=(2.0, 0.5, 0.5), origin=(1.0, 2.0, 3.0))
    write_nifti(volume, meta, tmp_path / "view.nii.gz")
    image = nib.load(tmp_path / "view.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), volume.transpose(2, 1, 0))
    np.testing.assert_allclose(image.affine, meta.affine_ras)
    write_nifti(volume > 10, meta, tmp_path / "mask.nii")
    assert nib.load(tmp_path / "mask.nii").get_data_dtype() == np.uint8
    with pytest.raises(ValueError, match=r"^NIfTI-1 cannot store dtype complex64$"):
        write_nifti1(np.zeros((1, 1, 1), np.complex64), np.eye(4), tmp_path / "c.nii")


def test_writing_does_not_import_nibabel_or_pydicom(tmp_path: Path) -> None:
    code = ("import sys, numpy as np\n"
            "from clara_rt.operators.io import write_nifti\n"
            f"write_nifti(np.zeros((2, 3, 4), np.int16), None, {str(tmp_path / 'z.nii')!r})\n"
            "assert 'nibabel' not in sys.modules and 'pydicom' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=checkout_env())
    assert nib.load(tmp_path / "z.nii").shape == (4, 3, 2)
