"""Attention pieces shared by every block architecture: rotary embeddings at original positions, head splitting,
the additive causal/padding bias, and scaled dot-product attention with grouped key/value heads.

Shapes: B batch, n tokens, D width, H query heads, Hkv key/value heads, Dh head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, base: float):
    """positions[B,n] (int) -> cos, sin [B,1,n,Dh/2] in float32."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    angles = positions.float().unsqueeze(-1) * inv_freq  # [B,n,Dh/2]
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x[B,H,n,Dh] rotated pairwise (first half, second half) by the angles of its positions."""
    x1, x2 = x.chunk(2, dim=-1)  # [B,H,n,Dh/2] each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[B,n,heads*Dh] -> [B,heads,n,Dh]."""
    B, n, width = t.shape
    return t.view(B, n, heads, width // heads).transpose(1, 2)


def repeat_kv(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[B,Hkv,n,Dh] -> [B,heads,n,Dh]: each key/value head serves heads/Hkv query heads (grouped-query attention)."""
    return t if t.shape[1] == heads else t.repeat_interleave(heads // t.shape[1], dim=1)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh) + bias) v, scores in float32. q[B,H,n,Dh], k/v[B,Hkv,m,Dh], bias[B,1,n,m] -> [B,H,n,Dh]."""
    k, v = repeat_kv(k, q.shape[1]), repeat_kv(v, q.shape[1])
    att = torch.matmul(q, k.transpose(-2, -1)).float() * (1.0 / math.sqrt(q.shape[-1]))  # [B,H,n,m]
    att = F.softmax(att + bias, dim=-1).to(v.dtype)
    return torch.matmul(att, v)


def attention_bias(key_valid: torch.Tensor) -> torch.Tensor:
    """key_valid[B,n] bool, tokens in ascending original order -> additive bias [B,1,n,n] f32: 0 where a query
    may attend (causal in original order, key not padding, or the query itself), float32 min elsewhere.
    Built once per forward for the dense blocks and once per routed block (a padding query still attends
    to itself, so no softmax row is empty)."""
    n = key_valid.shape[1]
    order = torch.arange(n, device=key_valid.device)
    causal = order[:, None] >= order[None, :]  # [n,n] lower triangle
    eye = order[:, None] == order[None, :]  # [n,n]
    allowed = (causal & key_valid[:, None, None, :]) | eye  # [B,1,n,n]
    # one Where with scalar branches: no [B,1,n,n] zeros tensor to build and then overwrite
    return torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
