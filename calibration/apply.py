"""The precision stage of an export, typed: options, early checks, and the int8 stage (a pure ONNX pass on the
float32 forms). The fp16 stage is calibration.fp16.fp16_stage on forms exported with half=True. Quality is
judged afterwards by mod_export.validate.quality."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from calibration.data import CalibrationData, load_calibration_data
from calibration.int8 import CalibrationError, check_method, quantize_forms, read_cache
from calibration.stage import StageResult
from mod_export.contract import (
    DEFAULT_CALIBRATION_WINDOWS,
    DEFAULT_EVAL_WINDOWS,
    DEFAULT_MIN_ROUTING_AGREEMENT,
    DEFAULT_ROUTING_GUARD,
)
from mod_export.exporter.onnx_export import ExportedForms


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


def load_calibration(options: PrecisionOptions) -> CalibrationData | None:
    """Load (and so check) calibration data and the cache's format before any slow work; None unless int8."""
    if options.precision != "int8":
        return None
    check_method(options.calib_method)
    cache = options.calib_cache
    if cache is not None and (cache.is_dir() or not cache.absolute().parent.is_dir()):
        raise CalibrationError(f"--calib-cache {cache}: must be a file in an existing directory")
    if cache is not None and cache.is_file():
        read_cache(cache)  # its format now; whether it fits this model and data is checked once both are known
    return load_calibration_data(options.calib_data, windows=options.calib_windows)


def int8_stage(
    float_forms: ExportedForms, calibration: CalibrationData, options: PrecisionOptions, show_progress: bool = True
) -> StageResult:
    """Explicit Q/DQ on both float32 forms from calibration ranges (routers and routing ops stay float32)."""
    q = quantize_forms(
        float_forms.plugin,
        float_forms.portable,
        calibration,
        options.calib_method,
        options.calib_cache,
        show_progress=show_progress,
        routing_guard=options.routing_guard,
    )
    reduced = ExportedForms(
        q.plugin, q.portable, float_forms.routed_found, float_forms.routed_expected, float_forms.idx_outputs
    )
    return StageResult(
        reduced,
        {
            "method": q.method,
            "calibration_data": calibration.source,
            "calibration_sha256": calibration.sha256,
            "calibration_windows": int(len(calibration.windows)),
            "quantized_matmuls": q.quantized_nodes,
            "router_matmuls_float32": q.excluded_router_nodes,
            "float32_for_routing": q.float_for_routing,
            "routing_guard": options.routing_guard,
            "calibration_cache": str(options.calib_cache) if options.calib_cache else None,
        },
    )
