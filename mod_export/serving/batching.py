"""Merging one dynamic batch of scoring requests into runtime calls, and splitting the logits back. Pure numpy.

MoD routing picks k = ceil(T * capacity) tokens per row from the batch's sequence length T (docs/design.md), so
padding a request to a longer neighbour would change which of its tokens a routed block takes, and its logits with
it. Requests are therefore merged per sequence length: the config leaves ragged batching off, so Triton's dynamic
batcher only puts requests of one length in a batch, and each batch is one runtime call; a batch that still holds
several lengths (ragged batching switched on by hand) costs one call per length, never a call per request."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Request:
    """One checked request: its position in the batch, input_ids [b, T] int64 and attention_mask [b, T] int64."""

    position: int
    input_ids: np.ndarray
    attention_mask: np.ndarray


@dataclass
class Group:
    """Requests of one sequence length, concatenated on the batch axis: input_ids / attention_mask [sum b, T]."""

    requests: list[Request]
    input_ids: np.ndarray
    attention_mask: np.ndarray

    def split(self, logits: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """logits [sum b, T, V] -> (position, logits [b, T, V]) per request, in the order they were merged."""
        out, row = [], 0
        for request in self.requests:
            rows = request.input_ids.shape[0]
            out.append((request.position, logits[row : row + rows]))
            row += rows
        return out


def merge(requests: list[Request]) -> list[Group]:
    """One group per distinct sequence length, in order of first appearance; rows keep the requests' order."""
    by_length: dict[int, list[Request]] = {}
    for request in requests:
        by_length.setdefault(request.input_ids.shape[1], []).append(request)
    return [
        Group(
            members,
            np.concatenate([r.input_ids for r in members], axis=0),
            np.concatenate([r.attention_mask for r in members], axis=0),
        )
        for members in by_length.values()
    ]
