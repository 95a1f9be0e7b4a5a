"""Main form: `mod-export MODEL --target {onnx,trt,triton} --out DIR`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mod_export.api import export
from mod_export.backends.trt.builder import EngineSettings, ShapeRange
from mod_export.cli.types import fraction, non_negative_int, positive_float, positive_int
from mod_export.contract import (
    CALIBRATION_METHODS,
    DEFAULT_ATOL,
    DEFAULT_BATCH_RANGE,
    DEFAULT_CALIBRATION_WINDOWS,
    DEFAULT_MAX_CONTEXT,
    DEFAULT_MIN_ROUTING_AGREEMENT,
    DEFAULT_OPSET,
    DEFAULT_ROUTING_GUARD,
    DEFAULT_SEQ_RANGE,
    DEFAULT_TRITON_CONTEXT,
    DEFAULT_TRITON_INSTANCES,
    DEFAULT_TRITON_QUEUE_DELAY_US,
    DEFAULT_TRITON_SLOTS,
    DEFAULT_WORKSPACE_MB,
    MAX_OPSET,
    MIN_OPSET,
    PRECISIONS,
    TARGETS,
    WINDOW_BYTES,
)
from mod_export.errors import ModExportError
from mod_export.exporter.triton import TritonSettings
from mod_export.validate.artifacts import format_validation
from mod_export.validate.generation import format_generation
from mod_export.validate.judge import format_table


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Export a model (mod_export/1 checkpoint, safetensors folder, or .pt2 archive with --unsafe-load) into DIR: model.onnx, model.plugin.onnx, the generation graphs "
        "model.prefill.onnx and model.decode.onnx, report.json, manifest.json; plus model.engine and the plugin "
        "library (trt) or a Triton model repository (triton)."
    )
    parser.add_argument(
        "model", type=Path, help="model.pt (mod_export/1), a folder with config.json + *.safetensors, or a .pt2 archive"
    )
    parser.add_argument(
        "--target",
        required=True,
        choices=TARGETS,
        help="onnx: the ONNX forms; trt: plus a TensorRT engine (GPU); triton: plus a Triton model repository",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory (written atomically)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset (default {DEFAULT_OPSET}, {MIN_OPSET}..{MAX_OPSET})",
    )
    parser.add_argument(
        "--no-decode",
        action="store_true",
        help="do not write the prefill/decode graphs for generation (written by default)",
    )
    parser.add_argument(
        "--max-context",
        type=positive_int,
        default=DEFAULT_MAX_CONTEXT,
        help=f"generation: longest prompt + new tokens a Session accepts (default {DEFAULT_MAX_CONTEXT})",
    )
    parser.add_argument("--allow-dense", action="store_true", help="export a model without routed blocks as dense")
    parser.add_argument("--no-validate", action="store_true", help="skip the PyTorch vs ONNX Runtime parity check")
    parser.add_argument(
        "--atol",
        type=positive_float,
        default=DEFAULT_ATOL,
        help=f"fp32 forced-routing logits tolerance for validation (default {DEFAULT_ATOL:g})",
    )
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow pickled code: a checkpoint with objects, or any .pt2 archive (only for files you trust)",
    )
    prec = parser.add_argument_group("precision (docs/design.md (precision); lives in the ONNX files)")
    prec.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default); fp16 (routers kept float32); int8 (Q/DQ from calibration on --calib-data)",
    )
    prec.add_argument(
        "--calib-data", type=Path, help="int8: a text file or folder (default: the example corpus' held-out slice)"
    )
    prec.add_argument(
        "--calib-method",
        choices=CALIBRATION_METHODS,
        default="percentile",
        help="int8: how activation ranges are chosen from the calibration data (default percentile)",
    )
    prec.add_argument(
        "--calib-cache", type=Path, help="int8: calibration cache (reused when model and data hashes match)"
    )
    prec.add_argument(
        "--calib-windows",
        type=positive_int,
        default=DEFAULT_CALIBRATION_WINDOWS,
        help=f"int8: calibration windows of {WINDOW_BYTES} bytes (default {DEFAULT_CALIBRATION_WINDOWS})",
    )
    prec.add_argument(
        "--routing-guard",
        type=fraction,
        default=DEFAULT_ROUTING_GUARD,
        help="int8: keep float a MatMul whose quantisation alone drops routing agreement below this (0 = off)",
    )
    prec.add_argument(
        "--min-routing-agreement",
        type=fraction,
        default=DEFAULT_MIN_ROUTING_AGREEMENT,
        help="fp16/int8: margin-aware routing agreement required per routed layer",
    )
    trt = parser.add_argument_group("TensorRT (--target trt / triton)")
    trt.add_argument(
        "--batch",
        default=DEFAULT_BATCH_RANGE,
        help=f"batch range MIN:OPT:MAX of the optimisation profile (default {DEFAULT_BATCH_RANGE})",
    )
    trt.add_argument(
        "--seq-len", default=DEFAULT_SEQ_RANGE, help=f"sequence range MIN:OPT:MAX (default {DEFAULT_SEQ_RANGE})"
    )
    trt.add_argument("--no-plugins", action="store_true", help="build from the portable form (TopK limits k <= 3840)")
    trt.add_argument(
        "--plugin-library", type=Path, help="libmod_export_plugins.so (default: `mod-export build-plugins` output)"
    )
    trt.add_argument("--timing-cache", type=Path, help="timing cache file, read if present and saved after the build")
    trt.add_argument(
        "--workspace-mb",
        type=positive_int,
        default=DEFAULT_WORKSPACE_MB,
        help=f"builder workspace limit in MiB (default {DEFAULT_WORKSPACE_MB})",
    )

    tri = parser.add_argument_group("Triton (--target triton; the scoring model on the Python backend)")
    tri.add_argument(
        "--triton-instances",
        type=positive_int,
        default=DEFAULT_TRITON_INSTANCES,
        help=f"instances of the scoring model, one process each (default {DEFAULT_TRITON_INSTANCES})",
    )
    tri.add_argument(
        "--triton-queue-delay-us",
        type=non_negative_int,
        default=DEFAULT_TRITON_QUEUE_DELAY_US,
        help=f"dynamic batching: longest wait for more requests, microseconds (default {DEFAULT_TRITON_QUEUE_DELAY_US})",
    )
    tri.add_argument(
        "--triton-threads",
        type=non_negative_int,
        default=0,
        help="ONNX Runtime intra-op threads per scoring instance (default 0: ONNX Runtime's choice)",
    )
    tri.add_argument(
        "--triton-slots",
        type=positive_int,
        default=DEFAULT_TRITON_SLOTS,
        help=f"generation model: requests generating at once, in flight (default {DEFAULT_TRITON_SLOTS})",
    )
    tri.add_argument(
        "--triton-context",
        type=positive_int,
        default=DEFAULT_TRITON_CONTEXT,
        help=f"generation model: prompt + new tokens per request (default {DEFAULT_TRITON_CONTEXT})",
    )


def print_outcome(report: dict, out_dir: Path) -> None:
    """The validation tables, then what was written (stdout: results, not progress)."""
    if report.get("parity"):
        print(format_validation(report["parity"]))
    if report.get("generation", {}).get("parity"):
        print(format_generation(report["generation"]["parity"]))
    if report.get("engine_parity"):
        print(format_table(report["engine_parity"]))
    written = [w for w in report.get("written", []) if "/" not in w]
    if written:
        extra = " and model_repository/" if any(w.startswith("model_repository/") for w in report["written"]) else ""
        print(f"wrote {out_dir}: {', '.join(written)}{extra}")


def run(args: argparse.Namespace) -> int:
    engine = None
    if args.target in ("trt", "triton"):
        engine = EngineSettings(
            batch=ShapeRange.parse(args.batch, "batch"),
            seq=ShapeRange.parse(args.seq_len, "seq-len"),
            workspace_mb=args.workspace_mb,
            timing_cache=args.timing_cache,
        )
    try:
        result = export(
            args.model,
            None,
            args.out,
            target=args.target,
            precision=args.precision,
            force=args.force,
            opset=args.opset,
            validate=not args.no_validate,
            atol=args.atol,
            allow_dense=args.allow_dense,
            unsafe_load=args.unsafe_load,
            decode=not args.no_decode,
            max_context=args.max_context,
            calib_data=args.calib_data,
            calib_method=args.calib_method,
            calib_cache=args.calib_cache,
            calib_windows=args.calib_windows,
            routing_guard=args.routing_guard or None,
            min_routing_agreement=args.min_routing_agreement,
            engine=engine,
            use_plugins=not args.no_plugins,
            plugin_library=args.plugin_library,
            triton=TritonSettings(
                args.triton_instances,
                args.triton_queue_delay_us,
                args.triton_threads,
                slots=args.triton_slots,
                context=args.triton_context,
            ),
        )
    except ModExportError as exc:
        if exc.report is not None:
            print_outcome(exc.report, args.out)
        raise
    print_outcome(result.report, args.out)
    return 0
