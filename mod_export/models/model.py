"""A decoder-only Mixture-of-Depths language model (Raposo et al. 2024), in one readable file: GPT-style blocks
here, Llama-style blocks in mod_export.models.llama (config arch), the same routing for both.

Shapes: B batch, T sequence, D d_model, H heads, Dh = D/H head width, V vocab, k selected tokens.
Routed blocks follow docs/design.md (routing semantics) through `mod_export.models.routing`; `RoutingOps` lets the
exporter swap the two routing steps for custom ops without touching the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mod_export.models import capture, routing
from mod_export.models.attention import apply_rotary, attend, attention_bias, rotary_cos_sin, split_heads
from mod_export.models.config import MoDConfig
from mod_export.models.llama import LlamaBlock, RMSNorm
from mod_export.models.memory import check_parameter_memory


@dataclass
class RoutingOps:
    """The two routing steps as callables; eager PyTorch by default, custom ops during export."""

    topk_gather: Callable = capture.topk_gather  # routing.topk_gather, recorded/forced under a RoutingCapture
    scatter: Callable = routing.scatter_update


@dataclass
class RoutingTrace:
    """What one routed block decided, for training losses and statistics."""

    layer: int
    scores: torch.Tensor  # [B,T] f32 raw router scores (before padding mask)
    idx: torch.Tensor  # [B,k] int32 ascending
    predictor_logits: torch.Tensor | None  # [B,T] f32 or None


class CausalSelfAttention(nn.Module):
    """The attention projections of the GPT-style block (its math is in mod_export.models.attention)."""

    def __init__(self, cfg: MoDConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.rope_base = cfg.rope_base
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)


class MLP(nn.Module):
    def __init__(self, cfg: MoDConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.down = nn.Linear(cfg.d_mlp, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """The ordinary pre-LN transformer block, residuals included: y = x + attn(ln(x)); y + mlp(ln(y)).

    forward(x, positions, attn_bias) is qkv() then attention then finish(); generation calls the two halves
    around its own cached attention (mod_export.models.causal)."""

    def __init__(self, cfg: MoDConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def qkv(self, x: torch.Tensor, positions: torch.Tensor):
        """x[B,n,D], positions[B,n] original token positions -> q, k, v [B,H,n,Dh], rotary applied."""
        attn = self.attn
        q, k, v = attn.qkv(self.ln1(x)).split(x.shape[-1], dim=-1)  # [B,n,D] each
        q, k, v = (split_heads(t, attn.n_heads) for t in (q, k, v))  # [B,H,n,Dh]
        cos, sin = rotary_cos_sin(positions, attn.head_dim, attn.rope_base)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """x[B,n,D], attended[B,H,n,Dh] -> the block's output [B,n,D] (projection, MLP, both residuals)."""
        B, H, n, Dh = attended.shape
        y = x + self.attn.proj(attended.transpose(1, 2).reshape(B, n, H * Dh))
        return y + self.mlp(self.ln2(y))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x, positions)
        return self.finish(x, attend(q, k, v, attn_bias))


class CausalPredictor(nn.Module):
    """Small MLP that predicts, from a token's own hidden state, whether top-k would select it.

    Trained on detached inputs and targets (stop-gradient, as in the paper), used for causal decode.
    """

    def __init__(self, cfg: MoDConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.predictor_hidden), nn.GELU(), nn.Linear(cfg.predictor_hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.detach()).squeeze(-1)  # [B,T]


def make_block(cfg: MoDConfig) -> nn.Module:
    """The block of the config's architecture: "gpt" (LayerNorm, GELU MLP, biases) or "llama" (RMSNorm, SwiGLU,
    grouped-query attention, no biases)."""
    return LlamaBlock(cfg) if cfg.arch == "llama" else Block(cfg)


class RoutedBlock(nn.Module):
    """A block that only the top-k tokens of each row go through (docs/design.md (routing semantics))."""

    def __init__(self, cfg: MoDConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.block = make_block(cfg)
        self.router = nn.Linear(cfg.d_model, 1)
        self.capacity_num, self.capacity_den = cfg.capacity_fraction
        self.gate_id = routing.GATE_IDS[cfg.gate]
        self.predictor = CausalPredictor(cfg) if cfg.causal_predictor else None

    def forward(self, x, positions, dense_bias, mask, ops: RoutingOps, routing_enabled: bool, traces: list | None):
        """x[B,T,D], positions[B,T], dense_bias[B,1,T,T] (the dense blocks' attention bias), mask[B,T] int32."""
        if not routing_enabled:  # the dense twin: every token takes the block, no gate
            return self.block(x, positions, dense_bias)
        scores = routing.router_scores(x, self.router.weight[0], self.router.bias[0])  # [B,T] f32
        x_sel, idx, s_sel = ops.topk_gather(x, scores, mask, self.capacity_num, self.capacity_den)
        key_valid_sel = s_sel > float("-inf")  # [B,k] padding tokens carry -inf
        y_sel = self.block(x_sel, idx, attention_bias(key_valid_sel))  # [B,k,D], rotary at original positions idx
        out = ops.scatter(x, idx, x_sel, y_sel, s_sel, self.gate_id)
        if traces is not None:
            pred = self.predictor(x) if self.predictor is not None else None
            traces.append(RoutingTrace(self.layer, scores, idx, pred))
        return out


class MoDTransformer(nn.Module):
    def __init__(self, cfg: MoDConfig, routing_enabled: bool = True):
        check_parameter_memory(cfg.parameter_count(), "this model configuration")  # before any allocation
        super().__init__()
        self.config = cfg
        self.routing_enabled = routing_enabled
        self.routing_ops = RoutingOps()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        routed = set(cfg.routed)
        self.blocks = nn.ModuleList(
            RoutedBlock(cfg, i) if i in routed else make_block(cfg) for i in range(cfg.n_layers)
        )
        llama = cfg.arch == "llama"
        self.ln_f = (
            RMSNorm(cfg.d_model, cfg.layer_norm_eps) if llama else nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        )
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids[B,T] int64, attention_mask[B,T] int64 (1 token, 0 padding) -> logits[B,T,V] f32."""
        return self.forward_trace(input_ids, attention_mask, traces=None)

    def forward_trace(self, input_ids, attention_mask=None, traces: list | None = None) -> torch.Tensor:
        """forward() that also appends one RoutingTrace per routed block to `traces` when given."""
        B, T = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.to(torch.int32)  # [B,T] routing ops' mask type
        dense_bias = attention_bias(attention_mask != 0)  # [B,1,T,T] built once for every dense block
        positions = torch.arange(T, device=input_ids.device).unsqueeze(0).expand(B, T)  # [B,T]
        x = self.embed(input_ids)  # [B,T,D]
        for block in self.blocks:
            if isinstance(block, RoutedBlock):
                x = block(x, positions, dense_bias, mask, self.routing_ops, self.routing_enabled, traces)
            else:
                x = block(x, positions, dense_bias)
        return self.lm_head(self.ln_f(x)).float()  # [B,T,V]

    def dense_twin(self) -> MoDTransformer:
        """The same weights with routing switched off (every token takes every block)."""
        twin = MoDTransformer(self.config, routing_enabled=False)
        twin.load_state_dict(self.state_dict())
        return twin.eval()
