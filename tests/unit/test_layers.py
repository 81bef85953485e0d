"""Which way imports point (DESIGN.md): every import in clara_rt/ and operators/ obeys the layers.

Each module is parsed with :mod:`ast`, so every import counts: module level, inside functions
(lazy), under ``if TYPE_CHECKING:``, and ``importlib.import_module("literal")`` (an f-string
counts by its literal prefix: ``f"clara_rt.cluster.{name}"`` imports ``clara_rt.cluster``).
A module belongs to one layer (:func:`layer_of`); :data:`ALLOWED` lists, for each layer, the
layers it may import. Nothing is imported or run: this reads the source only.

Fix a failure by moving the shared code down (DESIGN: "code shared with the CLI moves down",
"what both need lives in one neutral module below both"), not by widening the table.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"clara_rt": ROOT / "clara_rt", "clara_rt.operators": ROOT / "operators"}

CORE = "core"
"""operator, ports, pipeline, plan, job, executor, arrays, errors, observer, fair_queue, names,
the C++ ``_core`` and the package ``clara_rt`` itself (its public API)."""

# The layers below ``clara_rt``: first dotted component after ``clara_rt.`` -> layer.
LAYERS = {
    "operators": "operators", "backends": "backends", "definition": "definition",
    "runner": "runner", "cluster": "cluster", "server": "server", "dicom": "dicom",
    "cli": "cli", "bench": "bench", "monitor": "monitor", "package": "package",
    "client": "client",
}

# Layer -> the layers it may import (besides itself). Read it as DESIGN's arrows:
#   cli -> server -> cluster -> runner contract -> definition -> core -> _core (C++)
#   dicom -> server through its HTTP client; bench -> anything below cli;
#   operators, backends -> the public core API only.
_BELOW_CLI = {"server", "cluster", "runner", "definition", CORE, "operators", "backends",
              "monitor", "dicom", "client", "package"}
ALLOWED: dict[str, set[str]] = {
    CORE: set(),                                   # never operators, definition, server, ...
    "backends": {CORE},                            # public core API only
    "operators": {CORE, "backends"},               # public core API (+ inference backends)
    "monitor": {CORE},                             # NVML and metrics read the runtime only
    "definition": {CORE},                          # resolves operators by name, never imports
    "runner": {"definition", CORE},                # the neutral runner contract
    "cluster": {"runner", "definition", CORE},     # a runner the server plugs in
    "server": {"cluster", "runner", "definition", CORE, "monitor",
               "operators"},                       # console renders with the operator library
    "client": {CORE},                              # the server's HTTP client
    "dicom": {"client", "definition", CORE},       # talks to the server over HTTP only
    # Edge bundles (a server and a DICOM adapter packed for a device; only cli imports it):
    # checks the adapter's config and which backends a pipeline needs.
    "package": {"dicom", "backends", "definition", CORE},
    "bench": _BELOW_CLI,                           # anything below cli
    "cli": _BELOW_CLI | {"bench"},                 # the top: everything
}

# Imports that cross the table today and could not be moved yet: (importing module, imported
# module) -> why. Keep this empty; each entry is a debt to pay, named in the report.
EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import found in a source file."""

    source: Path
    line: int
    importer: str  # dotted module name of the file
    target: str  # dotted name imported (module, or module.name for ``from m import name``)
    how: str  # "import", "lazy import", "import_module"


def module_name(path: Path) -> str:
    """``clara_rt/server/jobs.py`` -> ``clara_rt.server.jobs``; operators/ is clara_rt.operators."""
    for package, root in sorted(SOURCES.items(), key=lambda item: -len(str(item[1]))):
        if path.is_relative_to(root):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise ValueError(f"{path} is outside clara_rt/ and operators/")


def layer_of(module: str) -> str | None:
    """The layer of a dotted ``clara_rt`` module name (``None``: not clara-rt's)."""
    parts = module.split(".")
    if parts[0] != "clara_rt":
        return None
    if len(parts) == 1:
        return CORE
    return LAYERS.get(parts[1], CORE)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _literal_prefix(arg: ast.expr) -> str | None:
    """The module an ``import_module`` argument names: a literal, or an f-string's package."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:
        first = arg.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value.rpartition(".")[0] or None  # f"pkg.mod.{x}" -> "pkg.mod"
    return None


def _is_import_module(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in {"import_module", "__import__"}


def imports_of(path: Path) -> list[Import]:
    """Every import in the file at ``path``."""
    return scan(path.read_text(encoding="utf-8"), path, module_name(path),
                is_package=path.name == "__init__.py")


def scan(text: str, source: Path, importer: str, *, is_package: bool) -> list[Import]:
    """Every import in ``text``: statements anywhere, and ``import_module`` with a literal."""
    tree = ast.parse(text, filename=str(source))
    top = set(map(id, tree.body))
    found: list[Import] = []
    for node in ast.walk(tree):
        how = "import" if id(node) in top else "lazy import"
        if isinstance(node, ast.Import):
            found += [Import(source, node.lineno, importer, a.name, how) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(importer, is_package, node)
            found += [Import(source, node.lineno, importer, f"{module}.{a.name}", how)
                      for a in node.names]
        elif isinstance(node, ast.Call) and _is_import_module(node) and node.args:
            target = _literal_prefix(node.args[0])
            if target:
                found.append(Import(source, node.lineno, importer, target, "import_module"))
    return found


@functools.cache
def all_imports() -> tuple[Import, ...]:
    """Every import of every module under clara_rt/ and operators/ (parsed once per run)."""
    return tuple(imp for root in SOURCES.values() for path in sorted(root.rglob("*.py"))
                 if "__pycache__" not in path.parts for imp in imports_of(path))


def violations() -> list[str]:
    """One line per import that crosses the table: ``file:line: rule``."""
    lines = []
    for imp in all_imports():
        src, dst = layer_of(imp.importer), layer_of(imp.target)
        if src is None or dst is None or dst == src or dst in ALLOWED[src]:
            continue
        if (imp.importer, imp.target) in EXCEPTIONS:
            continue
        lines.append(f"{imp.source.relative_to(ROOT)}:{imp.line}: {src} must not import {dst} "
                     f"({imp.how} of {imp.target}; {src} may import "
                     f"{', '.join(sorted(ALLOWED[src])) or 'nothing outside itself'})")
    return lines


def test_imports_follow_design_directions() -> None:
    found = violations()
    assert not found, (f"{len(found)} import(s) cross DESIGN.md's 'Which way imports point':\n"
                       + "\n".join(found))


def test_nothing_imports_cli_but_cli() -> None:
    """The CLI's code is reached only through its entry point (``clara_rt.cli.__main__``)."""
    found = [f"{imp.source.relative_to(ROOT)}:{imp.line}: {imp.importer} imports {imp.target}"
             for imp in all_imports()
             if layer_of(imp.target) == "cli" and layer_of(imp.importer) != "cli"]
    assert not found, "only clara_rt.cli imports clara_rt.cli:\n" + "\n".join(found)


def test_operators_and_backends_use_the_public_core_api() -> None:
    """No private core module or name (``clara_rt._core``, ``from clara_rt.job import _x``)."""
    found = [f"{imp.source.relative_to(ROOT)}:{imp.line}: {layer_of(imp.importer)} imports "
             f"{imp.target}, private to the core"
             for imp in all_imports() if layer_of(imp.importer) in {"operators", "backends"}
             and layer_of(imp.target) == CORE
             and any(_private(part) for part in imp.target.split(".")[1:])]
    assert not found, "operators and backends use the public core API only:\n" + "\n".join(found)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# Files that still load another clara-rt layer with ``import_module("literal")`` (allowed by the
# table, but an import in disguise): path -> why it is not a plain import yet. Keep it empty.
IMPORT_MODULE_EXCEPTIONS: dict[str, str] = {}


def test_no_import_module_stands_for_a_plain_import() -> None:
    """``import_module("clara_rt.x")`` across layers is written as an import (DESIGN: it counts
    as one anyway); only dynamic names (operator classes from YAML) need ``import_module``."""
    found = sorted({f"{imp.source.relative_to(ROOT)}:{imp.line}: import_module of {imp.target}"
                    for imp in all_imports()
                    if imp.how == "import_module" and layer_of(imp.target) is not None
                    and layer_of(imp.target) != layer_of(imp.importer)
                    and str(imp.source.relative_to(ROOT)) not in IMPORT_MODULE_EXCEPTIONS})
    assert not found, "write these as (lazy) imports:\n" + "\n".join(found)


def test_exceptions_are_still_needed() -> None:
    """An exception that no longer matches any import is stale: remove it from the table."""
    seen = {(imp.importer, imp.target) for imp in all_imports()}
    stale = sorted(set(EXCEPTIONS) - seen)
    assert not stale, f"stale entries in EXCEPTIONS: {stale}"
    still = {str(imp.source.relative_to(ROOT)) for imp in all_imports()
             if imp.how == "import_module" and layer_of(imp.target) is not None}
    stale_files = sorted(set(IMPORT_MODULE_EXCEPTIONS) - still)
    assert not stale_files, f"stale entries in IMPORT_MODULE_EXCEPTIONS: {stale_files}"


@pytest.mark.parametrize(("code", "expected"), [
    ("from clara_rt.server.jobs import X", "clara_rt.server.jobs.X"),
    ("def f():\n    from ..server import jobs", "clara_rt.server.jobs"),
    ("if TYPE_CHECKING:\n    import clara_rt.server", "clara_rt.server"),
    ("import importlib\nimportlib.import_module('clara_rt.server.io')", "clara_rt.server.io"),
    ("from importlib import import_module\nimport_module(f'clara_rt.server.{n}')",
     "clara_rt.server"),
])
def test_every_kind_of_import_is_seen(code: str, expected: str) -> None:
    """Module-level, lazy, relative and ``import_module`` imports are all seen (and fail)."""
    source = SOURCES["clara_rt"] / "cluster" / "example.py"
    found = scan(code, source, "clara_rt.cluster.example", is_package=False)
    assert [imp.target for imp in found][-1] == expected
    assert layer_of(expected) not in ALLOWED["cluster"]


def test_layer_table_reads_design() -> None:
    """Spot checks of the table against DESIGN's sentences."""
    assert layer_of("clara_rt.executor") == CORE and layer_of("clara_rt") == CORE
    assert layer_of("clara_rt.operators.io.dicom_series") == "operators"
    for below in ("operators", "definition", "server", "cluster", "dicom", "cli"):
        assert below not in ALLOWED[CORE]
    assert not {"operators", "server", "cluster", "cli"} & ALLOWED["definition"]
    assert not {"server", "cli"} & ALLOWED["cluster"]
    assert all("cli" not in allowed for layer, allowed in ALLOWED.items() if layer != "cli")
