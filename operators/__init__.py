"""clara-rt operator library, importable as ``clara_rt.operators``.

Operators here use only the public runtime API (``from clara_rt import Operator, ...``).
"""

from __future__ import annotations
