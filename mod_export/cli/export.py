"""Main form: `mod-export MODEL --target {onnx,trt,triton} --out DIR`."""
from __future__ import annotations

import argparse
from pathlib import Path

from mod_export.errors import NotImplementedYetError

TARGETS = ("onnx", "trt", "triton")


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = "Export a mod_export/1 checkpoint; writes model.onnx, model.plugin.onnx, report.json, manifest.json."
    parser.add_argument("model", type=Path, help="checkpoint (model.pt) in the mod_export/1 format")
    parser.add_argument("--target", required=True, choices=TARGETS)
    parser.add_argument("--out", required=True, type=Path, help="output directory (written atomically)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, minimum 18)")
    parser.add_argument("--allow-dense", action="store_true", help="export a model without routed blocks as dense")
    parser.add_argument("--no-validate", action="store_true", help="skip the PyTorch vs ONNX Runtime parity check")
    parser.add_argument("--atol", type=float, default=1e-4, help="logits tolerance for validation (default 1e-4)")
    parser.add_argument("--unsafe-load", action="store_true", help="allow pickled code in the checkpoint (only for files you trust)")


def run(args: argparse.Namespace) -> int:
    if args.target != "onnx":
        raise NotImplementedYetError(f"--target {args.target} is not implemented yet (available: --target onnx)")
    from mod_export.export.pipeline import OnnxJob, run_onnx_job

    run_onnx_job(OnnxJob(args.model, args.out, force=args.force, opset=args.opset, allow_dense=args.allow_dense,
                         unsafe_load=args.unsafe_load, validate=not args.no_validate, atol=args.atol))
    return 0
