"""Next-token sampling from logits, numpy only: greedy, temperature, top-k, top-p (nucleus), seeded per row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mod_export.errors import InputError
from mod_export.generation.arguments import integer, real


@dataclass(frozen=True)
class Sampling:
    """temperature 0 is greedy. top_k 0 keeps every token; top_p 1 keeps the whole distribution. Every value is
    checked here (InputError): temperature a finite number >= 0, top_k an integer >= 0, top_p a number in (0, 1],
    seed an integer >= 0. Any positive temperature works, however small (sample() works in log space)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        temperature = real("temperature", self.temperature)
        if temperature < 0:
            raise InputError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        top_p = real("top_p", self.top_p)
        if not 0 < top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p!r}")
        object.__setattr__(self, "temperature", temperature)
        object.__setattr__(self, "top_k", integer("top_k", self.top_k, 0))
        object.__setattr__(self, "top_p", top_p)
        object.__setattr__(self, "seed", integer("seed", self.seed, 0))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generators(self, rows: int) -> list[np.random.Generator]:
        """One generator per row, seeded by (seed, row): a row's draws do not depend on the other rows."""
        return [np.random.default_rng([self.seed, row]) for row in range(rows)]


def sample(logits: np.ndarray, sampling: Sampling, generators: list[np.random.Generator]) -> np.ndarray:
    """logits[B,V] -> token ids [B] int64."""
    logits = np.asarray(logits, dtype=np.float64)
    if sampling.greedy:
        return logits.argmax(-1).astype(np.int64)
    out = np.empty(logits.shape[0], dtype=np.int64)
    for row, (z, rng) in enumerate(zip(logits, generators)):
        order = np.argsort(-z, kind="stable")
        if sampling.top_k:
            order = order[: sampling.top_k]
        # log space: (z - max) / temperature is 0 for the best token and <= 0 (or -inf) for the others, so a
        # tiny temperature (1e-320) gives the greedy token, never inf / inf = NaN
        with np.errstate(over="ignore", divide="ignore", under="ignore"):
            p = np.exp((z[order] - z[order[0]]) / sampling.temperature)
        p /= p.sum()
        if sampling.top_p < 1:
            keep = int(np.searchsorted(np.cumsum(p), sampling.top_p) + 1)  # the smallest set reaching top_p
            order, p = order[:keep], p[:keep] / p[:keep].sum()
        out[row] = order[rng.choice(len(order), p=p)]
    return out
