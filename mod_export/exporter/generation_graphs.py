"""Prefill and decode-step graphs for generation (portable form: standard ONNX ops only), exported from the
causal-routing reference (mod_export.models.causal) with the dynamo exporter. I/O (docs/generation.md):

prefill:  input_ids [B,P] int64, attention_mask [B,P] int64, position_ids [B,P] int64
          -> logits [B,P,V]; per block l: key.l / value.l [B,H,P,Dh] (every prompt token), take.l [B,P] bool
             (which tokens enter block l's cache), and for routed blocks decision.l [B,P] f32
decode:   input_ids [B,1], position_ids [B,1], active [B] bool, and per block l: past_length.l [B] int64,
          past_key_values.l.key / .value [B,H,S,Dh] (left-aligned, valid up to past_length)
          -> logits [B,1,V]; per block l: key.l / value.l [B,H,1,Dh] (the new entry), take.l [B] bool,
             and for routed blocks decision.l [B] f32

The runtime owns the cache: it compacts the prefill's taken entries into its buffers and, after each step, writes
key.l/value.l at past_length.l for the rows where take.l is set; the graphs never copy a cache. A routed block's
work in a decode step sits in an ONNX `If` on "does any row take it": when no row does, none of its weights is
read (at batch 1, every skipped step)."""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import torch
from torch import nn

from mod_export.contract import DEFAULT_OPSET
from mod_export.exporter.tracing import trace_onnx
from mod_export.graph.fusable_patterns import reorder_gelu_for_fusion
from mod_export.graph.weights import WeightStore
from mod_export.models.causal import CausalRecord, block_step, causal_forward, decision, gated_update, routed_layers
from mod_export.models.model import MoDTransformer, RoutedBlock

PREFILL_INPUTS = ("input_ids", "attention_mask", "position_ids")
DECODE_INPUTS = ("input_ids", "position_ids", "active")


def past_names(layer: int) -> tuple[str, str, str]:
    return f"past_length.{layer}", f"past_key_values.{layer}.key", f"past_key_values.{layer}.value"


def step_output_names(layer: int, routed: bool) -> list[str]:
    return [f"key.{layer}", f"value.{layer}", f"take.{layer}", *([f"decision.{layer}"] if routed else [])]


class PrefillGraph(nn.Module):
    def __init__(self, model: MoDTransformer):
        super().__init__()
        self.model = model
        self.routed = set(routed_layers(model))

    def forward(self, input_ids, attention_mask, position_ids):
        record = CausalRecord()
        logits = causal_forward(self.model, input_ids, attention_mask, record=record, positions=position_ids)
        out = [logits]
        for i in range(len(self.model.blocks)):
            out += [record.keys[i], record.values[i], record.take[i]]
            if i in self.routed:
                out.append(record.decision[i])
        return tuple(out)


class DecodeGraph(nn.Module):
    def __init__(self, model: MoDTransformer):
        super().__init__()
        self.model = model
        self.routed = set(routed_layers(model))

    def forward(self, input_ids, position_ids, active, cache: list[torch.Tensor]):
        model = self.model
        x = model.embed(input_ids)  # [B,1,D]
        out = []
        for i, block in enumerate(model.blocks):
            past_len, past_k, past_v = cache[3 * i : 3 * i + 3]
            inner = block.block if isinstance(block, RoutedBlock) else block
            if i in self.routed:
                scores, logits = decision(block, x)  # [B,1] f32
                take = (logits[:, 0] > 0) & active  # [B]

                def compute(x, position_ids, past_k, past_v, past_len, scores, take, block=block, inner=inner):
                    y, k, v = block_step(inner, x, position_ids, past_k, past_v, past_len)
                    fresh = torch.contiguous_format  # torch.cond needs both branches' outputs laid out alike
                    return (
                        gated_update(block, x, y, scores, take[:, None]),
                        k.clone(memory_format=fresh),
                        v.clone(memory_format=fresh),
                    )

                def skip(x, position_ids, past_k, past_v, past_len, scores, take):
                    empty = past_k.new_zeros(past_k.shape[0], past_k.shape[1], 1, past_k.shape[3])
                    return x.clone(), empty, empty.clone()

                x, k, v = torch.cond(
                    take.any(), compute, skip, (x, position_ids, past_k, past_v, past_len, scores, take)
                )
                out += [k, v, take, logits[:, 0]]
            else:
                y, k, v = block_step(inner, x, position_ids, past_k, past_v, past_len)
                x = torch.where(active[:, None, None], y, x)
                out += [k, v, active]
        return (model.lm_head(model.ln_f(x)).float(), *out)


@dataclass
class DecodeForms:
    prefill: onnx.ModelProto
    decode: onnx.ModelProto
    routed_layers: list[int]
    layers: int


def _export(
    module: nn.Module,
    args: tuple,
    dynamic,
    input_names: list[str],
    output_names: list[str],
    opset: int,
    store: WeightStore,
):
    what = f"exporting the {type(module).__name__}"
    proto = trace_onnx(module, args, dynamic, (input_names, output_names), opset, store, what=what)
    reorder_gelu_for_fusion(proto)
    return proto


def export_decode_forms(
    model: MoDTransformer, opset: int = DEFAULT_OPSET, store: WeightStore | None = None
) -> DecodeForms:
    """The prefill and decode graphs of `model` (portable form), with dynamic batch, prompt and cache lengths.
    Their weights go into `store` (a temporary one by default): the same tensors as the forms' are stored once."""
    store = store or WeightStore.temporary()
    model = model.eval()
    cfg = model.config
    B, P, S = 2, 8, 16
    H, Dh = cfg.kv_heads, cfg.d_model // cfg.n_heads  # the cache holds key/value heads
    routed = routed_layers(model)
    n = len(model.blocks)
    batch = torch.export.Dim("batch", min=1, max=4096)
    prompt = torch.export.Dim("prompt", min=2, max=1 << 20)
    cache = torch.export.Dim("cache", min=2, max=1 << 20)
    seeded = torch.Generator().manual_seed(0)  # example inputs are the same every run (and so is the trace key)
    ids = torch.randint(0, cfg.vocab_size, (B, P), generator=seeded)
    mask = torch.ones(B, P, dtype=torch.int64)
    positions = torch.arange(P).expand(B, P).contiguous()
    prefill_outputs = ["logits", *[name for i in range(n) for name in step_output_names(i, i in routed)]]
    with torch.no_grad():
        prefill = _export(
            PrefillGraph(model),
            (ids, mask, positions),
            {
                "input_ids": {0: batch, 1: prompt},
                "attention_mask": {0: batch, 1: prompt},
                "position_ids": {0: batch, 1: prompt},
            },
            list(PREFILL_INPUTS),
            prefill_outputs,
            opset,
            store,
        )
        cache_args, cache_dims, cache_names = [], [], []
        for i in range(n):
            past_k, past_v = torch.randn(B, H, S, Dh, generator=seeded), torch.randn(B, H, S, Dh, generator=seeded)
            cache_args += [torch.full((B,), 3, dtype=torch.int64), past_k, past_v]
            cache_dims += [{0: batch}, {0: batch, 2: cache}, {0: batch, 2: cache}]
            cache_names += list(past_names(i))
        decode = _export(
            DecodeGraph(model),
            (ids[:, :1], positions[:, :1] + 3, torch.ones(B, dtype=torch.bool), cache_args),
            {"input_ids": {0: batch}, "position_ids": {0: batch}, "active": {0: batch}, "cache": cache_dims},
            [*DECODE_INPUTS, *cache_names],
            prefill_outputs,
            opset,
            store,
        )
    return DecodeForms(prefill, decode, routed, n)
