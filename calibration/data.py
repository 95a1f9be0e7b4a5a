"""Calibration data: text (a file or a folder of files) cut into byte windows, with a content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mod_export.data.corpus import fixed_windows, held_out_split, load_stdlib_corpus, load_text_bytes
from mod_export.errors import CorpusError


@dataclass
class CalibrationData:
    windows: np.ndarray  # [N, T] int64 token ids
    sha256: str
    source: str


def load_calibration_data(path: str | Path | None, windows: int = 32, seq_len: int = 256) -> CalibrationData:
    """PATH: a text file or a folder of text files; None: the held-out slice of the example corpus."""
    if path is None:
        data = held_out_split(load_stdlib_corpus().held_out).calibration
        source = "calibration part (first half) of the example corpus' held-out slice (python stdlib)"
    else:
        p = Path(path)
        if p.is_dir() and not any(f.is_file() for f in p.rglob("*")):
            raise CorpusError(f"calibration data folder {p} has no files")
        data, source = load_text_bytes(p), str(p)
    if len(data) <= seq_len:
        raise CorpusError(f"calibration text has {len(data)} bytes, too short for one window of {seq_len + 1}")
    count = max(1, min(windows, (len(data) - 1) // seq_len))
    chosen = fixed_windows(data, count, seq_len)
    return CalibrationData(chosen, hashlib.sha256(chosen.tobytes()).hexdigest(), source)
