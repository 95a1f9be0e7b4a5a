"""Real text that exists offline on every machine: the running Python's standard-library sources.

Split by file (a stable hash of the relative path), so held-out text comes from files never trained on.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mod_export.errors import CorpusError

HELD_OUT_PERCENT = 10


@dataclass(frozen=True)
class Corpus:
    train: np.ndarray  # [N_train] uint8 bytes
    held_out: np.ndarray  # [N_held] uint8 bytes
    n_train_files: int
    n_held_files: int
    digest: str  # sha256 over file names and sizes, for reports


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def is_held_out(relative_path: str) -> bool:
    return int(hashlib.sha256(relative_path.encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def load_stdlib_corpus(max_train_bytes: int = 8_000_000, max_held_bytes: int = 1_000_000) -> Corpus:
    """Concatenate stdlib .py files (site-packages excluded) in sorted order, split by file."""
    root = stdlib_dir()
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts)
    if not files:
        raise CorpusError(f"no Python sources found under {root}")
    train, held = bytearray(), bytearray()
    n_train = n_held = 0
    digest = hashlib.sha256()
    for path in files:
        rel = path.relative_to(root).as_posix()
        target_held = is_held_out(rel)
        buf, limit = (held, max_held_bytes) if target_held else (train, max_train_bytes)
        if len(buf) >= limit:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        digest.update(f"{rel}:{len(data)}\n".encode())
        buf.extend(data[: limit - len(buf)])
        buf.extend(b"\n")
        if target_held:
            n_held += 1
        else:
            n_train += 1
    if len(train) < 10_000 or len(held) < 10_000:
        raise CorpusError(
            f"standard-library corpus under {root} is too small ({len(train)} train, {len(held)} held-out bytes)"
        )
    return Corpus(
        np.frombuffer(bytes(train), dtype=np.uint8),
        np.frombuffer(bytes(held), dtype=np.uint8),
        n_train,
        n_held,
        digest.hexdigest(),
    )


def load_text_bytes(path: str | Path) -> np.ndarray:
    """A file, or every file under a folder (sorted), as one uint8 array. For calibration and evaluation."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"text data not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    try:
        data = b"\n".join(p.read_bytes() for p in files)
    except OSError as exc:
        raise CorpusError(f"cannot read text data {exc.filename or path}: {exc.strerror or exc}") from None
    if not data:
        raise CorpusError(f"text data is empty: {path}")
    return np.frombuffer(data, dtype=np.uint8)


def random_windows(data: np.ndarray, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """[batch, length] int64 windows at random offsets."""
    if len(data) <= length:
        raise CorpusError(f"text of {len(data)} bytes is too short for windows of {length}")
    starts = rng.integers(0, len(data) - length, size=batch)
    return np.stack([data[s : s + length] for s in starts]).astype(np.int64)


def fixed_windows(data: np.ndarray, count: int, length: int) -> np.ndarray:
    """[count, length] int64 windows at evenly spaced offsets (deterministic evaluation set)."""
    if len(data) <= length:
        raise CorpusError(f"text of {len(data)} bytes is too short for windows of {length}")
    starts = np.linspace(0, len(data) - length - 1, num=count).astype(np.int64)
    return np.stack([data[s : s + length] for s in starts]).astype(np.int64)


@dataclass(frozen=True)
class HeldOutSplit:
    """The held-out text cut in two, never overlapping: calibration may only see the first part, evaluation
    (parity cases, quality reports, router health, tests) only the second."""

    calibration: np.ndarray  # [N/2] uint8
    evaluation: np.ndarray  # [N - N/2] uint8


def held_out_split(held_out: np.ndarray) -> HeldOutSplit:
    half = len(held_out) // 2
    return HeldOutSplit(held_out[:half], held_out[half:])
