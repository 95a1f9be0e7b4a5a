"""Causal routing (docs/generation.md): the per-token rule that generation uses, as a full-sequence forward and as
incremental steps over an MoD-aware KV cache, in PyTorch. The reference for the exported generation graphs.

Token t takes routed block l iff its decision logit is > 0: the block's causal predictor output where the model
has one, else its router score. A token that takes a block is updated as in top-k routing, gated by its router
score; a token that skips passes unchanged and leaves nothing in that block's cache. Every layer's cache holds,
per row, only the real (non-padding) tokens that took it, left-aligned, keyed with rotary at their original
positions (position = index among the row's real tokens, so left padding changes nothing).

Shapes: B batch, T/P sequence, D width, H heads, Dh head width, S cache capacity, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mod_export.models import routing
from mod_export.models.attention import attend, attention_bias, repeat_kv
from mod_export.models.model import MoDTransformer, RoutedBlock


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B,T] mask (1 token, 0 padding) -> [B,T] int64: each real token's index among its row's real tokens (0 at pads)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def block_full(block, x: torch.Tensor, positions: torch.Tensor, key_valid: torch.Tensor):
    """The block over a whole sequence where only `key_valid` tokens may be attended to (plus each query itself).
    x[B,T,D], positions[B,T], key_valid[B,T] bool -> (y[B,T,D], k[B,Hkv,T,Dh], v[B,Hkv,T,Dh])."""
    q, k, v = block.qkv(x, positions)
    return block.finish(x, attend(q, k, v, attention_bias(key_valid))), k, v


def token_order(P: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(causal, eye), both [P,P] bool, for P new tokens in ascending order: built once per step, shared by blocks."""
    order = torch.arange(P, device=device)
    return order[:, None] >= order[None, :], order[:, None] == order[None, :]


def new_token_mask(key_valid: torch.Tensor, order: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """key_valid[B,P] bool, order = token_order(P) -> [B,1,P,P] bool: query i may attend to new token j <= i that is
    valid (takes the block), and always to itself."""
    causal, eye = order
    return (causal & key_valid[:, None, None, :]) | eye


def block_chunk(block, x, positions, allowed, past_k, past_v, past_len):
    """P new tokens per row against the row's cached entries and, causally, each other. x[B,P,D], positions[B,P],
    allowed[B,1,P,P] bool (new_token_mask: which new tokens each new token may attend to), past_k/v[B,Hkv,S,Dh],
    past_len[B] (valid entries, left-aligned) -> (y[B,P,D], k_new[B,Hkv,P,Dh], v_new[B,Hkv,P,Dh]).

    The scores against the cache and against the new tokens are computed apart and share one softmax, so the
    cache is read in place, never concatenated with the new entries (a copy of the cache per block per step).
    Prefill is S = 0 valid entries; decode is P = 1."""
    q, k, v = block.qkv(x, positions)  # [B,H,P,Dh], [B,Hkv,P,Dh] x2
    heads = q.shape[1]
    scale = 1.0 / math.sqrt(q.shape[-1])
    S = past_k.shape[2]
    low = torch.finfo(torch.float32).min
    cached = torch.arange(S, device=x.device)[None, :] < past_len[:, None]  # [B,S]
    past_scores = torch.matmul(q, repeat_kv(past_k, heads).transpose(-2, -1)).float() * scale  # [B,H,P,S]
    past_scores = past_scores.masked_fill(~cached[:, None, None, :], low)
    new_scores = torch.matmul(q, repeat_kv(k, heads).transpose(-2, -1)).float() * scale  # [B,H,P,P]
    new_scores = torch.where(allowed, new_scores, low)
    probs = F.softmax(torch.cat([past_scores, new_scores], dim=-1), dim=-1).to(v.dtype)  # [B,H,P,S+P]
    attended = torch.matmul(probs[..., :S], repeat_kv(past_v, heads)) + torch.matmul(
        probs[..., S:], repeat_kv(v, heads)
    )  # [B,H,P,Dh]
    return block.finish(x, attended), k, v


def block_step(block, x, positions, past_k, past_v, past_len):
    """One new token per row against the row's cached entries (block_chunk with P = 1). x[B,1,D], positions[B,1],
    past_k/v[B,Hkv,S,Dh], past_len[B] -> (y[B,1,D], k_new[B,Hkv,1,Dh], v_new[B,Hkv,1,Dh])."""
    itself = torch.ones(x.shape[0], 1, 1, 1, dtype=torch.bool, device=x.device)  # [B,1,1,1]
    return block_chunk(block, x, positions, itself, past_k, past_v, past_len)


def decision(block: RoutedBlock, x: torch.Tensor):
    """(router scores, decision logits), both [B,n] float32: the predictor's output where the block has one."""
    scores = routing.router_scores(x, block.router.weight[0], block.router.bias[0])
    logits = block.predictor(x).float() if block.predictor is not None else scores
    return scores, logits


def gated_update(block: RoutedBlock, x, y, scores, take):
    """x where a token skips; x + g(s) (y - x) where it takes. take[B,n] bool."""
    return routing.gated_update(x, y, scores, take, block.gate_id)


@dataclass
class CausalRecord:
    """What one causal-routing pass decided, per layer (graph order of all blocks)."""

    take: list[torch.Tensor] = field(default_factory=list)  # per block: [B,n] bool (dense blocks: the real tokens)
    decision: dict[int, torch.Tensor] = field(default_factory=dict)  # routed block index -> [B,n] f32 logits
    keys: list[torch.Tensor] = field(default_factory=list)  # per block: [B,H,n,Dh]
    values: list[torch.Tensor] = field(default_factory=list)


def causal_forward(
    model: MoDTransformer,
    input_ids,
    attention_mask=None,
    forced_take: dict | None = None,
    record: CausalRecord | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """The causal-routing forward over whole sequences (teacher forcing): logits [B,T,V] f32.

    forced_take: {routed block index: [B,T] bool} replaces those blocks' decisions (to judge a candidate's
    arithmetic where a decision near 0 flipped). record: filled with every block's decisions and keys/values.
    positions: [B,T] original positions (default: position_ids(attention_mask))."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    valid = attention_mask != 0  # [B,T]
    if positions is None:
        positions = position_ids(attention_mask)
    x = model.embed(input_ids)  # [B,T,D]
    for i, block in enumerate(model.blocks):
        if isinstance(block, RoutedBlock) and model.routing_enabled:
            scores, logits = decision(block, x)
            take = (logits > 0) & valid
            if forced_take is not None and i in forced_take:
                take = torch.as_tensor(forced_take[i], device=x.device).bool() & valid
            y, k, v = block_full(block.block, x, positions, take)
            x = gated_update(block, x, y, scores, take)
            if record is not None:
                record.decision[i] = logits
        else:
            inner = block.block if isinstance(block, RoutedBlock) else block
            take = valid
            y, k, v = block_full(inner, x, positions, valid)
            x = y
        if record is not None:
            record.take.append(take)
            record.keys.append(k)
            record.values.append(v)
    return model.lm_head(model.ln_f(x)).float()


def routed_layers(model: MoDTransformer) -> list[int]:
    """Indices of the blocks that route (none for a dense twin)."""
    return [i for i, b in enumerate(model.blocks) if isinstance(b, RoutedBlock) and model.routing_enabled]
