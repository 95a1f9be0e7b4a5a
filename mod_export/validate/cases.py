"""Validation inputs: shapes the exporter never traced (it traces T=48), on held-out text and random tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mod_export.contract import ATTENTION_MASK, INPUT_IDS


@dataclass
class Case:
    name: str
    input_ids: np.ndarray  # [B,T] int64
    attention_mask: np.ndarray  # [B,T] int64 (1 token, 0 padding)

    @property
    def feed(self) -> dict[str, np.ndarray]:
        return {INPUT_IDS: self.input_ids, ATTENTION_MASK: self.attention_mask}


def validation_cases(vocab: int, capacity_den: int, text: np.ndarray, seed: int = 0) -> list[Case]:
    """Real text, random tokens, k*T not an integer, T shorter than the capacity denominator, T=1, and batch 3
    with left and right padding. text: held-out bytes (the evaluation part, never calibrated on)."""
    rng = np.random.default_rng(seed)
    den = capacity_den

    def from_text(batch: int, T: int) -> np.ndarray:
        starts = rng.integers(0, len(text) - T - 1, size=batch)
        return np.stack([text[s : s + T] for s in starts]).astype(np.int64) % vocab

    def ones(ids: np.ndarray) -> np.ndarray:
        return np.ones_like(ids, dtype=np.int64)

    short_T = max(1, den - 3) if den > 1 else 1
    cases = [
        Case("held-out text B=2 T=256", ids := from_text(2, 256), ones(ids)),
        Case("held-out text B=1 T=1000", ids := from_text(1, 1000), ones(ids)),
        Case(
            "random tokens B=2 T=97 (k*T not integral)",
            ids := rng.integers(0, vocab, (2, 97)).astype(np.int64),
            ones(ids),
        ),
        Case(
            f"random tokens B=2 T={short_T} (< capacity den {den})",
            ids := rng.integers(0, vocab, (2, short_T)).astype(np.int64),
            ones(ids),
        ),
        Case("held-out text B=1 T=1", ids := from_text(1, 1), ones(ids)),
    ]
    padded = from_text(3, 64)
    mask = np.ones_like(padded)
    mask[1, :10] = 0  # left padding
    mask[2, 24:] = 0  # right padding
    padded = np.where(mask == 1, padded, 0)
    cases.append(Case("held-out text B=3 T=64 with left/right padding", padded, mask))
    beyond = from_text(2, 40)
    mask = np.ones_like(beyond)
    mask[1, :] = 0
    mask[1, 20:22] = 1  # 2 real tokens: with k > 2 the lowest padding positions fill the selection (tie rule)
    cases.append(Case("held-out text B=2 T=40, padding beyond capacity", np.where(mask == 1, beyond, 0), mask))
    return cases
