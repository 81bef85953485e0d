"""MONAI bundles: :func:`load_bundle` reads a bundle folder into a :class:`Bundle`.

A bundle is a folder with ``configs/metadata.json`` and a TorchScript model ``models/model.ts``
(MONAI's layout). clara-rt reads:

* ``metadata.json`` -> ``network_data_format``: for every input and output its ``type``,
  ``format``, ``num_channels``, ``spatial_shape``, ``dtype`` and ``value_range``. Ports are
  declared from these: a tensor is ``[N, num_channels, *spatial_shape]`` with ``N`` the batch;
  symbolic sizes such as ``"16*n"`` become ``-1`` (any size). ``name`` and ``version`` name the
  model.
* ``configs/inference.json`` (or ``.yaml``), only these parts (:class:`InferenceSettings`):
  the ``inferer`` (``SlidingWindowInferer``: ``roi_size``, ``sw_batch_size``, ``overlap``,
  ``mode``; ``SimpleInferer``: one call), ``ScaleIntensityRanged`` in ``preprocessing`` (when it
  maps ``[a_min, a_max]`` to ``[0, 1]`` with ``clip``) and ``AsDiscreted(argmax=True)`` in
  ``postprocessing``. ``@name`` references to top-level keys are resolved; ``$`` expressions are
  not evaluated.

**Arbitrary MONAI transform chains are not run**: MONAI is not imported. Every transform
clara-rt does not honour is listed in :attr:`InferenceSettings.ignored`, which ``clara-rt bundle``
prints into the pipeline it writes, so what the pipeline leaves out is visible.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clara_rt.backends.base import TensorSpec
from clara_rt.errors import BackendError, BackendUnavailableError

__all__ = ["METADATA", "MODEL_FILES", "Bundle", "InferenceSettings", "TensorInfo",
           "bundle_root", "is_bundle", "load_bundle", "parse_network_data_format"]

METADATA = "configs/metadata.json"
"""Where a bundle keeps its metadata, relative to its root."""

MODEL_FILES = ("models/model.ts", "models/model.pt")
"""TorchScript files looked for in a bundle, in this order."""

_INFERENCE_CONFIGS = ("configs/inference.json", "configs/inference.yaml", "configs/inference.yml")
_DTYPES = {"float": "float32", "double": "float64", "half": "float16", "int": "int32",
           "long": "int64", "bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16",
           "int32": "int32", "int64": "int64", "float16": "float16", "float32": "float32",
           "float64": "float64"}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One entry of ``network_data_format`` ``inputs`` / ``outputs``.

    Attributes:
        name: The key (``"image"``, ``"pred"``).
        type: ``"image"``, ``"probabilities"``...
        format: ``"hounsfield"``, ``"magnitude"``, ``"segmentation"``...
        num_channels: Channels (``-1`` when not given).
        spatial_shape: Sizes per spatial axis, ``-1`` for symbolic ones (``"16*n"``).
        dtype: NumPy dtype name.
        value_range: ``(low, high)`` when given.
        modality: ``"CT"``, ``"MR"``... ('' when not given).
        channel_def: ``(channel, name)`` pairs (``{"1": "spleen"}``), in channel order.
    """

    name: str
    type: str
    format: str
    num_channels: int
    spatial_shape: tuple[int, ...]
    dtype: str
    value_range: tuple[float, float] | None = None
    modality: str = ""
    channel_def: tuple[tuple[int, str], ...] = ()

    def tensor(self) -> TensorSpec:
        """Return the tensor ``[N, num_channels, *spatial_shape]`` (``N`` = -1, the batch)."""
        return TensorSpec(self.name, self.dtype, (-1, self.num_channels, *self.spatial_shape))


@dataclass(frozen=True, slots=True)
class InferenceSettings:
    """The parts of ``inference.json`` that clara-rt honours (module docstring).

    Attributes:
        roi_size: Sliding-window size, or ``None`` for one call on the whole input.
        sw_batch_size: Windows per call.
        overlap: Sliding-window overlap.
        mode: Blend, ``"gaussian"`` or ``"constant"``.
        scale_range: ``(a_min, a_max)`` of a ``ScaleIntensityRanged`` to ``[0, 1]``, clipped.
        argmax: ``AsDiscreted(argmax=True)`` follows the network.
        ignored: Transforms and settings found but not honoured, for the user to see.
    """

    roi_size: tuple[int, ...] | None = None
    sw_batch_size: int = 1
    overlap: float = 0.25
    mode: str = "constant"
    scale_range: tuple[float, float] | None = None
    argmax: bool = False
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Bundle:
    """A MONAI bundle folder, read by :func:`load_bundle`.

    Attributes:
        root: The bundle folder.
        name: ``metadata.json``'s ``name`` (else the folder name).
        version: ``metadata.json``'s ``version`` ('' when missing).
        model_file: The TorchScript file.
        inputs: ``network_data_format`` inputs, in order.
        outputs: ``network_data_format`` outputs, in order.
        inference: What clara-rt takes from ``inference.json``.
    """

    root: Path
    name: str
    version: str
    model_file: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    inference: InferenceSettings = field(default_factory=InferenceSettings)


def bundle_root(path: str | os.PathLike[str]) -> Path | None:
    """Return the bundle folder ``path`` is (or whose ``models/`` file it is), else ``None``."""
    p = Path(path)
    if p.is_dir():
        return p if (p / METADATA).is_file() else None
    if p.parent.name == "models" and (p.parent.parent / METADATA).is_file():
        return p.parent.parent
    return None


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """Return whether ``path`` is a bundle folder (it holds ``configs/metadata.json``)."""
    p = Path(path)
    return p.is_dir() and (p / METADATA).is_file()


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read the bundle at ``path`` (its folder, or its ``models/model.ts``).

    Raises:
        BackendUnavailableError: No bundle there, or no model file in it.
        BackendError: ``metadata.json`` or ``inference.json`` cannot be parsed, or
            ``network_data_format`` is missing or malformed (the message names the file).
    """
    root = bundle_root(path)
    if root is None:
        raise BackendUnavailableError(f"not a MONAI bundle: {path} (no {METADATA})",
                                      model=Path(path).name, url=os.fspath(path))
    meta_file = root / METADATA
    meta = _read_config(meta_file)
    name = str(meta.get("name") or root.name)
    given = Path(path)
    model = given if given.is_file() else next(
        (root / m for m in MODEL_FILES if (root / m).is_file()), None)
    if model is None:
        raise BackendUnavailableError(f"bundle '{name}' ({root}) has no TorchScript model: "
                                      f"expected {' or '.join(MODEL_FILES)}", model=name,
                                      url=os.fspath(root))
    ndf = meta.get("network_data_format")
    if not isinstance(ndf, Mapping):
        raise BackendError(f"{meta_file}: no 'network_data_format' object; clara-rt declares "
                           "the model's ports from it", model=name, url=os.fspath(root))
    inputs, outputs = parse_network_data_format(ndf, where=str(meta_file))
    return Bundle(root, name, str(meta.get("version") or ""), model, inputs, outputs,
                  _inference_settings(root))


def parse_network_data_format(ndf: Mapping[str, Any], *, where: str
                              ) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Return the inputs and outputs of a ``network_data_format`` object.

    Args:
        ndf: The object (``{"inputs": {...}, "outputs": {...}}``).
        where: Named in errors (the file it came from).

    Raises:
        BackendError: A section is missing or empty, or an entry has a bad field.
    """
    sections = []
    for section in ("inputs", "outputs"):
        entries = ndf.get(section)
        if not isinstance(entries, Mapping) or not entries:
            raise BackendError(f"{where}: network_data_format has no '{section}' entries")
        sections.append(tuple(_tensor_info(f"{where}: network_data_format.{section}.{key}",
                                           str(key), value) for key, value in entries.items()))
    return sections[0], sections[1]


# --- private ------------------------------------------------------------------------------


def _tensor_info(where: str, name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, Mapping):
        raise BackendError(f"{where}: expected an object, got {entry!r}")
    dtype = _DTYPES.get(str(entry.get("dtype", "float32")).lower().removeprefix("torch."))
    if dtype is None:
        raise BackendError(f"{where}: dtype {entry.get('dtype')!r} is not one of "
                           f"{', '.join(sorted(_DTYPES))}")
    spatial = entry.get("spatial_shape", [])
    if not isinstance(spatial, list | tuple):
        raise BackendError(f"{where}: spatial_shape must be a list, got {spatial!r}")
    channels = entry.get("num_channels", -1)
    if not isinstance(channels, int) or isinstance(channels, bool):
        raise BackendError(f"{where}: num_channels must be an integer, got {channels!r}")
    vr = entry.get("value_range")
    value_range = (float(vr[0]), float(vr[1])) if isinstance(vr, list | tuple) and len(
        vr) == 2 and all(isinstance(v, int | float) for v in vr) else None
    defs = entry.get("channel_def")
    channel_def = tuple(sorted((int(k), str(v)) for k, v in defs.items() if str(k).isdigit())
                        ) if isinstance(defs, Mapping) else ()
    return TensorInfo(name, str(entry.get("type", "image")), str(entry.get("format", "")),
                      channels, tuple(_size(d) for d in spatial), dtype, value_range,
                      str(entry.get("modality", "")), channel_def)


def _size(dim: Any) -> int:
    """``96`` -> 96; ``"16*n"``, ``"*"``, ``-1`` -> -1 (any size)."""
    if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
        return dim
    if isinstance(dim, str) and dim.isdigit():
        return int(dim)
    return -1


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # OSError, json.JSONDecodeError, yaml.YAMLError
        raise BackendError(f"{path}: cannot be read as a bundle config: {exc}",
                           url=os.fspath(path)) from exc
    if not isinstance(data, dict):
        raise BackendError(f"{path}: expected a JSON object at the top", url=os.fspath(path))
    return data


def _inference_settings(root: Path) -> InferenceSettings:
    config_file = next((root / c for c in _INFERENCE_CONFIGS if (root / c).is_file()), None)
    if config_file is None:
        return InferenceSettings()
    config = _read_config(config_file)
    ignored: list[str] = []
    fields: dict[str, Any] = {}
    inferer = _resolve(config, config.get("inferer"))
    if isinstance(inferer, Mapping):
        target = _target(inferer)
        if target == "SlidingWindowInferer":
            roi = _resolve(config, inferer.get("roi_size"))
            if isinstance(roi, list | tuple) and all(isinstance(r, int) for r in roi):
                fields["roi_size"] = tuple(int(r) for r in roi)
            else:
                ignored.append(f"inferer.roi_size {roi!r} (not a list of integers)")
            fields["sw_batch_size"] = int(_resolve(config, inferer.get("sw_batch_size", 1)))
            fields["overlap"] = float(_resolve(config, inferer.get("overlap", 0.25)))
            mode = _resolve(config, inferer.get("mode", "constant"))
            fields["mode"] = mode if mode in ("gaussian", "constant") else "constant"
        elif target != "SimpleInferer":
            ignored.append(f"inferer {target}")
    for transform in _transforms(config, "preprocessing"):
        target = _target(transform)
        if target == "ScaleIntensityRanged" and _unit_scale(config, transform):
            fields["scale_range"] = (float(_resolve(config, transform["a_min"])),
                                     float(_resolve(config, transform["a_max"])))
        elif target not in ("LoadImaged", "EnsureChannelFirstd", "EnsureTyped",
                            "EnsureChannelFirst", "LoadImage"):
            ignored.append(f"preprocessing {target}")
    for transform in _transforms(config, "postprocessing"):
        target = _target(transform)
        if target == "AsDiscreted" and _resolve(config, transform.get("argmax")) is True:
            fields["argmax"] = True
        elif target not in ("Activationsd", "SaveImaged", "EnsureTyped"):
            ignored.append(f"postprocessing {target}")
    return InferenceSettings(**fields, ignored=tuple(ignored))


def _target(obj: Mapping[str, Any]) -> str:
    return re.split(r"[.:#]", str(obj.get("_target_", "?")))[-1]


def _transforms(config: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    chain = _resolve(config, config.get(key))
    if isinstance(chain, Mapping):
        chain = _resolve(config, chain.get("transforms", []))
    if not isinstance(chain, list):
        return []
    return [t for t in (_resolve(config, t) for t in chain) if isinstance(t, Mapping)]


def _unit_scale(config: Mapping[str, Any], transform: Mapping[str, Any]) -> bool:
    values = [_resolve(config, transform.get(k)) for k in ("a_min", "a_max", "b_min", "b_max")]
    if not all(isinstance(v, int | float) for v in values):
        return False
    return (values[2], values[3]) == (0, 1) and _resolve(config, transform.get("clip")) is True


def _resolve(config: Mapping[str, Any], value: Any, depth: int = 0) -> Any:
    """Follow ``"@key"`` references to top-level keys (``"@key#sub"`` one level down)."""
    if isinstance(value, str) and value.startswith("@") and depth < 8:
        key, _, sub = value[1:].partition("#")
        target = config.get(key)
        if sub and isinstance(target, Mapping):
            target = target.get(sub)
        return _resolve(config, target, depth + 1)
    return value
