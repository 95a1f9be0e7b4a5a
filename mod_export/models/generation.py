"""The PyTorch reference of generation: an MoD-aware KV cache and a stepper for mod_export.generation.loop.

    stepper = TorchStepper(model)
    result = generate(stepper, [[1, 2, 3], [4, 5]], max_new_tokens=16)   # mod_export.generation.loop

Per layer the cache holds keys and values [B,H,S,Dh] and valid lengths [B]: only the real tokens of a row that
took that layer, left-aligned (a dense layer takes every real token). `forced` steps let a validation force the
reference to a candidate's decisions (docs/parity.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mod_export.generation.loop import Step
from mod_export.models.causal import (
    CausalRecord,
    block_step,
    causal_forward,
    decision,
    gated_update,
    position_ids,
    routed_layers,
)
from mod_export.models.model import MoDTransformer, RoutedBlock


@dataclass
class KVCache:
    keys: list[torch.Tensor]  # per block: [B,H,S,Dh]
    values: list[torch.Tensor]  # per block: [B,H,S,Dh]
    lengths: list[torch.Tensor]  # per block: [B] int64, valid entries per row (left-aligned)

    @classmethod
    def empty(cls, model: MoDTransformer, batch: int, capacity: int) -> KVCache:
        cfg = model.config
        shape = (batch, cfg.kv_heads, capacity, cfg.d_model // cfg.n_heads)  # grouped-query: key/value heads
        n = len(model.blocks)
        return cls(
            [torch.zeros(shape) for _ in range(n)],
            [torch.zeros(shape) for _ in range(n)],
            [torch.zeros(batch, dtype=torch.int64) for _ in range(n)],
        )

    def append(self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor, take: torch.Tensor) -> None:
        """Write each taking row's new entry at its length and grow that length. k_new/v_new[B,H,1,Dh], take[B]."""
        rows = torch.nonzero(take, as_tuple=True)[0]
        at = self.lengths[layer][rows]
        if rows.numel() and int(at.max()) >= self.keys[layer].shape[2]:
            raise ValueError("KV cache capacity exceeded")
        self.keys[layer][rows, :, at] = k_new[rows, :, 0]
        self.values[layer][rows, :, at] = v_new[rows, :, 0]
        self.lengths[layer][rows] += 1


class TorchStepper:
    """Prefill and decode steps of the causal-routing reference, with its own KV cache."""

    def __init__(self, model: MoDTransformer):
        self.model = model.eval()
        self.routed_layers = routed_layers(model)
        self.cache: KVCache | None = None
        self.positions: torch.Tensor | None = None  # [B] the next token's position in each row

    @torch.no_grad()
    def prefill(self, ids: np.ndarray, mask: np.ndarray, capacity: int, forced: dict | None = None) -> Step:
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        record = CausalRecord()
        logits = causal_forward(self.model, ids_t, mask_t, forced_take=forced, record=record)  # [B,P,V]
        B = ids.shape[0]
        self.cache = KVCache.empty(self.model, B, capacity)
        for layer, take in enumerate(record.take):  # compact the tokens that took each layer, per row
            for row in range(B):
                chosen = torch.nonzero(take[row], as_tuple=True)[0]
                n = chosen.numel()
                self.cache.keys[layer][row, :, :n] = record.keys[layer][row, :, chosen]
                self.cache.values[layer][row, :, :n] = record.values[layer][row, :, chosen]
                self.cache.lengths[layer][row] = n
        self.positions = position_ids(mask_t)[:, -1] + 1
        return Step(
            logits[:, -1].numpy(),
            {i: record.take[i].numpy() for i in self.routed_layers},
            {i: record.decision[i].numpy() for i in self.routed_layers},
        )

    @torch.no_grad()
    def step(self, tokens: np.ndarray, active: np.ndarray, forced: dict | None = None) -> Step:
        """forced: {routed layer: [B] bool} decisions to use instead of the model's own."""
        model, cache = self.model, self.cache
        act = torch.from_numpy(np.asarray(active, dtype=bool))
        pos = self.positions[:, None]  # [B,1]
        x = model.embed(torch.from_numpy(np.asarray(tokens, dtype=np.int64))[:, None])  # [B,1,D]
        takes, decisions = {}, {}
        for i, block in enumerate(model.blocks):
            inner = block.block if isinstance(block, RoutedBlock) else block
            if i in self.routed_layers:
                scores, logits = decision(block, x)  # [B,1]
                take = (logits[:, 0] > 0) & act
                if forced is not None and i in forced:
                    take = torch.as_tensor(np.asarray(forced[i]), dtype=torch.bool) & act
                takes[i], decisions[i] = take.numpy(), logits[:, 0].numpy()
                if take.any():
                    y, k, v = block_step(inner, x, pos, cache.keys[i], cache.values[i], cache.lengths[i])
                    x = gated_update(block, x, y, scores, take[:, None])
                    cache.append(i, k, v, take)
            else:
                y, k, v = block_step(inner, x, pos, cache.keys[i], cache.values[i], cache.lengths[i])
                x = torch.where(act[:, None, None], y, x)
                cache.append(i, k, v, act)
        self.positions = self.positions + act.long()
        logits = model.lm_head(model.ln_f(x)).float()[:, 0]  # [B,V]
        return Step(logits.numpy(), takes, decisions)
