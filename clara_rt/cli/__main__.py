"""``python -m clara_rt.cli``: the same as the ``clara-rt`` console script."""

from __future__ import annotations

import sys

from clara_rt.cli import main

sys.exit(main())
