"""Interleaved latency measurement: every candidate runs once per round, in a freshly shuffled order
(seeded), so machine noise and "who runs after whom" effects hit all of them alike (docs/design.md,
measuring performance). Reports median, p95 and p99."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class LatencyStats:
    name: str
    samples_ms: list[float]

    @property
    def median(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.samples_ms, 95))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.samples_ms, 99))

    def as_dict(self) -> dict:
        return {"median_ms": self.median, "p95_ms": self.p95, "p99_ms": self.p99, "repeats": len(self.samples_ms)}


def measure_interleaved(
    candidates: dict[str, Callable[[], object]],
    repeats: int = 30,
    warmup: int = 3,
    seed: int = 0,
) -> dict[str, LatencyStats]:
    names = list(candidates)
    rng = np.random.default_rng(seed)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(repeats):
        order = [names[i] for i in rng.permutation(len(names))]
        for name in order:
            start = time.perf_counter()
            candidates[name]()
            samples[name].append((time.perf_counter() - start) * 1000.0)
    return {n: LatencyStats(n, samples[n]) for n in names}
