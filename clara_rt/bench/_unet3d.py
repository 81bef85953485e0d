"""The 3-D UNet of the ``inference`` scenario's in-process part (imports torch: load lazily).

:func:`write_models` scripts :class:`UNet3d` (seeded weights) to ``unet3d.ts`` with MONAI's
``metadata.json`` inside and, when ``onnx`` is installed, exports the same weights to
``unet3d.onnx`` with ``torch.onnx.export``: ONNX Runtime and torch then run one net.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["UNet3d", "write_models"]


class UNet3d(nn.Module):
    """``[N, 1, D, H, W]`` -> ``[N, 2, D, H, W]``: two levels, a skip, 8 and 16 channels."""

    def __init__(self, channels: int = 8, classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        c = channels
        self.enc = nn.Sequential(nn.Conv3d(1, c, 3, padding=1), nn.ReLU(),
                                 nn.Conv3d(c, c, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.MaxPool3d(2), nn.Conv3d(c, 2 * c, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose3d(2 * c, c, 2, stride=2)
        self.head = nn.Conv3d(2 * c, classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skip = self.enc(image)
        out: torch.Tensor = self.head(torch.cat([skip, self.up(self.down(skip))], dim=1))
        return out


def write_models(folder: Path, size: int) -> tuple[Path, Path | None]:
    """Write ``unet3d.ts`` (and ``unet3d.onnx`` when onnx is installed); return their paths."""
    net = UNet3d().eval()
    ndf = {"inputs": {"image": {"num_channels": 1, "spatial_shape": ["8*n"] * 3}},
           "outputs": {"pred": {"num_channels": 2, "spatial_shape": ["8*n"] * 3}}}
    ts = folder / "unet3d.ts"
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript and this exporter
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(net)
        torch.jit.save(scripted, str(ts), _extra_files={"metadata.json": json.dumps(
            {"network_data_format": ndf})})
        try:
            import onnx  # noqa: F401  (torch.onnx.export needs it)
        except ImportError:
            return ts, None
        onnx_path = folder / "unet3d.onnx"
        torch.onnx.export(net, (torch.zeros(1, 1, size, size, size),), str(onnx_path),
                          input_names=["image"], output_names=["pred"],
                          dynamic_axes={"image": {0: "n"}, "pred": {0: "n"}}, dynamo=False)
    return ts, onnx_path
