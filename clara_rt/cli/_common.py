"""Small helpers shared by the verbs."""

from __future__ import annotations

import argparse
import sys


def progress(message: str) -> None:
    print(f"clara-rt: {message}", file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
