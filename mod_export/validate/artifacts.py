"""The validation of an export as a whole, shared by the export job and `mod-export validate DIR`:

- float32 forms: two-part parity against PyTorch at fp32 tolerances, and router health;
- fp16 / int8 forms: two-part parity at their precision's tolerances, and held-out quality (bits per byte,
  raw and margin-aware routing agreement) against the float32 reference.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx

from mod_export.backends.trt.runner import EngineRunner
from mod_export.contract import (
    DEFAULT_EVAL_WINDOWS,
    DEFAULT_MIN_ROUTING_AGREEMENT,
    WINDOW_BYTES,
    tolerance_for,
)
from mod_export.data.corpus import fixed_windows, held_out_split, load_stdlib_corpus
from mod_export.parity.health import format_health
from mod_export.parity.verdict import fold
from mod_export.validate.forms import HEALTH_WINDOWS, validate_onnx_forms, validate_runners
from mod_export.validate.judge import format_table
from mod_export.validate.quality import format_quality, quality_report

logger = logging.getLogger(__name__)


def evaluation_text() -> np.ndarray:
    """The evaluation part of the example corpus' held-out slice (calibration never sees it)."""
    return held_out_split(load_stdlib_corpus().held_out).evaluation


def validate_artifacts(
    model,
    forms: dict[str, onnx.ModelProto],
    precision: str = "fp32",
    float_forms: dict[str, onnx.ModelProto] | None = None,
    atol: float | None = None,
    eval_windows: int = DEFAULT_EVAL_WINDOWS,
    min_routing_agreement: float = DEFAULT_MIN_ROUTING_AGREEMENT,
) -> dict:
    """forms / float_forms: {"portable": proto, "plugin": proto}. `forms` are at `precision`; `float_forms` (the
    float32 forms of a reduced-precision export, when available) are checked at fp32 first. Returns the parity
    entry of report.json: {"passed", "mismatches", "forms", "router_health", ["reduced_precision", "quality"]}."""
    text = evaluation_text()
    health = fixed_windows(text, HEALTH_WINDOWS, WINDOW_BYTES)
    fp32 = forms if precision == "fp32" else float_forms
    report: dict | None = None
    if fp32 is not None:
        logger.info("validating PyTorch vs ONNX Runtime (CPU) for both float32 forms ...")
        tolerance = tolerance_for("fp32", atol)
        report = validate_onnx_forms(
            model, fp32, fp32["plugin"], text, precision="fp32", tolerance=tolerance, health_windows=health
        )
    if precision == "fp32":
        return report
    logger.info("validating the %s forms at their precision ...", precision)
    reduced = validate_onnx_forms(
        model, forms, forms["plugin"], text, precision=precision, health_windows=health if report is None else None
    )
    logger.info("checking %s against float32 on held-out text ...", precision)
    quality = quality_report(
        model,
        forms,
        forms["plugin"],
        fixed_windows(text, eval_windows, WINDOW_BYTES + 1),
        precision,
        min_routing_agreement,
    )
    if report is None:  # a reduced-precision directory on its own
        report = {
            "precision": precision,
            "forms": {},
            "mismatches": [],
            "passed": True,
            "router_health": reduced.pop("router_health", None),
        }
    report["reduced_precision"] = reduced
    report["quality"] = quality
    return fold(fold(report, reduced), quality)


def validate_engine(
    model, engine: Path, plugin_library: Path | None, forms, precision: str = "fp32", atol: float | None = None
) -> dict:
    """A TensorRT engine (built with every routed layer's idx as an output) against PyTorch, at `precision`.
    Runs only where TensorRT and a GPU are (the engine exists only there)."""
    tolerance = tolerance_for(precision, atol)
    runner = EngineRunner(engine, plugin_library, list(forms.idx_outputs), name="tensorrt")
    return validate_runners(model, [runner], forms.plugin, evaluation_text(), precision, tolerance)


def format_validation(report: dict) -> str:
    """Every table of a validation report, in the order it was measured."""
    parts = []
    if report.get("forms"):
        parts.append(format_table(report))
    if report.get("reduced_precision"):
        parts.append(format_table(report["reduced_precision"]))
    if report.get("quality"):
        parts.append(format_quality(report["quality"]))
    if report.get("router_health"):
        parts.append(format_health(report["router_health"]))
    return "\n".join(parts)
