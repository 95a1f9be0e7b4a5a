"""The precision step of an export: turn the float32 forms into fp16 or int8 forms and judge their quality
on held-out text against the float32 forms (bits per byte, routing agreement per routed layer)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mod_export.errors import ModExportError

QUALITY_LIMITS = {"fp16": 0.005, "int8": 0.03}  # largest relative bits-per-byte increase accepted


@dataclass
class PrecisionOptions:
    precision: str = "fp32"
    calib_data: Path | None = None
    calib_method: str = "percentile"
    calib_cache: Path | None = None
    calib_windows: int = 64
    routing_guard: float | None = 0.99
    min_routing_agreement: float = 0.95
    eval_windows: int = 128


def load_calibration(options: PrecisionOptions):
    """Load (and so check) calibration data before any slow work; None unless int8."""
    if options.precision != "int8":
        return None
    from calibration.data import load_calibration_data
    from calibration.int8 import check_method

    check_method(options.calib_method)  # before any slow work
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


def quality_report(float_forms, reduced_forms, options: PrecisionOptions) -> dict:
    """Both reduced forms against the float32 portable form on held-out text; never raises."""
    from calibration.evaluate import compare_to_reference
    from mod_export.data.corpus import fixed_windows, load_stdlib_corpus

    held = load_stdlib_corpus().held_out
    windows = fixed_windows(held[len(held) // 2 :], options.eval_windows, 257)  # the half calibration does not use
    limit = QUALITY_LIMITS[options.precision]
    out: dict = {"max_relative_bpb_increase": limit, "min_routing_agreement": options.min_routing_agreement,
                 "forms": {}, "mismatches": []}
    for name in ("portable", "plugin"):
        result = compare_to_reference(float_forms.portable, getattr(reduced_forms, name), float_forms.plugin, windows)
        out["forms"][name] = result
        if result["relative_bpb_change"] > limit:
            out["mismatches"].append(f"{options.precision} {name}: bits/byte +{100 * result['relative_bpb_change']:.2f}% > {100 * limit:.1f}%")
        for layer, agree in result["routing_agreement"].items():
            if agree < options.min_routing_agreement:
                out["mismatches"].append(f"{options.precision} {name}: routed layer #{layer} routing agreement {100 * agree:.1f}%")
    out["passed"] = not out["mismatches"]
    return out


def format_quality(quality: dict, precision: str) -> str:
    lines = [f"{'form':9} {'precision':9} {'bits/byte':>9} {'fp32':>7} {'change':>8}  routing agreement per routed layer"]
    for name, r in quality["forms"].items():
        agree = " ".join(f"#{k}:{100 * v:.1f}%" for k, v in r["routing_agreement"].items())
        lines.append(f"{name:9} {precision:9} {r['bits_per_byte']:9.4f} {r['reference_bits_per_byte']:7.4f} "
                     f"{100 * r['relative_bpb_change']:+7.3f}%  {agree}")
    return "\n".join(lines)
