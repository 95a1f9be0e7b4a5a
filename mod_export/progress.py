"""Progress bars for long work (training, calibration, engine builds); plain iteration when disabled."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str, enabled: bool = True, total: int | None = None) -> Iterable[T]:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
