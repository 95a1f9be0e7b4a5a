"""`mod-export validate MODEL DIR`: judge the files an export wrote against the PyTorch model, at DIR's precision."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mod_export.errors import ExportError, ParityError


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Compare PyTorch and ONNX Runtime (CPU) on DIR/model.onnx and DIR/model.plugin.onnx, at the "
                          "precision recorded in DIR/manifest.json (fp16/int8 directories are judged at their tolerances).")
    parser.add_argument("model", type=Path, help="checkpoint (model.pt)")
    parser.add_argument("dir", type=Path, help="directory written by `mod-export MODEL --target onnx`")
    parser.add_argument("--atol", type=float, help="fp32 logits tolerance (default 1e-4)")
    parser.add_argument("--report", type=Path, help="write the parity report (JSON) here")
    parser.add_argument("--unsafe-load", action="store_true")


def _precision(directory: Path) -> str:
    manifest = directory / "manifest.json"
    if not manifest.is_file():
        return "fp32"
    try:
        return json.loads(manifest.read_text()).get("precision") or "fp32"
    except (OSError, json.JSONDecodeError):
        raise ExportError(f"{manifest} is not readable JSON") from None


def run(args: argparse.Namespace) -> int:
    import onnx

    from mod_export.checkpoint import load_checkpoint
    from mod_export.contract import PLUGIN_FILE, PORTABLE_FILE
    from mod_export.validate.artifacts import format_validation, validate_artifacts

    precision = _precision(args.dir)
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
    report = validate_artifacts(model, forms, precision, atol=args.atol)
    print(format_validation(report))
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    if not report["passed"]:
        raise ParityError(f"parity failed in {len(report['mismatches'])} place(s), first: {report['mismatches'][0]}",
                          report["mismatches"])
    print(f"parity: passed ({precision})")
    return 0
