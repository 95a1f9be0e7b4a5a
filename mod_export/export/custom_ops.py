"""The two MoD routing steps as PyTorch custom ops and as ONNX op schemas (DESIGN.md section 3).

During export the model's RoutingOps point at `torch.ops.mod_export.*`; the ONNX exporter then turns each
call into one `mod_export.MoDTopKGather` / `mod_export.MoDScatter` node via a translation table. The
custom ops run the canonical routing in eager mode, so the exporting model still computes the same thing.
"""
from __future__ import annotations

import functools

import torch

from mod_export.models import capture, routing
from mod_export.models.model import RoutingOps

DOMAIN = "mod_export"
OPSET_VERSION = 1
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "mod_export"
TOPK_GATHER = "MoDTopKGather"
SCATTER = "MoDScatter"
FLOAT_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]
MASK_TYPES = ["tensor(int32)"]  # the model casts attention_mask to int32; the TensorRT plugin accepts int32 only


@torch.library.custom_op("mod_export::topk_gather", mutates_args=())
def topk_gather_op(
    x: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, capacity_num: int, capacity_den: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x_sel, idx, s_sel = capture.topk_gather(x, scores, mask, capacity_num, capacity_den)
    return x_sel.contiguous(), idx.contiguous(), s_sel.contiguous()


@topk_gather_op.register_fake
def _topk_gather_fake(x, scores, mask, capacity_num, capacity_den):
    B, T, D = x.shape
    k = routing.capacity_k(T, capacity_num, capacity_den)  # symbolic ceil-div of T
    return x.new_empty(B, k, D), x.new_empty(B, k, dtype=torch.int32), x.new_empty(B, k, dtype=torch.float32)


@torch.library.custom_op("mod_export::scatter", mutates_args=())
def scatter_op(
    x: torch.Tensor, idx: torch.Tensor, x_sel: torch.Tensor, y_sel: torch.Tensor, s_sel: torch.Tensor, gate: int
) -> torch.Tensor:
    return routing.scatter_update(x, idx, x_sel, y_sel, s_sel, gate).contiguous()


@scatter_op.register_fake
def _scatter_fake(x, idx, x_sel, y_sel, s_sel, gate):
    return torch.empty_like(x)


def export_routing_ops() -> RoutingOps:
    return RoutingOps(topk_gather=topk_gather_op, scatter=scatter_op)


# ---------------------------------------------------------------- ONNX side


def plugin_attributes() -> dict[str, str]:
    return {"plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE}


def _infer_topk_gather(ctx) -> None:
    """x_sel: type of x with dim 1 unknown (k = ceil(T*num/den)); idx int32 [B,k]; s_sel f32 [B,k]."""
    from onnx import TensorProto, TypeProto

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
    from onnx import TypeProto

    out = TypeProto()
    out.CopyFrom(ctx.get_input_type(0))
    ctx.set_output_type(0, out)


@functools.lru_cache(maxsize=None)
def register_onnx_schemas() -> None:
    """Register schemas so onnx.checker, shape inference and onnxscript know the two ops (idempotent)."""
    from onnx import defs

    FP, Attr = defs.OpSchema.FormalParameter, defs.OpSchema.Attribute
    AT, Opt = defs.OpSchema.AttrType, defs.OpSchema.FormalParameterOption
    plugin_attrs = [Attr("plugin_version", AT.STRING, "TensorRT plugin version"), Attr("plugin_namespace", AT.STRING, "TensorRT plugin namespace")]
    gather = defs.OpSchema(
        TOPK_GATHER, DOMAIN, OPSET_VERSION,
        "Select the top-k tokens of each row (k = ceil(T*num/den), ties to the lower position, ascending) and gather them.",
        inputs=[FP("x", "T"), FP("scores", "tensor(float)"), FP("mask", "M", param_option=Opt.Optional)],
        outputs=[FP("x_sel", "T"), FP("idx", "tensor(int32)"), FP("s_sel", "tensor(float)")],
        type_constraints=[("T", FLOAT_TYPES, "activations"), ("M", MASK_TYPES, "padding mask, 0 = padding")],
        attributes=[Attr("capacity_num", AT.INT, "capacity numerator"), Attr("capacity_den", AT.INT, "capacity denominator"), *plugin_attrs],
    )
    gather.set_type_and_shape_inference_function(_infer_topk_gather)
    scatter = defs.OpSchema(
        SCATTER, DOMAIN, OPSET_VERSION,
        "out = x; out[b, idx[b,j]] = x_sel + g(s_sel) * (y_sel - x_sel).",
        inputs=[FP("x", "T"), FP("idx", "tensor(int32)"), FP("x_sel", "T"), FP("y_sel", "T"), FP("s_sel", "tensor(float)")],
        outputs=[FP("out", "T")],
        type_constraints=[("T", FLOAT_TYPES, "activations")],
        attributes=[Attr("gate", AT.INT, "0 identity, 1 sigmoid"), *plugin_attrs],
    )
    scatter.set_type_and_shape_inference_function(_infer_scatter)
    for schema in (gather, scatter):
        try:
            defs.get_schema(schema.name, OPSET_VERSION, DOMAIN)
        except defs.SchemaError:
            defs.register_schema(schema)


def translation_table() -> dict:
    """torch custom op -> onnxscript function emitting the plugin-form node."""
    import onnxscript

    register_onnx_schemas()
    custom = onnxscript.values.Opset(DOMAIN, OPSET_VERSION)

    def topk_gather_to_onnx(x, scores, mask, capacity_num: int, capacity_den: int):
        return custom.MoDTopKGather(x, scores, mask, capacity_num=capacity_num, capacity_den=capacity_den, **plugin_attributes())

    def scatter_to_onnx(x, idx, x_sel, y_sel, s_sel, gate: int):
        return custom.MoDScatter(x, idx, x_sel, y_sel, s_sel, gate=gate, **plugin_attributes())

    return {torch.ops.mod_export.topk_gather.default: topk_gather_to_onnx, torch.ops.mod_export.scatter.default: scatter_to_onnx}
