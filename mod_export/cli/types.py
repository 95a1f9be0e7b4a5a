"""argparse value types: every numeric option is checked where it is parsed (a usage error, exit 2), so no
bad value reaches the library (NaN tolerances, negative window counts, ...)."""

from __future__ import annotations

import argparse
import math


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "positive")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "non-negative")


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A finite number in [0, 1]."""
    value = _finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


SIZE_UNITS = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}


def byte_size(text: str) -> int:
    """A size like 500KB, 2GB or 64MiB (Hugging Face's max_shard_size style) -> bytes, at least 1."""
    stripped = text.strip().upper()
    unit = next((u for u in sorted(SIZE_UNITS, key=len, reverse=True) if stripped.endswith(u)), None)
    try:
        value = float(stripped[: -len(unit)] if unit else stripped) * SIZE_UNITS[unit or "B"]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a size such as 500KB, 2GB or 64MiB, got {text!r}") from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive size such as 500KB or 2GB, got {text!r}")
    return int(value)
