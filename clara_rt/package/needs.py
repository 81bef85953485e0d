"""What a pipeline needs on the target: extras, custom operator code, packages, warnings.

:func:`inspect_pipeline` reads a definition as ``clara-rt validate`` does (errors carry
``path:line:column``) and decides:

* **extras** of clara-rt: ``server`` and ``dicom-net`` always; ``onnx`` for inference operators
  that run ONNX models in-process (or with ``--models``); ``triton`` for operators with
  ``services:``, Clara 0.6 ``models:`` or an inference URL; ``gpu`` only when asked.
* **sources**: the top-level package folder (or single file) of every ``clara-rt:`` class whose
  module is not part of ``clara_rt``, looked up next to the pipeline file first, then on
  ``sys.path``. Modules installed in site-packages are not copied: their distribution becomes a
  pinned **requirement** downloaded with the rest, as does the distribution behind a
  ``clara_rt.images`` entry point.
* **warnings**: command operators (the command must exist on the target), GPU requests without
  ``--gpu``, undefined variables.

Every ``clara-rt:`` class is imported (with the source folders on ``sys.path``) and must be an
:class:`~clara_rt.Operator`; a pipeline without inference operators is also built, which checks
its ports, as ``validate`` does. Inference pipelines are not built: that would load the models or
call the Triton server.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from clara_rt.backends.monai_bundle import METADATA
from clara_rt.definition.build import ENTRY_POINT_GROUP, build_pipeline, unresolved
from clara_rt.definition.schema import OperatorDef, PipelineDefinition, parse_definition
from clara_rt.operator import Operator

__all__ = ["ALWAYS", "OPTIONAL_EXTRAS", "PipelineNeeds", "inspect_pipeline"]

ALWAYS = ("server", "dicom-net")
OPTIONAL_EXTRAS = ("onnx", "triton", "gpu", "dicom", "torch")
"""Extras ``--extra`` may add (``dicom``: decoders of compressed transfer syntaxes)."""
_INFERENCE = "clara_rt.operators.inference"


@dataclass(frozen=True)
class PipelineNeeds:
    """What :func:`inspect_pipeline` found.

    Attributes:
        definition: The parsed definition.
        extras: clara-rt extras to install, sorted.
        reasons: Extra -> why it is included.
        sources: Files or package folders to copy into ``pipeline/operators/``.
        requirements: Pinned distributions (``name==version``) behind operator classes.
        warnings: Things the user should know; the bundle is still written.
    """

    definition: PipelineDefinition
    extras: tuple[str, ...]
    reasons: dict[str, str]
    sources: tuple[Path, ...] = ()
    requirements: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def inspect_pipeline(path: Path, *, models: Path | None = None, gpu: bool = False,
                     extra: Sequence[str] = ()) -> PipelineNeeds:
    """Read, check and analyse the pipeline definition at ``path``.

    Args:
        path: The pipeline YAML.
        models: ``--models DIR`` (implies ``onnx``).
        gpu: ``--gpu``: add the ``gpu`` extra.
        extra: More extras asked for by name (from :data:`OPTIONAL_EXTRAS`).

    Raises:
        DefinitionError: The definition is invalid, an operator cannot run in clara-rt, or a
            ``clara-rt:`` class cannot be found or imported; with ``path:line:column``.
        ValueError: An unknown name in ``extra``.
    """
    bad = [name for name in extra if name not in OPTIONAL_EXTRAS]
    if bad:
        raise ValueError(f"unknown extra {', '.join(bad)}: choose from "
                         f"{', '.join(OPTIONAL_EXTRAS)}")
    definition = parse_definition(path, allow_undefined=True)
    missing = unresolved(definition)
    if missing:
        build_pipeline(definition, require_services=False)  # raises the listing message
    reasons = _extras(definition, models, gpu, extra)
    sources, requirements = _operator_code(definition, path.resolve().parent)
    with _on_path([p.parent for p in sources]):
        _check_classes(definition)
        if not {"onnx", "torch", "triton"} & set(reasons):
            build_pipeline(definition, require_services=False)
    return PipelineNeeds(definition=definition, extras=tuple(sorted(reasons)), reasons=reasons,
                         sources=sources, requirements=requirements,
                         warnings=_warnings(definition, gpu))


# --- extras ---------------------------------------------------------------------------------


def _extras(definition: PipelineDefinition, models: Path | None, gpu: bool,
            extra: Sequence[str]) -> dict[str, str]:
    reasons = dict.fromkeys(ALWAYS, "always")
    for name in extra:
        reasons[name] = "--extra"
    if gpu:
        reasons["gpu"] = "--gpu"
    if models is not None:
        reasons.setdefault("onnx", "--models")
    for op in definition.operators:
        kind = _inference_kind(op)
        if kind is not None:
            reasons.setdefault(kind, f"operator '{op.name}' ({op.loc})")
    return reasons


def _inference_kind(op: OperatorDef) -> str | None:
    """``"triton"``, ``"onnx"``, ``"torch"`` or ``None``, as InferenceOp picks its backend."""
    key = op.clara_rt
    if key is not None and key.operator and key.operator.startswith(_INFERENCE) and _is_torch(
            key.args):
        return "torch"
    if op.services or op.models:
        return "triton"
    if key is None or not key.operator or not key.operator.startswith(_INFERENCE):
        return None
    if key.operator.endswith(":ArgmaxOp"):
        return None
    args = key.args
    if args.get("backend") == "triton" or args.get("url"):
        return "triton"
    return "onnx"  # InferenceOp without a URL, OnnxClassifierOp


# --- operator code ----------------------------------------------------------------------------


def _is_torch(args: Mapping[str, Any]) -> bool:
    """Whether InferenceOp runs this model on torch: a TorchScript file or a bundle folder."""
    model = str(args.get("model") or "")
    if args.get("backend") == "torch":
        return True
    return bool(model) and not args.get("url") and (model.endswith((".ts", ".pt", ".pth"))
                                                    or Path(model, METADATA).is_file())


def _operator_code(definition: PipelineDefinition,
                   folder: Path) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    sources: dict[Path, None] = {}
    requirements: dict[str, None] = {}
    for op in definition.operators:
        key = op.clara_rt
        if key is not None and key.operator:
            top = key.operator.partition(":")[0].split(".")[0]
            if top == "clara_rt":
                continue
            found = _find_top_level(top, folder)
            if found is None:
                raise key.loc.error(
                    f"operator '{op.name}': cannot find module '{top}' of '{key.operator}' "
                    f"next to the pipeline ({folder}) or on sys.path")
            installed = _installed_distribution(top, found)
            if installed is not None:
                requirements[installed] = None
            else:
                sources[found] = None
        elif key is None and op.container is not None and op.container.image:
            dist = _entry_point_distribution(op)
            if dist is not None:
                requirements[dist] = None
    return tuple(sources), tuple(requirements)


def _find_top_level(name: str, folder: Path) -> Path | None:
    """The package folder or ``.py`` file of top-level module ``name``, or ``None``."""
    spec = PathFinder.find_spec(name, [str(folder), *sys.path])
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    if spec.origin and spec.origin.endswith(".py"):
        return Path(spec.origin).resolve()
    return None  # a compiled module outside a distribution: nothing to copy


def _installed_distribution(top: str, found: Path) -> str | None:
    if not any(part in ("site-packages", "dist-packages") for part in found.parts):
        return None
    names = importlib.metadata.packages_distributions().get(top, [])
    for name in names:
        return f"{name}=={importlib.metadata.version(name)}"
    return None


def _entry_point_distribution(op: OperatorDef) -> str | None:
    assert op.container is not None
    image, tag = op.container.image, op.container.tag
    names = [f"{image}:{tag}", f"{image}"] if tag else [f"{image}"]
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in names and ep.dist is not None and ep.dist.name != "clara-rt":
            return f"{ep.dist.name}=={ep.dist.version}"
    return None


@contextlib.contextmanager
def _on_path(folders: Sequence[Path]) -> Iterator[None]:
    added = [str(f) for f in dict.fromkeys(folders) if str(f) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            sys.path.remove(entry)


def _check_classes(definition: PipelineDefinition) -> None:
    for op in definition.operators:
        key = op.clara_rt
        if key is None or not key.operator:
            continue
        module, _, attr = key.operator.partition(":")
        try:
            found: object = importlib.import_module(module)
            for part in attr.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError, ValueError) as exc:
            raise key.loc.error(f"operator '{op.name}': cannot import '{key.operator}': "
                                f"{exc}") from exc
        if not (isinstance(found, type) and issubclass(found, Operator)):
            raise key.loc.error(f"operator '{op.name}': '{key.operator}' is not an Operator "
                                "subclass")


def _warnings(definition: PipelineDefinition, gpu: bool) -> tuple[str, ...]:
    notes = list(definition.warnings)
    for op in definition.operators:
        if op.clara_rt is None and op.container is not None and op.container.command:
            notes.append(f"{op.loc}: operator '{op.name}' runs the command "
                         f"{' '.join(op.container.command)!r}: it must exist on the target")
        if op.requests.get("gpu") and not gpu:
            notes.append(f"{op.loc}: operator '{op.name}' requests a GPU but the bundle has no "
                         "GPU packages: pass --gpu")
    return tuple(notes)
