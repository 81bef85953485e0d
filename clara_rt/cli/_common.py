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


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    """``["K=V", ...]`` from a repeatable flag -> ``{"K": "V"}``; ValueError naming ``flag``."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects NAME=VALUE, got {item!r}")
        pairs[key] = value
    return pairs
