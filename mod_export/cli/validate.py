"""`mod-export validate MODEL DIR`: PyTorch versus ONNX Runtime on the files an export wrote."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mod_export.errors import ExportError, ParityError


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = "Compare PyTorch and ONNX Runtime (CPU) on DIR/model.onnx and DIR/model.plugin.onnx."
    parser.add_argument("model", type=Path, help="checkpoint (model.pt)")
    parser.add_argument("dir", type=Path, help="directory written by `mod-export MODEL --target onnx`")
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--report", type=Path, help="write the parity report (JSON) here")
    parser.add_argument("--unsafe-load", action="store_true")


def run(args: argparse.Namespace) -> int:
    import onnx

    from mod_export.checkpoint import load_checkpoint
    from mod_export.data.corpus import load_stdlib_corpus
    from mod_export.export.artifacts import PLUGIN_FILE, PORTABLE_FILE
    from mod_export.validate import format_table, idx_tensor_names, validate_forms, validation_cases

    model = load_checkpoint(args.model, unsafe=args.unsafe_load)
    forms = {}
    for form, name in (("portable", PORTABLE_FILE), ("plugin", PLUGIN_FILE)):
        path = args.dir / name
        if not path.is_file():
            raise ExportError(f"{path} not found (run `mod-export {args.model} --target onnx --out {args.dir}` first)")
        try:
            forms[form] = onnx.load(str(path))
        except Exception as exc:
            raise ExportError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    idx_names = idx_tensor_names(forms["plugin"])
    cases = validation_cases(model, load_stdlib_corpus().held_out)
    report = validate_forms(model, forms, cases, idx_names, args.atol)
    print(format_table(report))
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    if not report["passed"]:
        raise ParityError(f"parity failed in {len(report['mismatches'])} place(s), first: {report['mismatches'][0]}", report["mismatches"])
    print("parity: passed")
    return 0
