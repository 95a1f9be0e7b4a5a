"""`mod_export.export()`: the whole export job from Python, for a live nn.Module of any class whose routed blocks
call mod_export.ops, or for a path (checkpoint, safetensors folder, .pt2 archive). The CLI is a thin layer over
it (docs/models.md).

    result = mod_export.export(model, (input_ids, attention_mask), "out/", target="onnx", precision="fp16")
    result.passed, result.files["model.onnx"], result.report["parity"]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mod_export.errors import UsageError
from mod_export.models.sources import from_module
from mod_export.pipeline import ExportJob, ExportOptions, run_export_job


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and concluded. Raised instead (ParityError, exit code 3 in the CLI) when validation
    fails; the exception's `.report` is the same report."""

    out_dir: Path
    target: str
    precision: str
    report: dict = field(repr=False)

    @property
    def passed(self) -> bool | None:
        """True when validated and every check held; None with validate=False."""
        parity = self.report.get("parity")
        return None if parity is None else bool(parity["passed"])

    @property
    def files(self) -> dict[str, Path]:
        """Every written file, by its path relative to out_dir."""
        return {name: self.out_dir / name for name in self.report.get("written", [])}

    @property
    def routed_blocks(self) -> int:
        return int(self.report["export"]["routed_blocks_found"])


def export(
    model,
    example_inputs=None,
    out_dir: str | os.PathLike = "export",
    *,
    options: ExportOptions | None = None,
    **option_values,
) -> ExportResult:
    """Export `model` into out_dir: both ONNX forms, checks, validation against `model` itself, precision,
    (trt) engine, (triton) model repository, report.json and manifest.json, written atomically.

    model: an nn.Module with forward(input_ids[B,T] int64, attention_mask[B,T] int64) -> logits[B,T,V], or a path
    to a mod_export/1 checkpoint, a safetensors folder or a .pt2 archive (unsafe_load=True required for .pt2).
    example_inputs: (input_ids, attention_mask) to trace with (default: B=2, T=48); both axes stay dynamic.
    options: an ExportOptions, or its fields as keywords (target="trt", precision="fp16", force=True, ...; the
    fields, their defaults and checks: mod_export/pipeline/options.py). A bad value is a UsageError naming it."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise UsageError(f"out_dir must be a path, got {out_dir!r}")
    if options is not None and option_values:
        raise UsageError("pass either options=ExportOptions(...) or its fields as keywords, not both")
    if options is not None and not isinstance(options, ExportOptions):
        raise UsageError(f"options must be an ExportOptions, got {options!r}")
    options = options or ExportOptions.of(option_values)
    source = None
    model_path = None
    if isinstance(model, (str, os.PathLike)):
        if example_inputs is not None:
            raise UsageError("example_inputs are for a live module; a model file is traced with its own shapes")
        model_path = Path(model)
    else:
        source = from_module(model, example_inputs)
    report = run_export_job(ExportJob(model_path, Path(out_dir), options, source))
    return ExportResult(Path(out_dir), options.target, options.precision, report)
