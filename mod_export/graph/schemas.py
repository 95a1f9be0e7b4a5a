"""ONNX op schemas of MoDTopKGather and MoDScatter (docs/design.md) and of the decode-step MoDTakeCount and
MoDCacheAppend (docs/generation.md), so that onnx.checker, shape inference and
onnxscript know the two custom ops. ONNX only: the torch-free runtime and the graph passes use it too."""

from __future__ import annotations

import functools

from onnx import TensorProto, TypeProto, defs

from mod_export.contract import (
    CACHE_APPEND,
    DOMAIN,
    OPSET_VERSION,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    SCATTER,
    TAKE_COUNT,
    TOPK_GATHER,
)

FLOAT_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]
MASK_TYPES = ["tensor(int32)"]  # the model casts attention_mask to int32; the TensorRT plugin accepts int32 only


def plugin_attributes() -> dict[str, str]:
    return {"plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE}


def _infer_topk_gather(ctx) -> None:
    """x_sel: type of x with dim 1 unknown (k = ceil(T*num/den)); idx int32 [B,k]; s_sel f32 [B,k]."""
    x_type = ctx.get_input_type(0)
    x_sel = TypeProto()
    x_sel.CopyFrom(x_type)
    dims = x_sel.tensor_type.shape.dim
    if len(dims) == 3:
        dims[1].Clear()
    for out, elem in ((1, TensorProto.INT32), (2, TensorProto.FLOAT)):
        t = TypeProto()
        t.tensor_type.elem_type = elem
        if len(x_type.tensor_type.shape.dim) == 3:
            t.tensor_type.shape.dim.add().CopyFrom(x_type.tensor_type.shape.dim[0])
            t.tensor_type.shape.dim.add()
        ctx.set_output_type(out, t)
    ctx.set_output_type(0, x_sel)


def _infer_scatter(ctx) -> None:
    out = TypeProto()
    out.CopyFrom(ctx.get_input_type(0))
    ctx.set_output_type(0, out)


def _infer_take_count(ctx) -> None:
    """rows: int32 [n] (n data-dependent); count: int32 []."""
    rows = TypeProto()
    rows.tensor_type.elem_type = TensorProto.INT32
    rows.tensor_type.shape.dim.add()
    count = TypeProto()
    count.tensor_type.elem_type = TensorProto.INT32
    count.tensor_type.shape.SetInParent()
    ctx.set_output_type(0, rows)
    ctx.set_output_type(1, count)


FP, Attr = defs.OpSchema.FormalParameter, defs.OpSchema.Attribute
AT, Opt = defs.OpSchema.AttrType, defs.OpSchema.FormalParameterOption


def _plugin_attrs() -> list:
    return [
        Attr("plugin_version", AT.STRING, "TensorRT plugin version"),
        Attr("plugin_namespace", AT.STRING, "TensorRT plugin namespace"),
    ]


def _routing_schemas() -> tuple:
    """TopKGather and Scatter: the ops of a routed block."""
    plugin_attrs = _plugin_attrs()
    gather = defs.OpSchema(
        TOPK_GATHER,
        DOMAIN,
        OPSET_VERSION,
        "Select the top-k tokens of each row (k = ceil(T*num/den), ties to the lower position, ascending) and gather them.",
        inputs=[FP("x", "T"), FP("scores", "tensor(float)"), FP("mask", "M", param_option=Opt.Optional)],
        outputs=[FP("x_sel", "T"), FP("idx", "tensor(int32)"), FP("s_sel", "tensor(float)")],
        type_constraints=[("T", FLOAT_TYPES, "activations"), ("M", MASK_TYPES, "padding mask, 0 = padding")],
        attributes=[
            Attr("capacity_num", AT.INT, "capacity numerator"),
            Attr("capacity_den", AT.INT, "capacity denominator"),
            *plugin_attrs,
        ],
    )
    gather.set_type_and_shape_inference_function(_infer_topk_gather)
    scatter = defs.OpSchema(
        SCATTER,
        DOMAIN,
        OPSET_VERSION,
        "out = x; out[b, idx[b,j]] = x_sel + g(s_sel) * (y_sel - x_sel).",
        inputs=[
            FP("x", "T"),
            FP("idx", "tensor(int32)"),
            FP("x_sel", "T"),
            FP("y_sel", "T"),
            FP("s_sel", "tensor(float)"),
        ],
        outputs=[FP("out", "T")],
        type_constraints=[("T", FLOAT_TYPES, "activations")],
        attributes=[Attr("gate", AT.INT, "0 identity, 1 sigmoid"), *plugin_attrs],
    )
    scatter.set_type_and_shape_inference_function(_infer_scatter)
    return gather, scatter


def _generation_schemas() -> tuple:
    """TakeCount and CacheAppend: the ops of the plugin-form generation graphs."""
    plugin_attrs = _plugin_attrs()
    take_count = defs.OpSchema(
        TAKE_COUNT,
        DOMAIN,
        OPSET_VERSION,
        "rows = the indices b with take[b] set, ascending (int32 [n]); count = n (int32 [], a size tensor).",
        inputs=[FP("take", "tensor(bool)")],
        outputs=[FP("rows", "tensor(int32)"), FP("count", "tensor(int32)")],
        attributes=list(plugin_attrs),
    )
    take_count.set_type_and_shape_inference_function(_infer_take_count)
    cache_append = defs.OpSchema(
        CACHE_APPEND,
        DOMAIN,
        OPSET_VERSION,
        "out = cache; out[r, :, length[r], :] = entry[r, :, 0, :] for r in rows (in place in TensorRT).",
        inputs=[FP("cache", "T"), FP("entry", "T"), FP("length", "L"), FP("rows", "tensor(int32)")],
        outputs=[FP("out", "T")],
        type_constraints=[("T", FLOAT_TYPES, "cache entries"), ("L", ["tensor(int32)", "tensor(int64)"], "lengths")],
        attributes=list(plugin_attrs),
    )
    cache_append.set_type_and_shape_inference_function(_infer_scatter)  # out: cache's type and shape
    return take_count, cache_append


@functools.cache
def register_onnx_schemas() -> None:
    """Register schemas so onnx.checker, shape inference and onnxscript know the four ops (idempotent)."""
    for schema in (*_routing_schemas(), *_generation_schemas()):
        try:
            defs.get_schema(schema.name, OPSET_VERSION, DOMAIN)
        except defs.SchemaError:
            defs.register_schema(schema)
