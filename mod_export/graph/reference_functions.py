"""ONNX function bodies (standard ops only) for MoDTopKGather and MoDScatter, same semantics as
mod_export.models.routing, and for the decode-step ops MoDTakeCount and MoDCacheAppend (docs/generation.md). Attached to the plugin form when it runs in ONNX Runtime, and inlined to
produce the portable form; the file for TensorRT carries none (docs/design.md (custom ONNX ops)).
"""

from __future__ import annotations

import onnx
import onnx.inliner
from onnx import TensorProto, helper

from mod_export.contract import CACHE_APPEND, DOMAIN, OPSET_VERSION, SCATTER, TAKE_COUNT, TOPK_GATHER


def _attr_ref(name: str, ref: str, kind: int) -> onnx.AttributeProto:
    attr = onnx.AttributeProto()
    attr.name, attr.ref_attr_name, attr.type = name, ref, kind
    return attr


def _node(op: str, inputs: list[str], outputs: list[str], **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, **attrs)


def _const_from_attr(output: str, attr: str) -> onnx.NodeProto:
    node = helper.make_node("Constant", [], [output])
    node.attribute.append(_attr_ref("value_int", attr, onnx.AttributeProto.INT))
    return node


def topk_gather_function(opset: int) -> onnx.FunctionProto:
    """(x[B,T,D], scores[B,T] f32, mask[B,T]) -> x_sel[B,k,D], idx[B,k] int32, s_sel[B,k] f32."""
    nodes = [
        _node("Shape", ["x"], ["T"], start=1, end=2),  # [1] int64
        _const_from_attr("num", "capacity_num"),
        _const_from_attr("den", "capacity_den"),
        _node("Constant", [], ["one"], value_int=1),
        _node("Mul", ["T", "num"], ["T_num"]),
        _node("Sub", ["den", "one"], ["den_m1"]),
        _node("Add", ["T_num", "den_m1"], ["T_num_ceil"]),
        _node("Div", ["T_num_ceil", "den"], ["k"]),  # [1] ceil(T*num/den), integer division
        _node("Cast", ["mask"], ["valid"], to=TensorProto.BOOL),
        _node("Constant", [], ["neg_inf"], value_float=float("-inf")),
        _node("Where", ["valid", "scores", "neg_inf"], ["masked"]),  # [B,T] f32
        # ONNX TopK: equal values -> the lower index first (the spec's tie rule = ours).
        _node("TopK", ["masked", "k"], ["top_values", "top_idx"], axis=-1, largest=1, sorted=1),
        _node("TopK", ["top_idx", "k"], ["idx64", "order_unused"], axis=-1, largest=0, sorted=1),  # ascending
        _node("Cast", ["idx64"], ["idx"], to=TensorProto.INT32),
        _node("Unsqueeze", ["idx64", "axis_last"], ["idx3"]),  # [B,k,1]
        _node("GatherND", ["x", "idx3"], ["x_sel"], batch_dims=1),  # [B,k,D]
        _node("GatherElements", ["masked", "idx64"], ["s_sel"], axis=1),  # [B,k]
    ]
    nodes.insert(0, _node("Constant", [], ["axis_last"], value_ints=[-1]))
    return helper.make_function(
        DOMAIN,
        TOPK_GATHER,
        ["x", "scores", "mask"],
        ["x_sel", "idx", "s_sel"],
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=["capacity_num", "capacity_den", "plugin_version", "plugin_namespace"],
    )


def scatter_function(opset: int) -> onnx.FunctionProto:
    """(x[B,T,D], idx[B,k] int32, x_sel[B,k,D], y_sel[B,k,D], s_sel[B,k] f32) -> out[B,T,D]."""
    nodes = [
        _node("Constant", [], ["axis_last"], value_ints=[-1]),
        _node("Constant", [], ["zero_f"], value_float=0.0),
        _node("Constant", [], ["sigmoid_id"], value_int=1),
        _const_from_attr("gate_id", "gate"),
        _node("Sigmoid", ["s_sel"], ["g_sigmoid"]),
        _node("IsInf", ["s_sel"], ["is_pad"], detect_positive=0),  # padding tokens carry -inf
        _node("Where", ["is_pad", "zero_f", "s_sel"], ["g_identity"]),
        _node("Equal", ["gate_id", "sigmoid_id"], ["use_sigmoid"]),
        _node("Where", ["use_sigmoid", "g_sigmoid", "g_identity"], ["g"]),  # [B,k]
        _node("Unsqueeze", ["g", "axis_last"], ["g3"]),  # [B,k,1]
        _node("Cast", ["x_sel"], ["xs"], to=TensorProto.FLOAT),
        _node("Cast", ["y_sel"], ["ys"], to=TensorProto.FLOAT),
        _node("Sub", ["ys", "xs"], ["delta"]),
        _node("Mul", ["g3", "delta"], ["gated"]),
        _node("Add", ["xs", "gated"], ["update_f32"]),
        _node("CastLike", ["update_f32", "x"], ["update"]),
        # ScatterND with (batch, position) index pairs writes whole rows; ScatterElements with indices
        # expanded to [B,k,D] took 4x longer in ONNX Runtime CPU (0.35 vs 0.09 ms at T=D=512, k=64).
        _node("Cast", ["idx"], ["idx64"], to=TensorProto.INT64),
        _node("Unsqueeze", ["idx64", "axis_last"], ["idx3"]),  # [B,k,1]
        _node("Shape", ["x"], ["B1"], start=0, end=1),  # [1]
        _node("Squeeze", ["B1"], ["B"]),  # scalar
        _node("Constant", [], ["zero_i"], value_int=0),
        _node("Constant", [], ["one_i"], value_int=1),
        _node("Range", ["zero_i", "B", "one_i"], ["batch"]),  # [B]
        _node("Constant", [], ["shape_b11"], value_ints=[-1, 1, 1]),
        _node("Reshape", ["batch", "shape_b11"], ["batch3"]),  # [B,1,1]
        _node("Shape", ["idx3"], ["idx3_shape"]),
        _node("Expand", ["batch3", "idx3_shape"], ["batch_full"]),  # [B,k,1]
        _node("Concat", ["batch_full", "idx3"], ["pairs"], axis=-1),  # [B,k,2] (b, idx[b,j])
        _node("ScatterND", ["x", "pairs", "update"], ["out"]),  # no reduction: indices unique
    ]
    return helper.make_function(
        DOMAIN,
        SCATTER,
        ["x", "idx", "x_sel", "y_sel", "s_sel"],
        ["out"],
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=["gate", "plugin_version", "plugin_namespace"],
    )


def take_count_function(opset: int) -> onnx.FunctionProto:
    """take[B] bool -> rows[n] int32 (the taking rows, ascending: NonZero's order), count [] int32 (= n)."""
    nodes = [
        _node("NonZero", ["take"], ["nonzero"]),  # [1,n] int64, ascending
        _node("Constant", [], ["axis0"], value_ints=[0]),
        _node("Squeeze", ["nonzero", "axis0"], ["rows64"]),  # [n]
        _node("Cast", ["rows64"], ["rows"], to=TensorProto.INT32),
        _node("Size", ["rows64"], ["n64"]),  # [] int64
        _node("Cast", ["n64"], ["count"], to=TensorProto.INT32),
    ]
    return helper.make_function(
        DOMAIN,
        TAKE_COUNT,
        ["take"],
        ["rows", "count"],
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=["plugin_version", "plugin_namespace"],
    )


def cache_append_function(opset: int) -> onnx.FunctionProto:
    """(cache[B,H,S,Dh], entry[B,H,1,Dh], length[B] int32/int64, rows[n] int32) -> out[B,H,S,Dh]: cache with
    out[r,:,length[r],:] = entry[r,:,0,:] for r in rows (a length out of [0,S) writes nothing). Out of place here
    (a Where over the whole cache, like ScatterND's copy); the TensorRT plugin writes in place."""
    nodes = [
        _node("Constant", [], ["axis1"], value_ints=[1]),
        _node("Constant", [], ["zero_i"], value_int=0),
        _node("Constant", [], ["one_i"], value_int=1),
        _node("Constant", [], ["zero_32"], value=helper.make_tensor("zero_32", TensorProto.INT32, [], [0])),
        _node("Shape", ["cache"], ["B1"], start=0, end=1),
        _node("Squeeze", ["B1"], ["B"]),
        _node("Shape", ["cache"], ["S1"], start=2, end=3),
        _node("Squeeze", ["S1"], ["S"]),
        _node("Range", ["zero_i", "B", "one_i"], ["batch"]),  # [B]
        _node("Unsqueeze", ["batch", "axis1"], ["batch_col"]),  # [B,1]
        _node("Cast", ["rows"], ["rows64"], to=TensorProto.INT64),
        _node("Constant", [], ["axis0"], value_ints=[0]),
        _node("Unsqueeze", ["rows64", "axis0"], ["rows_row"]),  # [1,n]
        _node("Equal", ["batch_col", "rows_row"], ["listed_bn"]),  # [B,n]
        _node("Cast", ["listed_bn"], ["listed_i"], to=TensorProto.INT32),
        _node("ReduceSum", ["listed_i", "axis1"], ["listed_sum"], keepdims=0),  # [B] (0 when n = 0)
        _node("Greater", ["listed_sum", "zero_32"], ["listed"]),  # [B] bool
        _node("Range", ["zero_i", "S", "one_i"], ["slots"]),  # [S]
        _node("Unsqueeze", ["slots", "axis0"], ["slots_row"]),  # [1,S]
        _node("Cast", ["length"], ["length64"], to=TensorProto.INT64),
        _node("Unsqueeze", ["length64", "axis1"], ["length_col"]),  # [B,1]
        _node("Equal", ["slots_row", "length_col"], ["at_length"]),  # [B,S]
        _node("Unsqueeze", ["listed", "axis1"], ["listed_col"]),  # [B,1]
        _node("And", ["at_length", "listed_col"], ["write_bs"]),  # [B,S]
        _node("Constant", [], ["axes13"], value_ints=[1, 3]),
        _node("Unsqueeze", ["write_bs", "axes13"], ["write"]),  # [B,1,S,1]
        _node("Where", ["write", "entry", "cache"], ["out"]),  # entry [B,H,1,Dh] broadcasts over S
    ]
    return helper.make_function(
        DOMAIN,
        CACHE_APPEND,
        ["cache", "entry", "length", "rows"],
        ["out"],
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=["plugin_version", "plugin_namespace"],
    )


def reference_functions(opset: int) -> list[onnx.FunctionProto]:
    """Bodies written against the model's own default-domain opset (the inliner requires a match)."""
    return [
        topk_gather_function(opset),
        scatter_function(opset),
        take_count_function(opset),
        cache_append_function(opset),
    ]


def default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def attach_reference_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` that carries the reference bodies as local functions (for ONNX Runtime)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    existing = {(f.domain, f.name) for f in out.functions}
    for fn in reference_functions(default_opset(out)):
        if (fn.domain, fn.name) not in existing:
            out.functions.append(fn)
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))
    return out


def strip_reference_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove local functions for our ops (TensorRT 10.3 would prefer them over the plugin)."""
    keep = [f for f in model.functions if f.domain != DOMAIN]
    del model.functions[:]
    model.functions.extend(keep)
    return model


def inline_to_portable(model: onnx.ModelProto) -> onnx.ModelProto:
    """Plugin form -> portable form: attach the reference bodies, inline them, drop the custom domain."""
    portable = onnx.inliner.inline_local_functions(attach_reference_functions(model))
    remaining = [n.op_type for n in portable.graph.node if n.domain == DOMAIN]
    if remaining:
        raise RuntimeError(f"inlining left custom nodes: {remaining}")
    keep = [o for o in portable.opset_import if o.domain != DOMAIN]
    del portable.opset_import[:]
    portable.opset_import.extend(keep)
    return portable
