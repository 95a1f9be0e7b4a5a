"""INT8: explicit QuantizeLinear/DequantizeLinear from calibration data, with ONNX Runtime's quantisation
tools (decision and evidence in calibration/README.md).

Symmetric int8, zero-point 0, per-channel weights (axis 1 of MatMul's [K, N] weight) and per-tensor
activations; only MatMuls with a constant weight are quantised, never a router (found by structure) nor
the routing ops. Calibration runs once on the portable form; the same tensor ranges then quantise both
forms (tensor names outside the routing ops are shared). The ranges are cached with the model's and the
data's hashes (`--calib-cache`)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

from calibration.data import CalibrationData
from calibration.evaluate import agreement_per_layer, run_indices
from mod_export import output
from mod_export.contract import (
    ATTENTION_MASK,
    CALIBRATION_CACHE_FORMAT,
    CALIBRATION_METHODS,
    DEFAULT_ROUTING_GUARD,
    INPUT_IDS,
)
from mod_export.errors import ModExportError
from mod_export.graph.queries import idx_tensor_names, router_nodes
from mod_export.graph.weights import externalize, graph_sha256, materialized, store_of
from mod_export.progress import progress

METHODS = dict(zip(CALIBRATION_METHODS, ("MinMax", "Percentile", "Entropy")))  # ours -> ORT CalibrationMethod
CACHE_FORMAT = CALIBRATION_CACHE_FORMAT  # 2: entropy/percentile bin counts really applied


class CalibrationError(ModExportError):
    """Calibration inputs are unusable (unknown method, cache from another model, ...)."""


@dataclass
class QuantizedForms:
    plugin: onnx.ModelProto
    portable: onnx.ModelProto
    method: str
    quantized_nodes: list[str]
    excluded_router_nodes: list[str]
    float_for_routing: dict[str, float]  # MatMuls kept float: node -> worst routing agreement when quantised alone
    cache: dict


def check_method(method: str) -> None:
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})")


def read_cache(cache_file: Path) -> dict:
    """A calibration cache's content, after checking that it is one, in this version's format."""
    try:
        saved = json.loads(cache_file.read_text())
        if not isinstance(saved, dict):
            raise json.JSONDecodeError("not an object", "", 0)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"calibration cache {cache_file} is not readable JSON ({type(exc).__name__})") from None
    found = saved.get("format")
    if found != CACHE_FORMAT:
        if str(found).startswith("mod_export.calibration/"):
            raise CalibrationError(
                f"calibration cache {cache_file} has format {found}, this version writes {CACHE_FORMAT}; delete it to recalibrate"
            )
        raise CalibrationError(f"{cache_file} is not a mod-export calibration cache")
    return saved


def model_sha256(model: onnx.ModelProto) -> str:
    """The graph and its weights' bytes (graph/weights.py: the weights are not in the proto)."""
    return graph_sha256(model)


def weight_matmuls(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(MatMuls with an initializer weight that are not routers, router MatMuls), by node name."""
    initializers = {t.name for t in model.graph.initializer}
    routers = {n.name for n in router_nodes(model)}
    quantize, excluded = [], []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in initializers:
            (excluded if node.name in routers else quantize).append(node.name)
    return quantize, excluded


def _reader(data: CalibrationData, show_progress: bool):
    class WindowReader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(progress(range(len(data.windows)), desc="calibrating", enabled=show_progress))

        def get_next(self):
            i = next(self._it, None)
            if i is None:
                return None
            ids = data.windows[i : i + 1]
            return {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)}

        def __len__(self):
            return len(data.windows)

    return WindowReader()


# Calibrator settings, passed to ORT's create_calibrator directly: quantize_static forwards only a few
# Calib* options and silently drops the bin counts, so entropy ran with 128 histogram bins = 128 quantised
# bins and could only ever pick the full range (its ranges came out identical to min-max). 2048 bins searched
# down to 128 quantised bins is TensorRT's entropy calibration.
CALIBRATOR_OPTIONS = {
    "minmax": {"symmetric": True, "moving_average": False},
    "percentile": {"symmetric": True, "num_bins": 2048, "percentile": 99.999},
    "entropy": {"symmetric": True, "num_bins": 2048, "num_quantized_bins": 128},
}


@contextlib.contextmanager
def _quiet_ort():
    """ORT's calibrators print progress notes and log "consider pre-processing" on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _calibrate(model: onnx.ModelProto, method: str, ranges_path: Path, reader) -> None:
    """Collect activation statistics over the reader's windows and write ORT's tensor-range cache."""
    with output.scratch_dir(prefix="mod_export_calib_") as tmp, _quiet_ort():
        path = Path(tmp) / "model.onnx"
        private = materialized(model)  # ORT's calibrator reads the values; saving it rewrites the proto in place
        output.write_with(path, lambda p: onnx.save_model(private, str(p), save_as_external_data=True))
        calibrator = create_calibrator(
            path,
            ["MatMul", "Gemm"],
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
            providers=["CPUExecutionProvider"],
            extra_options=dict(CALIBRATOR_OPTIONS[method]),
        )
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), ranges_path)


def _quantize(
    model: onnx.ModelProto, nodes: list[str], excluded: list[str], method: str, ranges_path: Path
) -> onnx.ModelProto:
    """Q/DQ for `nodes` from the cached ranges in ranges_path (no recalibration)."""
    private = materialized(model)  # quantize_static reads the weights and rewrites the proto in place
    with output.scratch_dir(prefix="mod_export_q_") as tmp, _quiet_ort():
        out = Path(tmp) / "quantized.onnx"
        quantize_static(
            private,
            out,
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_quantize=nodes,
            nodes_to_exclude=excluded,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
            calibration_providers=["CPUExecutionProvider"],
            calibration_cache_path=ranges_path,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1, "Gemm": 0},
            },
        )
        return externalize(onnx.load(str(out)), store_of(model))  # beside the float weights


def routing_sensitivity(
    portable: onnx.ModelProto,
    plugin: onnx.ModelProto,
    nodes: list[str],
    excluded: list[str],
    method: str,
    ranges_path: Path,
    data: CalibrationData,
    guard: float,
    show_progress: bool,
) -> dict[str, float]:
    """Quantise each MatMul alone (cached ranges, no recalibration) and measure routing agreement with the
    float32 model on the calibration windows; returns the MatMuls whose worst routed layer falls below guard."""
    if not idx_tensor_names(plugin):
        return {}
    reference = run_indices(portable, plugin, data.windows)
    sensitive = {}
    for node in progress(nodes, desc="routing sensitivity", enabled=show_progress):
        got = run_indices(_quantize(portable, [node], excluded, method, ranges_path), plugin, data.windows)
        worst = min(agreement_per_layer(reference, got).values())
        if worst < guard:
            sensitive[node] = worst
    return sensitive


def _reusable_cache(
    cache_file: Path | None, model_hash: str, method: str, data: CalibrationData, routing_guard: float | None
) -> tuple[dict | None, dict[str, float] | None]:
    """(tensor ranges, float-kept nodes) of a calibration cache made for this model, method and data: the ranges
    are reused; the float-kept nodes only when the routing guard is the same. (None, None) without a cache file.
    A cache made for something else is an error (never silently recalibrated over)."""
    if cache_file is None or not cache_file.is_file():
        return None, None
    saved = read_cache(cache_file)
    if saved.get("model_sha256") != model_hash:
        raise CalibrationError(f"calibration cache {cache_file} was made for another model (model hash mismatch)")
    if saved.get("method") != method:
        raise CalibrationError(f"calibration cache {cache_file} holds {saved.get('method')} ranges, not {method}")
    if saved.get("data_sha256") != data.sha256:
        raise CalibrationError(
            f"calibration cache {cache_file} was made from other calibration data (data hash mismatch)"
        )
    ranges = saved.get("tensor_ranges")
    if not isinstance(ranges, dict):
        raise CalibrationError(f"calibration cache {cache_file} has no tensor ranges; delete it to recalibrate")
    kept = dict(saved.get("float_for_routing", {})) if saved.get("routing_guard") == routing_guard else None
    return ranges, kept


def quantize_forms(
    plugin: onnx.ModelProto,
    portable: onnx.ModelProto,
    data: CalibrationData,
    method: str,
    cache_file: Path | None = None,
    show_progress: bool = True,
    routing_guard: float | None = DEFAULT_ROUTING_GUARD,
) -> QuantizedForms:
    """routing_guard: a MatMul whose quantisation alone drops any routed layer's routing agreement (on the
    calibration windows) below this stays float ("routing-aware"); None quantises every eligible MatMul."""
    check_method(method)
    model_hash = model_sha256(portable)
    nodes, excluded = weight_matmuls(plugin)
    if not nodes:
        raise CalibrationError("the model has no MatMul with a constant weight to quantise")
    ort_cache, cached_float = _reusable_cache(cache_file, model_hash, method, data, routing_guard)
    with output.scratch_dir(prefix="mod_export_calib_") as tmp:
        ort_path = Path(tmp) / "ranges.json"
        if ort_cache is not None:
            output.write_text(ort_path, json.dumps(ort_cache))
        if ort_cache is None:  # calibrate once (the ranges land in ort_path)
            _calibrate(portable, method, ort_path, _reader(data, show_progress))
        float_nodes = cached_float
        if float_nodes is None:
            float_nodes = (
                {}
                if routing_guard is None
                else routing_sensitivity(
                    portable, plugin, nodes, excluded, method, ort_path, data, routing_guard, show_progress
                )
            )
        chosen = [n for n in nodes if n not in float_nodes]
        skip = excluded + list(float_nodes)
        q_portable = _quantize(portable, chosen, skip, method, ort_path)
        q_plugin = _quantize(plugin, chosen, skip, method, ort_path)  # same ranges for both forms
        ranges = json.loads(ort_path.read_text())
    cache = {
        "format": CACHE_FORMAT,
        "model_sha256": model_hash,
        "method": method,
        "data_sha256": data.sha256,
        "data_source": data.source,
        "windows": int(len(data.windows)),
        "routing_guard": routing_guard,
        "float_for_routing": float_nodes,
        "tensor_ranges": ranges,
    }
    if cache_file is not None and (ort_cache is None or cached_float is None):
        # atomic, locked, and only over a calibration cache of ours (read above, so it is one)
        with output.Target(cache_file, output.kinds.CALIBRATION_CACHE, force=True, option="--calib-cache") as out:
            out.put_text(json.dumps(cache))
    for proto in (q_plugin, q_portable):
        proto.producer_name = "mod-export"
    return QuantizedForms(q_plugin, q_portable, method, chosen, excluded, float_nodes, cache)
