"""Canonical MoD routing (docs/design.md (routing semantics)), in one place.

Every backend (ONNX reference functions, the C++ reference, the CUDA kernels) implements exactly these
functions. Shapes: B batch, T sequence, D width, k = capacity_k(T, num, den) selected tokens per row.

Padding refinement of step 7 (applied by every backend): a padding token has score -inf, and its gate is
0 for both gates, so a routed block never updates a padding token (identity * -inf would give NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mod_export.contract import GATE_IDS, capacity_k  # noqa: F401  (re-exported; their home is the contract)


def router_scores(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """s = x . w + b in float32 whatever the dtype of x. x[B,T,D], weight[D], bias[] -> s[B,T] f32.

    The weight goes in as a [D,1] matrix: exported, that is a MatMul ONNX Runtime hands to its GEMM
    (0.1 ms at T=D=512), where a 1-D weight took its generic path (0.6 ms, more than the whole routed
    block's top-k, gather and scatter together)."""
    return torch.matmul(x.float(), weight.float().unsqueeze(-1)).squeeze(-1) + bias.float()  # [B,T]


def mask_scores(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Padding positions (mask == 0) get -inf so that they are chosen last. scores[B,T], mask[B,T]."""
    if mask is None:
        return scores
    return scores.masked_fill(mask == 0, float("-inf"))


def select_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k largest scores per row, ties to the lower position, sorted ascending.

    scores[B,T] f32 -> idx[B,k] int64. A stable descending sort keeps equal scores in position order,
    which is exactly the tie rule; torch.topk makes no such promise.
    """
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices  # [B,T]
    return torch.sort(order[:, :k], dim=-1).values  # [B,k] ascending


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x[B,T,D], idx[B,k] -> x[b, idx[b,j], :] as [B,k,D]."""
    index = idx.long().unsqueeze(-1).expand(-1, -1, x.shape[-1])  # [B,k,D]
    return torch.gather(x, 1, index)


def apply_gate(s_sel: torch.Tensor, gate: int) -> torch.Tensor:
    """g(s) per docs/design.md (routing semantics, step 7), 0 for padding tokens (s = -inf). s_sel[B,k] f32 -> [B,k] f32."""
    if gate == GATE_IDS["sigmoid"]:
        return torch.sigmoid(s_sel)
    if gate == GATE_IDS["identity"]:
        return torch.where(torch.isneginf(s_sel), torch.zeros_like(s_sel), s_sel)
    raise ValueError(f"unknown gate id {gate}")


def gated_update(x: torch.Tensor, y: torch.Tensor, scores: torch.Tensor, take: torch.Tensor, gate: int) -> torch.Tensor:
    """Causal routing's update: x where a token skips, x + g(s) (y - x) where it takes, computed in float32.
    x/y[B,n,D], scores[B,n] f32, take[B,n] bool -> [B,n,D] (dtype of x)."""
    g = apply_gate(scores.float(), gate).unsqueeze(-1)  # [B,n,1]
    updated = (x.float() + g * (y.float() - x.float())).to(x.dtype)
    return torch.where(take.unsqueeze(-1), updated, x)


def topk_gather(x: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor | None, num: int, den: int):
    """The MoDTopKGather op. x[B,T,D], scores[B,T] f32, mask[B,T] or None ->
    x_sel[B,k,D] (dtype of x), idx[B,k] int32 ascending, s_sel[B,k] f32 (-inf at padding)."""
    masked = mask_scores(scores.float(), mask)  # [B,T]
    k = capacity_k(x.shape[1], num, den)
    idx = select_topk(masked, k)  # [B,k] int64
    x_sel = gather_rows(x, idx)  # [B,k,D]
    s_sel = torch.gather(masked, 1, idx)  # [B,k]
    return x_sel, idx.to(torch.int32), s_sel


def scatter_update(x, idx, x_sel, y_sel, s_sel, gate: int) -> torch.Tensor:
    """The MoDScatter op: out = x; out[b, idx[b,j]] = x_sel + g(s_sel) * (y_sel - x_sel).

    x[B,T,D], idx[B,k] int32, x_sel/y_sel[B,k,D], s_sel[B,k] f32 -> out[B,T,D] (dtype of x).
    The update is computed in float32 and cast back; indices are unique, so a plain scatter suffices.
    """
    g = apply_gate(s_sel.float(), gate).unsqueeze(-1)  # [B,k,1]
    update = x_sel.float() + g * (y_sel.float() - x_sel.float())  # [B,k,D]
    index = idx.long().unsqueeze(-1).expand(-1, -1, x.shape[-1])  # [B,k,D]
    return torch.scatter(x, 1, index, update.to(x.dtype))


def membership(idx: torch.Tensor, T: int) -> torch.Tensor:
    """idx[B,k] -> [B,T] float, 1.0 where a token was selected (the predictor's target)."""
    member = torch.zeros(idx.shape[0], T, device=idx.device)
    return member.scatter(1, idx.long(), 1.0)


def bce_with_logits(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean BCE over valid (non-padding) tokens. logits/target[B,T], valid[B,T] bool or None."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if valid is None:
        return loss.mean()
    weight = valid.float()
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)
