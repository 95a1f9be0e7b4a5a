"""PyTorch MoD model -> ONNX, in the plugin form (custom MoD ops) and the portable form (standard ops only).

One export with the dynamo exporter: routed blocks call the `mod_export::*` custom ops, which a translation
table turns into MoDTopKGather / MoDScatter nodes. The portable form is that graph with the reference
function bodies inlined, so both forms share one definition of the routing semantics.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, replace
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from mod_export import output
from mod_export.contract import DEFAULT_OPSET, INPUT_NAMES, LOGITS, MAX_OPSET, MIN_OPSET
from mod_export.errors import ExportError
from mod_export.exporter import custom_ops
from mod_export.exporter.tracing import trace_onnx
from mod_export.graph.fusable_patterns import reorder_gelu_for_fusion
from mod_export.graph.queries import routing_tensors, scatter_nodes, topk_gather_nodes
from mod_export.graph.reference_functions import inline_to_portable, strip_reference_functions
from mod_export.graph.schemas import register_onnx_schemas
from mod_export.graph.weights import WeightStore, has_external_weights, load_graph, weights_dir
from mod_export.models.model import MoDTransformer, RoutedBlock
from mod_export.models.sources import LoadedModel, as_source


@dataclass
class ExportedForms:
    plugin: onnx.ModelProto  # custom MoD ops, no local functions (the TensorRT file)
    portable: onnx.ModelProto  # standard ops only
    routed_found: int
    routed_expected: int
    idx_outputs: list[str]  # per routed layer (graph order), the tensor holding that layer's idx[B,k]

    @functools.cached_property
    def routing(self) -> list:
        """The routing tensors of the plugin form (graph.queries.routing_tensors), read once per export."""
        return routing_tensors(self.plugin)


def dynamic_shapes(src: LoadedModel):
    """Dynamic batch and sequence for both inputs. A user's model gets seq min = max(2, den + 1): below that
    torch.export guards on k = ceil(T num/den) == 1; the graph holds for every T >= 1 all the same, which
    validation checks (its cases include T = 1 and T < den)."""
    seq_min = 2 if src.builtin is not None else max([2, *(d + 1 for d in src.capacity_denominators())])
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=seq_min, max=1 << 20)
    return tuple({0: batch, 1: seq} for _ in INPUT_NAMES)


def sharing_copy(module: nn.Module) -> nn.Module:
    """A copy of the module's structure and attributes whose parameters and buffers are the original's own tensors
    (not copies): what the exporter may reconfigure (routing ops, eval mode) without touching the user's module
    or holding the weights twice. A full deepcopy held a second copy of every weight for the whole job."""
    shared = {id(t): t for t in (*module.parameters(), *module.buffers())}
    return copy.deepcopy(module, memo=shared)


def _exportable(src: LoadedModel):
    """What torch.onnx.export is given: the archived program, or a copy of the module switched to the custom ops."""
    if src.program is not None:
        return src.program
    try:
        exporting = sharing_copy(src.module).eval()
    except Exception:  # a user's module that cannot be copied is exported as it is (eval mode, no mutation)
        exporting = src.module.eval()
    if isinstance(exporting, MoDTransformer):
        exporting.routing_ops = custom_ops.export_routing_ops()
    return exporting


def _export_raw(src: LoadedModel, opset: int, store: WeightStore) -> onnx.ModelProto:
    """torch.onnx.export (dynamo) with the custom-op translation table (exporter/tracing.py); returns the
    plugin-form proto, its weights written straight into `store` (graph/weights.py)."""
    input_ids, attention_mask = src.inputs()
    dynamic = None if src.program is not None else dynamic_shapes(src)
    return trace_onnx(
        _exportable(src),
        (input_ids, attention_mask),
        dynamic,
        (list(INPUT_NAMES), [LOGITS]),
        opset,
        store,
        translation_table=custom_ops.translation_table(),
    )


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


ROUTER_NAMES = ("router", "predictor")  # submodules kept float32 in a float16 copy: routing decisions stay float32


def half_model(model: nn.Module) -> nn.Module:
    """A float16 copy with each router (and causal predictor) kept float32, so scores are computed in float32 from
    float32 weights (router_scores casts x up); softmax runs on float32 scores by model construction. For a user's
    model the float32 submodules are those whose attribute name ends in "router" or "predictor" (docs/models.md).
    Only the float16 tensors are new memory: the float32 ones are the model's own (sharing_copy)."""
    half = sharing_copy(model).eval()
    kept = {id(t) for module in _float32_modules(half) for t in (*module.parameters(), *module.buffers())}
    converted: dict[int, torch.Tensor] = {}  # tied tensors stay tied
    for module in half.modules():
        for slots in (module._parameters, module._buffers):
            for name, tensor in slots.items():
                if tensor is None or id(tensor) in kept or not tensor.is_floating_point():
                    continue
                if id(tensor) not in converted:
                    low = tensor.detach().half()
                    converted[id(tensor)] = (
                        nn.Parameter(low, tensor.requires_grad) if name in module._parameters else low
                    )
                slots[name] = converted[id(tensor)]
    return half


def _float32_modules(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, MoDTransformer):
        routed = [block for block in model.blocks if isinstance(block, RoutedBlock)]
        return [m for block in routed for m in (block.router, block.predictor) if m is not None]
    return [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1].endswith(ROUTER_NAMES)]


def export_forms(
    model, opset: int = DEFAULT_OPSET, allow_dense: bool = False, half: bool = False, store: WeightStore | None = None
) -> ExportedForms:
    """Export both forms and check that every routing call became one gather/scatter pair. model: a built-in
    MoDTransformer, any nn.Module that calls mod_export.ops, or a LoadedModel (which may hold a .pt2 program).
    half=True exports the float16 copy (half_model); the precision policy is then a graph stage (calibration.fp16).
    The weights go into `store` (a temporary one by default) as soon as torch.onnx hands the graph over: both
    forms reference the same bytes, and no later step carries them in protobuf (graph/weights.py)."""
    check_opset(opset)
    src = as_source(model)
    if half:
        if src.program is not None:
            raise ExportError(
                "float16 from a .pt2 archive is not supported (its weights are frozen in the program): "
                "archive a float16 model, or use --precision int8 / fp32"
            )
        src = replace(src, module=half_model(src.module))
    expected = src.routed_count()
    if expected == 0 and not allow_dense:
        where = "model has no routed blocks" if src.builtin is not None else f"no routing ops found in {src.source}"
        raise ExportError(
            f"{where} (its routed blocks must call mod_export.ops.topk_gather/scatter); "
            "pass --allow-dense to export it as a dense model"
        )
    register_onnx_schemas()
    plugin = _export_raw(src, opset, store or WeightStore.temporary())
    _check_input_ranks(plugin)
    reorder_gelu_for_fusion(plugin)  # before the portable form is derived, so both forms get it
    gathers, scatters = topk_gather_nodes(plugin), scatter_nodes(plugin)
    if len(gathers) != expected or len(scatters) != expected:
        raise ExportError(
            f"routing rewrite found {len(gathers)} MoDTopKGather and {len(scatters)} MoDScatter nodes, "
            f"but the model makes {expected} routing calls"
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
    """onnx.checker full check (including strict shape inference); returns the shape-inferred model. A graph
    whose weights are external is checked as a file beside them (the checker resolves data files from there)."""
    register_onnx_schemas()
    try:
        folder = weights_dir(proto)
        if folder is None or not has_external_weights(proto):
            onnx.checker.check_model(proto, full_check=True)
            return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        return _check_beside_weights(proto, folder)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{what} fails onnx.checker: {first}") from exc


def _check_beside_weights(proto: onnx.ModelProto, folder: Path) -> onnx.ModelProto:
    path = output.scratch_file(folder, ".check-", ".onnx")
    inferred = path.with_suffix(".inferred.onnx")
    try:
        output.write_with(path, lambda p: onnx.save_model(proto, str(p)))
        onnx.checker.check_model(str(path), full_check=True)
        onnx.shape_inference.infer_shapes_path(str(path), str(inferred), check_type=True, strict_mode=True)
        return load_graph(inferred)
    finally:
        output.remove_file(path)
        output.remove_file(inferred)
