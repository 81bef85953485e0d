"""Background imports: load what a pipeline's operators import lazily while earlier ones run.

An operator names the modules its ``compute`` imports lazily in :attr:`Operator.preload`
(``"scipy.ndimage"``), or ``"module:function"`` for a cache to fill once (highdicom's standard
tables). When a runtime registers a pipeline, :func:`preload` imports the names nobody imported
yet on one short-lived daemon thread, so a cold ``clara-rt run`` pays them while the loader reads
instead of on the critical path; a process that never builds such a pipeline never imports them.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading

from clara_rt.plan import Plan

__all__ = ["preload"]

log = logging.getLogger("clara_rt")
_lock = threading.Lock()
_handed: set[str] = set()  # names already given to a preload thread


def preload(plan: Plan) -> threading.Thread | None:
    """Start importing the ``preload`` names of ``plan``'s operators; return the thread, if any.

    Each name is handed to a thread once per process; names already imported are skipped. An
    entry that fails is logged at debug level and left to the operator's own import to report.
    """
    todo: list[str] = []
    with _lock:
        for node in plan.nodes:
            for name in getattr(node.operator, "preload", ()):
                if name not in _handed and name.partition(":")[0] not in sys.modules:
                    _handed.add(name)
                    todo.append(name)
    if not todo:
        return None
    thread = threading.Thread(target=_import_all, args=(todo,), name="clara-rt-preload",
                              daemon=True)
    thread.start()
    return thread


def _import_all(names: list[str]) -> None:
    for name in names:
        module, _, func = name.partition(":")
        try:
            loaded = importlib.import_module(module)
            if func:
                getattr(loaded, func)()
        except Exception:
            log.debug("preload of %s failed", name, exc_info=True)
