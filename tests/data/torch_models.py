"""Small TorchScript models built at test time (no downloaded weights) and MONAI-style bundles.

* :class:`TinyUNet3d`: a two-level 3-D UNet (conv, pool, transposed conv, skip concat, 1x1x1
  head), ``[N, 1, D, H, W]`` float32 -> ``[N, 2, D, H, W]`` logits, D/H/W even. Seeded weights.
* :func:`save_unet`: script it and save it, with MONAI's ``metadata.json`` stored inside the
  archive (as ``save_net_with_metadata`` does) unless ``metadata=False``.
* :func:`make_bundle`: a bundle folder ``configs/metadata.json`` + ``configs/inference.json`` +
  ``models/model.ts``.
* :func:`save_identity`: ``forward(x) = x``, to show that arrays go through without a copy.

``torch.jit.script`` / ``save`` warn that they are deprecated on torch >= 2.10; the builders
silence that one warning (tests run with warnings as errors).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

SPATIAL = 32
"""The spatial size the saved UNet's metadata declares (``[SPATIAL] * 3``)."""


class TinyUNet3d(nn.Module):
    """``[N, 1, D, H, W]`` -> ``[N, classes, D, H, W]``: one down and one up level with a skip."""

    def __init__(self, channels: int = 4, classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.enc = nn.Sequential(nn.Conv3d(1, channels, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.MaxPool3d(2), nn.Conv3d(channels, 2 * channels, 3,
                                                             padding=1), nn.ReLU())
        self.up = nn.ConvTranspose3d(2 * channels, channels, 2, stride=2)
        self.head = nn.Conv3d(2 * channels, classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skip = self.enc(image)
        return self.head(torch.cat([skip, self.up(self.down(skip))], dim=1))


class Identity(nn.Module):
    """Returns its input: the same tensor, so the same memory."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def network_data_format(spatial: int | str = SPATIAL, classes: int = 2) -> dict[str, Any]:
    """The MONAI ``network_data_format`` of :class:`TinyUNet3d`."""
    shape = [spatial] * 3
    return {
        "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT",
                             "num_channels": 1, "spatial_shape": shape, "dtype": "float32",
                             "value_range": [0, 1], "is_patch_data": True}},
        "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": classes,
                             "spatial_shape": shape, "dtype": "float32", "value_range": [0, 1],
                             "is_patch_data": True,
                             "channel_def": {"0": "background", "1": "Lung"}}},
    }


def script(module: nn.Module) -> Any:
    """``torch.jit.script(module.eval())``, its deprecation warning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module.eval())


def save_scripted(scripted: Any, path: str | Path, metadata: dict[str, Any] | None = None
                  ) -> Path:
    """Save a scripted module (with ``metadata.json`` inside when given); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {} if metadata is None else {"metadata.json": json.dumps(metadata)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, str(path), _extra_files=extra)
    return path


def save_unet(path: str | Path, *, metadata: bool = True, spatial: int | str = SPATIAL,
              seed: int = 0) -> Path:
    """Script :class:`TinyUNet3d` and save it to ``path``; return the path."""
    meta = {"name": "tiny_unet", "version": "0.1.0",
            "network_data_format": network_data_format(spatial)} if metadata else None
    return save_scripted(script(TinyUNet3d(seed=seed)), path, meta)


def save_identity(path: str | Path) -> Path:
    """Save :class:`Identity` with metadata declaring float32 ``[N, 1, -1, -1, -1]``."""
    ndf = network_data_format("16*n", classes=1)
    return save_scripted(script(Identity()), path, {"network_data_format": ndf})


def make_bundle(root: str | Path, *, roi: int = SPATIAL, scale: tuple[float, float] | None = (
        -1000.0, 1000.0), seed: int = 0) -> Path:
    """Write a MONAI-style bundle of :class:`TinyUNet3d` under ``root``; return ``root``.

    ``inference.json`` has a ``SlidingWindowInferer`` over ``roi``, ``ScaleIntensityRanged``
    from ``scale`` to [0, 1] (left out when ``None``), a transform clara-rt does not honour
    (``Orientationd``) and ``AsDiscreted(argmax=True)``.
    """
    root = Path(root)
    (root / "configs").mkdir(parents=True, exist_ok=True)
    metadata = {"schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/"
                          "download/0.8.1/meta_schema_20220324.json",
                "name": "Tiny UNet bundle", "version": "0.2.0",
                "network_data_format": network_data_format("16*n")}
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    pre: list[dict[str, Any]] = [{"_target_": "LoadImaged", "keys": "image"},
                                 {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"}]
    if scale is not None:
        pre.append({"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": scale[0],
                    "a_max": scale[1], "b_min": 0.0, "b_max": 1.0, "clip": True})
    inference = {
        "roi_size": [roi] * 3,
        "preprocessing": {"_target_": "Compose", "transforms": pre},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": "@roi_size",
                    "sw_batch_size": 4, "overlap": 0.5},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]},
    }
    (root / "configs" / "inference.json").write_text(json.dumps(inference, indent=2))
    save_scripted(script(TinyUNet3d(seed=seed)), root / "models" / "model.ts")
    return root
