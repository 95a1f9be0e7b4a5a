"""`mod-export validate MODEL DIR`: judge the files an export wrote against the PyTorch model, at DIR's precision."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mod_export.cli.types import positive_float
from mod_export.contract import DEFAULT_ATOL
from mod_export.errors import OutputDirError, ParityError
from mod_export.models.sources import load_source
from mod_export.validate.artifacts import format_validation, load_directory, validate_artifacts


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


def run(args: argparse.Namespace) -> int:
    if args.report is not None and (args.report.is_dir() or not args.report.absolute().parent.is_dir()):
        raise OutputDirError(f"--report {args.report}: not a file in an existing directory")
    forms, precision = load_directory(args.dir, verify=not args.skip_integrity, model_hint=args.model)
    model = load_source(args.model, unsafe=args.unsafe_load).module
    report = validate_artifacts(model, forms, precision, atol=args.atol)
    print(format_validation(report))
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    if not report["passed"]:
        raise ParityError(
            f"parity failed in {len(report['mismatches'])} place(s), first: {report['mismatches'][0]}",
            report["mismatches"],
        )
    print(f"parity: passed ({precision})")
    return 0
