"""Analytic FLOPs per forward (multiply-add = 2 FLOPs), counting attention's quadratic term.

The ideal MoD speedup over its dense twin is flops(dense) / flops(mod) (docs/design.md (measuring performance)).
"""

from __future__ import annotations

import math

from mod_export.models.config import MoDConfig
from mod_export.models.routing import capacity_k


def block_flops(n: int, d: int, d_mlp: int, cfg: MoDConfig | None = None) -> int:
    """One pre-norm block over n tokens: projections and MLP (2 FLOPs per weight per token), causal attention
    (QK^T and att@V over the full n x n: the mask does not save work). Without cfg: the GPT-style block."""
    return 2 * n * matmul_weights(d, d_mlp, cfg) + 2 * (2 * n * n * d)


def matmul_weights(d: int, d_mlp: int, cfg: MoDConfig | None = None) -> int:
    """Weights a token multiplies with in one block: GPT-style 4 D^2 + 2 D F; Llama-style q/o D^2 each, k/v D x kv
    (grouped-query), SwiGLU 3 D F."""
    if cfg is not None and cfg.arch == "llama":
        kv = cfg.kv_heads * (d // cfg.n_heads)
        return 2 * d * d + 2 * d * kv + 3 * d * d_mlp
    return 4 * d * d + 2 * d * d_mlp


def forward_flops(cfg: MoDConfig, batch: int, seq_len: int, routing_enabled: bool = True) -> dict[str, int]:
    num, den = cfg.capacity_fraction
    routed = set(cfg.routed) if routing_enabled else set()
    k = capacity_k(seq_len, num, den)
    blocks = 0
    routing_ops = 0
    for layer in range(cfg.n_layers):
        if layer in routed:
            blocks += block_flops(k, cfg.d_model, cfg.d_mlp, cfg)
            # router dot product, top-k compare work (~T log2 T), gather/scatter and gated update (~4 k D)
            routing_ops += (
                2 * seq_len * cfg.d_model + int(seq_len * max(1.0, math.log2(max(seq_len, 2)))) + 4 * k * cfg.d_model
            )
        else:
            blocks += block_flops(seq_len, cfg.d_model, cfg.d_mlp, cfg)
    head = 2 * seq_len * cfg.d_model * cfg.vocab_size
    total = batch * (blocks + routing_ops + head)
    return {"total": total, "blocks": batch * blocks, "routing": batch * routing_ops, "lm_head": batch * head}


def ideal_speedup(cfg: MoDConfig, batch: int, seq_len: int) -> float:
    return forward_flops(cfg, batch, seq_len, False)["total"] / forward_flops(cfg, batch, seq_len, True)["total"]
