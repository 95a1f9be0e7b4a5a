"""PyTorch MoD model -> ONNX, in the plugin form (custom MoD ops) and the portable form (standard ops only).

One export with the dynamo exporter: routed blocks call the `mod_export::*` custom ops, which a translation
table turns into MoDTopKGather / MoDScatter nodes. The portable form is that graph with the reference
function bodies inlined, so both forms share one definition of the routing semantics.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from dataclasses import dataclass

import onnx
import torch

from mod_export.contract import DEFAULT_OPSET, INPUT_NAMES, LOGITS, MAX_OPSET, MIN_OPSET
from mod_export.errors import ExportError
from mod_export.export import custom_ops
from mod_export.graph.fusable_patterns import reorder_gelu_for_fusion
from mod_export.graph.queries import scatter_nodes, topk_gather_nodes
from mod_export.graph.reference_functions import inline_to_portable, strip_reference_functions
from mod_export.graph.schemas import register_onnx_schemas
from mod_export.models.model import MoDTransformer, RoutedBlock

EXAMPLE_SHAPE = (2, 48)  # (B, T) traced; both axes are dynamic in the exported graph


@dataclass
class ExportedForms:
    plugin: onnx.ModelProto  # custom MoD ops, no local functions (the TensorRT file)
    portable: onnx.ModelProto  # standard ops only
    routed_found: int
    routed_expected: int
    idx_outputs: list[str]  # per routed layer (graph order), the tensor holding that layer's idx[B,k]


def _export_raw(model: MoDTransformer, opset: int) -> onnx.ModelProto:
    """Run torch.onnx.export (dynamo) with the custom-op translation table; returns the plugin-form proto."""
    exporting = copy.deepcopy(model).eval()
    exporting.routing_ops = custom_ops.export_routing_ops()
    B, T = EXAMPLE_SHAPE
    vocab = model.config.vocab_size
    input_ids = torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones(B, T, dtype=torch.int64)
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=2, max=1 << 20)
    dynamic = {name: {0: batch, 1: seq} for name in INPUT_NAMES}
    log = io.StringIO()
    torch_onnx_logger = logging.getLogger("torch.onnx")
    previous_level = torch_onnx_logger.level
    torch_onnx_logger.setLevel(logging.ERROR)  # "torchvision is not installed" notes are noise here
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                exporting,
                (input_ids, attention_mask),
                dynamo=True,
                dynamic_shapes=dynamic,
                input_names=list(INPUT_NAMES),
                output_names=[LOGITS],
                opset_version=opset,
                custom_translation_table=custom_ops.translation_table(),
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        summary = next((ln.strip() for ln in str(exc).splitlines() if "Error" in ln or "error" in ln), str(exc)[:200])
        raise ExportError(f"torch.onnx.export failed: {summary}") from exc
    finally:
        torch_onnx_logger.setLevel(previous_level)
    proto = program.model_proto
    proto.producer_name = "mod-export"
    return proto


def _check_input_ranks(proto: onnx.ModelProto) -> None:
    """Both inputs are [batch, seq]. (Dim('seq', min=2) is only torch.export's 0/1-specialisation guard;
    the graph holds for T=1 too, which validation and the T sweep test.)"""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.name in INPUT_NAMES and len(dims) != 2:
            raise ExportError(f"input {value.name} has rank {len(dims)}, expected 2")


def check_opset(opset: int) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ExportError(f"opset must be an integer, got {opset!r}")
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset} is below {MIN_OPSET}, the lowest this exporter supports (torch's ONNX function library targets opset 18)"
        )
    if opset > MAX_OPSET:
        raise ExportError(
            f"opset {opset} is above {MAX_OPSET}, the highest this exporter supports (ONNX Runtime has no "
            "kernels for newer versions of some ops it would emit)"
        )


def half_model(model: MoDTransformer) -> MoDTransformer:
    """A float16 copy with each router (and causal predictor) kept float32, so scores are computed in float32 from
    float32 weights (router_scores casts x up); softmax runs on float32 scores by model construction."""
    half = copy.deepcopy(model).half().eval()
    for block in half.blocks:
        if isinstance(block, RoutedBlock):
            block.router.float()
            if block.predictor is not None:
                block.predictor.float()
    return half


def export_forms(
    model: MoDTransformer, opset: int = DEFAULT_OPSET, allow_dense: bool = False, half: bool = False
) -> ExportedForms:
    """Export both forms and check that every routed block became one gather/scatter pair. half=True exports the
    model's float16 copy (half_model); the precision policy is then a graph stage (calibration.fp16)."""
    check_opset(opset)
    if half:
        model = half_model(model)
    expected = sum(isinstance(b, RoutedBlock) for b in model.blocks) if model.routing_enabled else 0
    if expected == 0 and not allow_dense:
        raise ExportError(
            "model has no routed blocks (nothing MoD to export); pass --allow-dense to export it as a dense model"
        )
    register_onnx_schemas()
    plugin = _export_raw(model, opset)
    _check_input_ranks(plugin)
    reorder_gelu_for_fusion(plugin)  # before the portable form is derived, so both forms get it
    gathers, scatters = topk_gather_nodes(plugin), scatter_nodes(plugin)
    if len(gathers) != expected or len(scatters) != expected:
        raise ExportError(
            f"routing rewrite found {len(gathers)} MoDTopKGather and {len(scatters)} MoDScatter nodes, "
            f"but the model has {expected} routed blocks"
        )
    for node in gathers + scatters:
        attrs = {a.name: a for a in node.attribute}
        if attrs.get("plugin_namespace") is None or attrs.get("plugin_version") is None:
            raise ExportError(f"{node.op_type} node {node.name!r} lacks plugin_version/plugin_namespace")
    strip_reference_functions(plugin)
    try:
        portable = inline_to_portable(plugin)
    except RuntimeError as exc:
        raise ExportError(f"building the portable form failed: {exc}") from exc
    return ExportedForms(plugin, portable, len(gathers), expected, [g.output[1] for g in gathers])


def check_model(proto: onnx.ModelProto, what: str) -> onnx.ModelProto:
    """onnx.checker full check (including strict shape inference); returns the shape-inferred model."""
    register_onnx_schemas()
    try:
        onnx.checker.check_model(proto, full_check=True)
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{what} fails onnx.checker: {first}") from exc
