"""The precision step of an export: turn the float32 forms into fp16 or int8 forms (their quality is judged by
mod_export.validate.quality)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mod_export.contract import (DEFAULT_CALIBRATION_WINDOWS, DEFAULT_EVAL_WINDOWS, DEFAULT_MIN_ROUTING_AGREEMENT,
                                 DEFAULT_ROUTING_GUARD)
from mod_export.errors import ModExportError



@dataclass
class PrecisionOptions:
    precision: str = "fp32"
    calib_data: Path | None = None
    calib_method: str = "percentile"
    calib_cache: Path | None = None
    calib_windows: int = DEFAULT_CALIBRATION_WINDOWS
    routing_guard: float | None = DEFAULT_ROUTING_GUARD
    min_routing_agreement: float = DEFAULT_MIN_ROUTING_AGREEMENT
    eval_windows: int = DEFAULT_EVAL_WINDOWS


def load_calibration(options: PrecisionOptions):
    """Load (and so check) calibration data before any slow work; None unless int8."""
    if options.precision != "int8":
        return None
    from calibration.data import load_calibration_data
    from calibration.int8 import CalibrationError, check_method, read_cache

    check_method(options.calib_method)  # before any slow work
    cache = options.calib_cache
    if cache is not None and (cache.is_dir() or not cache.absolute().parent.is_dir()):
        raise CalibrationError(f"--calib-cache {cache}: must be a file in an existing directory")
    if cache is not None and cache.is_file():
        read_cache(cache)  # its format now; whether it fits this model and data is checked once both are known
    return load_calibration_data(options.calib_data, windows=options.calib_windows)


def reduce_precision(model, forms, options: PrecisionOptions, calibration, opset: int, allow_dense: bool):
    """-> (reduced forms, details for report.json)."""
    if options.precision == "fp16":
        from calibration.fp16 import convert_forms_fp16

        return convert_forms_fp16(model, opset, allow_dense), {"policy": "float16 weights/activations; float32 routers, "
                                                              "softmax, LayerNorm statistics (stash_type=1), routing scores"}
    if options.precision == "int8":
        from calibration.int8 import quantize_forms

        q = quantize_forms(forms.plugin, forms.portable, calibration, options.calib_method, options.calib_cache,
                           routing_guard=options.routing_guard)
        reduced = type(forms)(q.plugin, q.portable, forms.routed_found, forms.routed_expected, forms.idx_outputs)
        return reduced, {
            "method": q.method, "calibration_data": calibration.source, "calibration_sha256": calibration.sha256,
            "calibration_windows": int(len(calibration.windows)), "quantized_matmuls": q.quantized_nodes,
            "router_matmuls_float32": q.excluded_router_nodes, "float32_for_routing": q.float_for_routing,
            "routing_guard": options.routing_guard, "calibration_cache": str(options.calib_cache) if options.calib_cache else None,
        }
    raise ModExportError(f"unknown precision {options.precision!r}")
