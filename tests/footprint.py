"""What an idle ``clara-rt serve`` loads: a child Python creates the server app and runs its
startup (the lifespan that creates the runtime, the store, retention and monitoring), registers
the pipelines it is given (as ``clara-rt create pipeline`` does), then prints
``sorted(sys.modules)``. From outside a running server this cannot be seen, so the
child does what ``clara-rt serve`` does short of listening on a port.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

__all__ = ["HEAVY", "heavy_in", "server_modules"]

HEAVY = ("cupy", "onnxruntime", "torch", "numba", "llvmlite", "scipy", "tritonclient",
         "pynetdicom", "nibabel", "highdicom", "pydicom", "PIL", "ray")
"""Top-level packages an idle server without a GPU pipeline must not import."""

_CHILD = """
import asyncio, json, sys, tempfile
from pathlib import Path

import clara_rt.cli  # what `clara-rt serve` imports first (every verb's parser)
from clara_rt.server import ServerConfig
from clara_rt.server.app import create_app


async def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        app = create_app(ServerConfig(data=Path(data), workers=1))
        async with app.router.lifespan_context(app):
            for path in sys.argv[1:]:
                app.state.server.pipelines.create(Path(path).read_text(), Path(path).name)
            import clara_rt
            print(json.dumps({"modules": sorted(sys.modules), "clara_rt": clara_rt.__file__}))

asyncio.run(main())
"""


def server_modules(python: str, env: dict[str, str], cwd: Path | None = None,
                   pipelines: tuple[Path, ...] = ()) -> tuple[list[str], str]:
    """Every module (``sys.modules``) of a started, idle server app in ``python`` holding
    ``pipelines``, and the file ``clara_rt`` was imported from. ``cwd`` is on ``sys.path``
    (``python -c``): run an installed Python outside the checkout."""
    proc = subprocess.run([python, "-c", _CHILD, *map(str, pipelines)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return list(found["modules"]), str(found["clara_rt"])


def heavy_in(modules: list[str]) -> list[str]:
    """The modules of ``modules`` that belong to a :data:`HEAVY` package."""
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)
