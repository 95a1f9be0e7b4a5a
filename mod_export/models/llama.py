"""The Llama-style block for MoD models (config arch="llama"): RMSNorm, SwiGLU MLP, grouped-query attention with
`n_kv_heads` key/value heads, rotary embeddings with a configurable base, no biases. Routed blocks wrap it exactly
as they wrap the GPT-style block (mod_export.models.model), so routing, export, precision, validation and
generation treat both alike.

Shapes: B batch, n tokens, D width, H query heads, Hkv key/value heads (H % Hkv == 0), Dh = D/H.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mod_export.models.attention import apply_rotary, attend, rotary_cos_sin, split_heads
from mod_export.models.config import MoDConfig


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, statistics in float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); d_mlp is the hidden width."""

    def __init__(self, cfg: MoDConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.down = nn.Linear(cfg.d_mlp, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class LlamaBlock(nn.Module):
    """Pre-norm block with residuals: y = x + attn(norm(x)); y + mlp(norm(y)). The same interface as the GPT-style
    Block: forward(x, positions, attn_bias), and the two halves qkv() / finish() that generation calls."""

    def __init__(self, cfg: MoDConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads = cfg.n_heads, cfg.kv_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.rope_base = cfg.rope_base
        self.norm1 = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.q = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.k = nn.Linear(cfg.d_model, self.n_kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(cfg.d_model, self.n_kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.norm2 = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.mlp = SwiGLU(cfg)

    def qkv(self, x: torch.Tensor, positions: torch.Tensor):
        """x[B,n,D], positions[B,n] -> q[B,H,n,Dh], k and v [B,Hkv,n,Dh], rotary applied at the positions."""
        h = self.norm1(x)
        q = split_heads(self.q(h), self.n_heads)
        k = split_heads(self.k(h), self.n_kv_heads)
        v = split_heads(self.v(h), self.n_kv_heads)
        cos, sin = rotary_cos_sin(positions, self.head_dim, self.rope_base)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """x[B,n,D], attended[B,H,n,Dh] -> the block's output [B,n,D]."""
        B, H, n, Dh = attended.shape
        y = x + self.o(attended.transpose(1, 2).reshape(B, n, H * Dh))
        return y + self.mlp(self.norm2(y))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x, positions)
        return self.finish(x, attend(q, k, v, attn_bias))
