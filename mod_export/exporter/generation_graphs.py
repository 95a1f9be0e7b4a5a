"""Generation graphs (portable form: standard ONNX ops only), exported from the causal-routing reference
(mod_export.models.causal) with the dynamo exporter. I/O (docs/generation.md):

step:     input_ids [B,P] int64, attention_mask [B,P] int64, position_ids [B,P] int64, and per block l:
          past_length.l [B] int64, past_key_values.l.key / .value [B,H,S,Dh] (left-aligned, valid up to past_length)
          -> logits [B,P,V]; per block l: key.l / value.l [B,H,P,Dh] (the new entries), take.l [B,P] bool
             (which new tokens enter block l's cache), and for routed blocks decision.l [B,P] f32
          One graph for both phases, as ONNX Runtime GenAI's decoders do: prefill is a step with no valid cache
          entry (past_length 0), decode a step with P = 1 (attention_mask [B,1] says which rows are active). One
          ONNX Runtime session serves a whole generation, so its weights (and their pre-packed copies) are in
          memory once. The runtimes use it.
prefill / decode (the pair TensorRT's plugin form is made from, mod_export.graph.generation_plugin_form):
          prefill: input_ids, attention_mask, position_ids [B,P] -> as step with no cache inputs;
          decode: input_ids [B,1], position_ids [B,1], active [B] bool and the cache inputs -> as step with P = 1,
          take.l and decision.l [B]

The runtime owns the cache: it compacts the new taken entries into its buffers at each row's past_length.l; the
graphs never copy a cache. A routed block's work sits in an ONNX `If` on "does any new token take it": when none
does, none of its weights is read (at batch 1, every skipped decode step)."""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import torch
from torch import nn

from mod_export.contract import DEFAULT_OPSET, STEP_TOKENS_AXIS
from mod_export.exporter.tracing import trace_onnx
from mod_export.graph.fusable_patterns import reorder_gelu_for_fusion
from mod_export.graph.weights import WeightStore
from mod_export.models.causal import (
    CausalRecord,
    block_chunk,
    block_step,
    causal_forward,
    decision,
    gated_update,
    new_token_mask,
    routed_layers,
    token_order,
)
from mod_export.models.model import MoDTransformer, RoutedBlock

PREFILL_INPUTS = ("input_ids", "attention_mask", "position_ids")  # also the step graph's, before the cache inputs
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


class StepGraph(nn.Module):
    """P >= 1 new tokens per row against a past cache of S >= 1 entries (past_length of them valid)."""

    def __init__(self, model: MoDTransformer):
        super().__init__()
        self.model = model
        self.routed = set(routed_layers(model))

    def forward(self, input_ids, attention_mask, position_ids, cache: list[torch.Tensor]):
        model = self.model
        valid = attention_mask != 0  # [B,P]
        x = model.embed(input_ids)  # [B,P,D]
        order = token_order(input_ids.shape[1], input_ids.device)  # [P,P] x2, once for every block
        dense_mask = new_token_mask(valid, order)  # [B,1,P,P], the same for every dense block
        out = []
        for i, block in enumerate(model.blocks):
            past_len, past_k, past_v = cache[3 * i : 3 * i + 3]
            inner = block.block if isinstance(block, RoutedBlock) else block
            if i in self.routed:
                scores, logits = decision(block, x)  # [B,P] f32
                take = (logits > 0) & valid  # [B,P]

                def compute(x, position_ids, past_k, past_v, past_len, scores, take, block=block, inner=inner):
                    allowed = new_token_mask(take, token_order(x.shape[1], x.device))
                    y, k, v = block_chunk(inner, x, position_ids, allowed, past_k, past_v, past_len)
                    fresh = torch.contiguous_format  # torch.cond needs both branches' outputs laid out alike
                    return (
                        gated_update(block, x, y, scores, take),
                        k.clone(memory_format=fresh),
                        v.clone(memory_format=fresh),
                    )

                def skip(x, position_ids, past_k, past_v, past_len, scores, take):
                    empty = past_k.new_zeros(past_k.shape[0], past_k.shape[1], x.shape[1], past_k.shape[3])
                    return x.clone(), empty, empty.clone()

                x, k, v = torch.cond(
                    take.any(), compute, skip, (x, position_ids, past_k, past_v, past_len, scores, take)
                )
                out += [k, v, take, logits]
            else:
                y, k, v = block_chunk(inner, x, position_ids, dense_mask, past_k, past_v, past_len)
                x = torch.where(valid[:, :, None], y, x)
                out += [k, v, valid]
        return (model.lm_head(model.ln_f(x)).float(), *out)


@dataclass
class DecodeForms:
    step: onnx.ModelProto
    prefill: onnx.ModelProto | None  # the pair the plugin form is made from (None: not asked for)
    decode: onnx.ModelProto | None
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


def _cache_examples(layers: int, shape: tuple, batch, cache, seeded: torch.Generator) -> tuple[list, list, list]:
    """(example tensors, dynamic axes, names) of every block's cache inputs: past_length [B] (3 valid entries) and
    keys/values of `shape` [B,H,S,Dh]."""
    args, dims, names = [], [], []
    for i in range(layers):
        past_k, past_v = torch.randn(*shape, generator=seeded), torch.randn(*shape, generator=seeded)
        args += [torch.full((shape[0],), 3, dtype=torch.int64), past_k, past_v]
        dims += [{0: batch}, {0: batch, 2: cache}, {0: batch, 2: cache}]
        names += list(past_names(i))
    return args, dims, names


def export_decode_forms(
    model: MoDTransformer, opset: int = DEFAULT_OPSET, store: WeightStore | None = None, pair: bool = True
) -> DecodeForms:
    """The step graph of `model` and, with `pair`, the prefill/decode pair (portable form), with dynamic batch,
    token and cache lengths. Their weights go into `store` (a temporary one by default): every graph's tensors
    are the same, stored once."""
    store = store or WeightStore.temporary()
    model = model.eval()
    cfg = model.config
    B, P, S = 2, 8, 16
    H, Dh = cfg.kv_heads, cfg.d_model // cfg.n_heads  # the cache holds key/value heads
    routed = routed_layers(model)
    n = len(model.blocks)
    batch = torch.export.Dim("batch", min=1, max=4096)
    prompt = torch.export.Dim("prompt", min=2, max=1 << 20)
    tokens = torch.export.Dim(STEP_TOKENS_AXIS, min=2, max=1 << 20)
    cache = torch.export.Dim("cache", min=2, max=1 << 20)
    seeded = torch.Generator().manual_seed(0)  # example inputs are the same every run (and so is the trace key)
    ids = torch.randint(0, cfg.vocab_size, (B, P), generator=seeded)
    mask = torch.ones(B, P, dtype=torch.int64)
    positions = torch.arange(P).expand(B, P).contiguous()
    outputs = ["logits", *[name for i in range(n) for name in step_output_names(i, i in routed)]]
    cache_args, cache_dims, cache_names = _cache_examples(n, (B, H, S, Dh), batch, cache, seeded)
    token_axes = {0: batch, 1: tokens}
    with torch.no_grad():
        step = _export(
            StepGraph(model),
            (ids, mask, positions + 3, cache_args),
            {"input_ids": token_axes, "attention_mask": token_axes, "position_ids": token_axes, "cache": cache_dims},
            [*PREFILL_INPUTS, *cache_names],
            outputs,
            opset,
            store,
        )
        if not pair:
            return DecodeForms(step, None, None, routed, n)
        prompt_axes = {0: batch, 1: prompt}
        prefill = _export(
            PrefillGraph(model),
            (ids, mask, positions),
            {"input_ids": prompt_axes, "attention_mask": prompt_axes, "position_ids": prompt_axes},
            list(PREFILL_INPUTS),
            outputs,
            opset,
            store,
        )
        decode = _export(
            DecodeGraph(model),
            (ids[:, :1], positions[:, :1] + 3, torch.ones(B, dtype=torch.bool), cache_args),
            {"input_ids": {0: batch}, "position_ids": {0: batch}, "active": {0: batch}, "cache": cache_dims},
            [*DECODE_INPUTS, *cache_names],
            outputs,
            opset,
            store,
        )
    return DecodeForms(step, prefill, decode, routed, n)
