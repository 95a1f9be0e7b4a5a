"""`mod-export validate MODEL DIR`: judge the files an export wrote against the PyTorch model, at DIR's precision."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from mod_export.cli.types import positive_float
from mod_export.contract import DEFAULT_ATOL, VALIDATION_REPORT_FORMAT
from mod_export.errors import ParityError
from mod_export.models.sources import load_source
from mod_export.output import Target, kinds
from mod_export.validate.artifacts import format_validation
from mod_export.validate.directory import load_directory, validate_directory
from mod_export.validate.generation import format_generation


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compare PyTorch and ONNX Runtime (CPU) on DIR/model.onnx and DIR/model.plugin.onnx, at the "
        "precision recorded in DIR/manifest.json (fp16/int8 directories are judged at their tolerances)."
    )
    parser.add_argument(
        "model", type=Path, help="the model DIR came from: model.pt, a safetensors folder, or a .pt2 archive"
    )
    parser.add_argument("dir", type=Path, help="directory written by `mod-export MODEL --target onnx`")
    parser.add_argument(
        "--atol", type=positive_float, help=f"fp32 forced-routing logits tolerance (default {DEFAULT_ATOL:g})"
    )
    parser.add_argument("--report", type=Path, help="write the parity report (JSON) here")
    parser.add_argument(
        "--unsafe-load",
        action="store_true",
        help="allow pickled code: a checkpoint with objects, or any .pt2 archive (only for files you trust)",
    )
    parser.add_argument(
        "--skip-integrity",
        action="store_true",
        help="use DIR's files even where they differ from the sha256 in its manifest.json (edited on purpose)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace --report FILE when it is an earlier report of mod-export validate"
    )


def _report_target(args: argparse.Namespace):
    """--report FILE: checked and locked before anything slow; never the model, DIR or a file inside it, and an
    existing file only with --force and only when it is an earlier report of ours (mod_export.output)."""
    if args.report is None:
        return contextlib.nullcontext()
    return Target(
        args.report,
        kinds.VALIDATION_REPORT,
        args.force,
        inputs=[args.model, args.dir],
        option="--report",
        parents=False,
    )


def run(args: argparse.Namespace) -> int:
    with _report_target(args) as report_out:
        export = load_directory(args.dir, verify=not args.skip_integrity, model_hint=args.model)
        source = load_source(args.model, unsafe=args.unsafe_load)
        report = validate_directory(source, export, atol=args.atol)
        print(format_validation(report))
        if report.get("generation"):
            print(format_generation(report["generation"]))
        for item in report["not_checked"]:
            print(f"not checked: {item}")
        if report_out is not None:
            report_out.put_json({"format": VALIDATION_REPORT_FORMAT, **report})
    if not report["passed"]:
        raise ParityError(
            f"parity failed in {len(report['mismatches'])} place(s), first: {report['mismatches'][0]}",
            report["mismatches"],
        )
    print(f"parity: passed ({export.precision})")
    return 0
