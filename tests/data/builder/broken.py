"""A module that fails on import, as an operator package with a missing dependency does."""

from __future__ import annotations

raise ImportError("this operator needs the 'scanner_sdk' package")
