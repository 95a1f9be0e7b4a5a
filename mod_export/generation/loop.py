"""The generate loop, over any stepper (the PyTorch reference, ONNX Runtime, TensorRT):

    stepper.prefill(ids[B,P] int64, mask[B,P] int64, capacity) -> Step     prompts, left-padded
    stepper.step(tokens[B] int64, active[B] bool) -> Step                  one new token per row

A Step holds the logits [B,V] of each row's last position and, per routed layer, whether each token took it
(`take`) and its decision logit. Rows stop independently (stop tokens, max_new_tokens); a stopped row is fed its
last token with active=False, takes no block and writes no cache entry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from mod_export.errors import InputError
from mod_export.generation.sampling import Sampling, sample


@dataclass
class Step:
    logits: np.ndarray  # [B,V] float32: the next-token logits of each row
    take: dict[int, np.ndarray] = field(default_factory=dict)  # routed layer -> [B] (step) or [B,P] (prefill) bool
    decision: dict[int, np.ndarray] = field(default_factory=dict)  # routed layer -> same shape, float32 logits


class Stepper(Protocol):
    routed_layers: list[int]

    def prefill(self, ids: np.ndarray, mask: np.ndarray, capacity: int) -> Step: ...

    def step(self, tokens: np.ndarray, active: np.ndarray) -> Step: ...


@dataclass
class Event:
    """What one step produced: the new token of every row (meaningful where `emitted`)."""

    index: int  # 0 for the first generated token
    tokens: np.ndarray  # [B] int64
    emitted: np.ndarray  # [B] bool: rows that produced a token at this step
    finished: np.ndarray  # [B] bool: rows that are done after this step
    seconds: float  # wall time of the model work that produced these logits


@dataclass
class Generation:
    tokens: list[list[int]]  # per row: the generated tokens (a stop token included)
    steps: list[Step]  # prefill, then one per decode step
    step_seconds: list[float]  # per decode step (the prefill's time is prefill_seconds)
    prefill_seconds: float
    take_rates: dict[int, float]  # routed layer -> fraction of generated tokens that took it

    @property
    def tokens_per_second(self) -> float:
        n = sum(len(t) for t in self.tokens)
        total = self.prefill_seconds + sum(self.step_seconds)
        return n / total if total > 0 else float("inf")


def left_pad(prompts: list[list[int]], pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Prompts of different lengths -> ids[B,P], mask[B,P] (left padding)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InputError("every prompt needs at least one token")
    P = max(len(p) for p in prompts)
    ids = np.full((len(prompts), P), pad, dtype=np.int64)
    mask = np.zeros((len(prompts), P), dtype=np.int64)
    for row, prompt in enumerate(prompts):
        ids[row, P - len(prompt) :] = prompt
        mask[row, P - len(prompt) :] = 1
    return ids, mask


def stream(
    stepper: Stepper,
    prompts: list[list[int]],
    max_new_tokens: int,
    sampling: Sampling | None = None,
    stop_tokens: tuple[int, ...] = (),
    record: list | None = None,
) -> Iterator[Event]:
    """Yield one Event per generated position; `record`, when given, receives every Step (prefill first)."""
    sampling = sampling or Sampling()
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    ids, mask = left_pad(prompts)
    B = len(prompts)
    generators = sampling.generators(B)
    start = time.perf_counter()
    out = stepper.prefill(ids, mask, ids.shape[1] + max_new_tokens)
    seconds = time.perf_counter() - start
    if record is not None:
        record.append(out)
    active = np.ones(B, dtype=bool)
    stops = np.asarray(stop_tokens, dtype=np.int64)
    last = ids[:, -1].copy()
    for index in range(max_new_tokens):
        tokens = np.where(active, sample(out.logits, sampling, generators), last)
        emitted = active.copy()
        active = active & ~np.isin(tokens, stops)
        if index == max_new_tokens - 1:
            active[:] = False
        yield Event(index, tokens, emitted, ~active, seconds)
        if not active.any():
            return
        last = tokens
        start = time.perf_counter()
        out = stepper.step(tokens, active)
        seconds = time.perf_counter() - start
        if record is not None:
            record.append(out)


def generate(
    stepper: Stepper,
    prompts: list[list[int]],
    max_new_tokens: int,
    sampling: Sampling | None = None,
    stop_tokens: tuple[int, ...] = (),
) -> Generation:
    sampling = sampling or Sampling()
    steps: list[Step] = []
    tokens: list[list[int]] = [[] for _ in prompts]
    seconds: list[float] = []
    taken: dict[int, int] = {layer: 0 for layer in stepper.routed_layers}
    emitted_total = 0
    events = list(stream(stepper, prompts, max_new_tokens, sampling, stop_tokens, record=steps))
    for event in events:
        for row in np.flatnonzero(event.emitted):
            tokens[row].append(int(event.tokens[row]))
        seconds.append(event.seconds)
    for step, event in zip(steps[1:], events[:-1]):  # decode step i consumed the tokens of event i
        fed = event.emitted & ~event.finished
        emitted_total += int(fed.sum())
        for layer in taken:
            taken[layer] += int((step.take[layer] & fed).sum())
    rates = {layer: taken[layer] / emitted_total if emitted_total else 0.0 for layer in taken}
    return Generation(tokens, steps, seconds[1:], seconds[0] if seconds else 0.0, rates)
