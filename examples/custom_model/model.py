"""A user-written MoD language model that mod-export has never seen: post-LN blocks, no positional encoding
(causal attention only, "NoPE"), and routing of the MLP only, at capacity 1/4, on every third block.

Nothing here imports mod-export's model classes; the routed MLPs call the public routing ops through
`mod_export.ops.Routed`, which is all the exporter needs (docs/models.md).
Shapes: B batch, T sequence, D width, H heads, k selected tokens, V vocabulary (bytes).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mod_export import ops


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
        """x[B,T,D], key_valid[B,T] bool -> [B,T,D]; causal, padding keys masked (a query always sees itself)."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # [B,H,T,Dh] each
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # [T,T]
        allowed = causal[None, None] & key_valid[:, None, None, :]  # [B,1,T,T]
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=x.device)[None, None]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # [B,H,T,Dh]
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    """The routed part: post-LN residual MLP over the selected tokens only. (x_sel, idx, key_valid) -> y_sel."""

    def __init__(self, d: int):
        super().__init__()
        self.up, self.down, self.norm = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), nn.LayerNorm(d)

    def forward(self, x_sel: torch.Tensor, idx: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
        return self.norm(x_sel + self.down(F.gelu(self.up(x_sel))))  # [B,k,D]


class Block(nn.Module):
    def __init__(self, d: int, heads: int, routed: bool, capacity=(1, 4)):
        super().__init__()
        self.attn, self.norm = Attention(d, heads), nn.LayerNorm(d)
        mlp = MLP(d)
        self.mlp = ops.Routed(mlp, d, capacity=capacity, gate="sigmoid") if routed else mlp

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x[B,T,D], mask[B,T] int64 (1 token, 0 padding) -> [B,T,D]."""
        x = self.norm(x + self.attn(x, mask != 0))  # post-LN attention, every token
        if isinstance(self.mlp, ops.Routed):
            return self.mlp(x, mask)  # only the top 1/4 of each row's tokens go through the MLP
        return self.mlp(x, None, None)


class PostLNByteLM(nn.Module):
    """forward(input_ids[B,T] int64, attention_mask[B,T] int64) -> logits[B,T,256]: the contract mod-export needs."""

    def __init__(self, d: int = 96, heads: int = 4, layers: int = 6, route_every: int = 3):
        super().__init__()
        self.embed = nn.Embedding(256, d)
        self.blocks = nn.ModuleList(Block(d, heads, routed=(i % route_every == route_every - 1)) for i in range(layers))
        self.head = nn.Linear(d, 256)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embed(input_ids)  # [B,T,D]
        for block in self.blocks:
            x = block(x, attention_mask)
        return self.head(x).float()  # [B,T,V]
