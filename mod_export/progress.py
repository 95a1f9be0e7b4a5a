"""Progress bars for long work (training, calibration, engine builds, benchmarks) on stderr; plain iteration
when disabled, per call (enabled=False) or for the whole process (`--quiet`: set_enabled(False))."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
_STATE = {"enabled": True}


def set_enabled(enabled: bool) -> None:
    _STATE["enabled"] = enabled


def progress(iterable: Iterable[T], desc: str, enabled: bool = True) -> Iterable[T]:
    if not (enabled and _STATE["enabled"]):
        return iterable
    return tqdm(iterable, desc=desc, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
