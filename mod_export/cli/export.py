"""Main form: `mod-export MODEL --target {onnx,trt,triton} --out DIR`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mod_export.api import export
from mod_export.backends.trt.builder import EngineSettings, ShapeRange
from mod_export.cli.types import fraction, non_negative_int, positive_float, positive_int
from mod_export.contract import (
    DEFAULT_BATCH_RANGE,
    DEFAULT_SEQ_RANGE,
    DEFAULT_TRITON_CONTEXT,
    DEFAULT_TRITON_INSTANCES,
    DEFAULT_TRITON_QUEUE_DELAY_US,
    DEFAULT_TRITON_SLOTS,
    DEFAULT_WORKSPACE_MB,
)
from mod_export.errors import ModExportError
from mod_export.exporter.triton import TritonSettings
from mod_export.pipeline.options import EXPORT, PRECISION, TENSORRT, ExportOptions
from mod_export.validate.artifacts import format_validation
from mod_export.validate.generation import format_generation
from mod_export.validate.judge import format_table

PARSERS = {
    "int": int,
    "path": Path,
    "positive_int": positive_int,
    "positive_float": positive_float,
    "fraction": fraction,
}
GROUP_TITLES = {
    PRECISION: "precision (docs/design.md (precision); lives in the ONNX files)",
    TENSORRT: "TensorRT (--target trt / triton)",
}


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Export a model (mod_export/1 checkpoint, safetensors folder, or .pt2 archive with --unsafe-load) into DIR: "
        "model.onnx, model.plugin.onnx, the generation graph model.step.onnx (and its TensorRT pair model.plugin.prefill.onnx, model.plugin.decode.onnx), report.json, "
        "manifest.json; plus model.engine and the plugin library (trt) or a Triton model repository (triton)."
    )
    parser.add_argument(
        "model", type=Path, help="model.pt (mod_export/1), a folder with config.json + *.safetensors, or a .pt2 archive"
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory (written atomically)")
    groups = add_option_flags(parser)
    add_engine_flags(groups[TENSORRT])
    add_triton_flags(parser.add_argument_group("Triton (--target triton; the scoring model on the Python backend)"))


def add_option_flags(parser: argparse.ArgumentParser) -> dict:
    """A flag for every ExportOptions field that has one (mod_export/pipeline/options.py), in its help group."""
    groups = {EXPORT: parser, **{key: parser.add_argument_group(title) for key, title in GROUP_TITLES.items()}}
    for spec in dataclasses.fields(ExportOptions):
        meta = spec.metadata
        if meta["flag"] is None:
            continue
        if isinstance(spec.default, bool):
            groups[meta["group"]].add_argument(meta["flag"], action="store_true", help=meta["help"])
            continue
        cli = dict(meta["cli"])
        if "parse" in cli:
            cli["type"] = PARSERS[cli.pop("parse")]
        groups[meta["group"]].add_argument(meta["flag"], default=spec.default, help=meta["help"], **cli)
    return groups


def add_engine_flags(group) -> None:
    """The engine's shapes and build settings (EngineSettings)."""
    group.add_argument(
        "--batch",
        default=DEFAULT_BATCH_RANGE,
        help=f"batch range MIN:OPT:MAX of the optimisation profile (default {DEFAULT_BATCH_RANGE})",
    )
    group.add_argument(
        "--seq-len", default=DEFAULT_SEQ_RANGE, help=f"sequence range MIN:OPT:MAX (default {DEFAULT_SEQ_RANGE})"
    )
    group.add_argument("--timing-cache", type=Path, help="timing cache file, read if present and saved after the build")
    group.add_argument(
        "--workspace-mb",
        type=positive_int,
        default=DEFAULT_WORKSPACE_MB,
        help=f"builder workspace limit in MiB (default {DEFAULT_WORKSPACE_MB})",
    )


TRITON_FLAGS = (  # flag, type, default, help
    ("--triton-instances", positive_int, DEFAULT_TRITON_INSTANCES, "instances of the scoring model, one process each"),
    (
        "--triton-queue-delay-us",
        non_negative_int,
        DEFAULT_TRITON_QUEUE_DELAY_US,
        "dynamic batching: longest wait for more requests, microseconds",
    ),
    ("--triton-threads", non_negative_int, 0, "ONNX Runtime intra-op threads per scoring instance (0: its choice)"),
    ("--triton-slots", positive_int, DEFAULT_TRITON_SLOTS, "generation model: requests generating at once, in flight"),
    ("--triton-context", positive_int, DEFAULT_TRITON_CONTEXT, "generation model: prompt + new tokens per request"),
)


def add_triton_flags(group) -> None:
    """The Triton repository's scheduling and instances (TritonSettings)."""
    for flag, kind, default, text in TRITON_FLAGS:
        group.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")


def options_from(args: argparse.Namespace) -> ExportOptions:
    """The ExportOptions of the parsed flags: each field's flag (a --no-X switch turns its field off), the engine
    settings from --batch/--seq-len/--workspace-mb/--timing-cache and the Triton settings from --triton-*."""
    values = {}
    for spec in dataclasses.fields(ExportOptions):
        flag = spec.metadata["flag"]
        if flag is not None:
            value = getattr(args, flag.removeprefix("--").replace("-", "_"))
            values[spec.name] = not value if flag.startswith("--no-") else value
    if args.target in ("trt", "triton"):
        values["engine"] = EngineSettings(
            batch=ShapeRange.parse(args.batch, "batch"),
            seq=ShapeRange.parse(args.seq_len, "seq-len"),
            workspace_mb=args.workspace_mb,
            timing_cache=args.timing_cache,
        )
    values["triton"] = TritonSettings(
        args.triton_instances,
        args.triton_queue_delay_us,
        args.triton_threads,
        slots=args.triton_slots,
        context=args.triton_context,
    )
    return ExportOptions(**values)


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
    options = options_from(args)
    try:
        result = export(args.model, None, args.out, options=options)
    except ModExportError as exc:
        if exc.report is not None:
            print_outcome(exc.report, args.out)
        raise
    print_outcome(result.report, args.out)
    return 0
