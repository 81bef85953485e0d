"""Public names of an operator package, imported from their modules on first use (PEP 562).

A pipeline that uses one operator of a package must not import the others (nor what they
import: SciPy, pydicom, onnxruntime, torch). Each package lists ``name -> module`` and gets its
module-level ``__getattr__`` and ``__dir__`` from :func:`lazy_names`::

    __getattr__, __dir__ = lazy_names(__name__, {"ThresholdOp": "threshold"}, __all__)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, homes: Mapping[str, str], public: Sequence[str]
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package``.

    Args:
        package: The package's ``__name__``.
        homes: Public name -> the submodule (relative to ``package``) that defines it.
        public: The package's ``__all__``.
    """
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        setattr(module, name, value)  # found at once from now on
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(module), *public})

    return __getattr__, __dir__
