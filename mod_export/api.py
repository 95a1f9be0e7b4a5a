"""`mod_export.export()`: the whole export job from Python, for a live nn.Module of any class whose routed blocks
call mod_export.ops, or for a path (checkpoint, safetensors folder, .pt2 archive). The CLI is a thin layer over
it (docs/models.md).

    result = mod_export.export(model, (input_ids, attention_mask), "out/", target="onnx", precision="fp16")
    result.passed, result.files["model.onnx"], result.report["parity"]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from calibration.apply import PrecisionOptions
from mod_export.backends.trt.builder import EngineSettings
from mod_export.contract import (
    CALIBRATION_METHODS,
    DEFAULT_ATOL,
    DEFAULT_CALIBRATION_WINDOWS,
    DEFAULT_MAX_CONTEXT,
    DEFAULT_MIN_ROUTING_AGREEMENT,
    DEFAULT_OPSET,
    DEFAULT_ROUTING_GUARD,
    PRECISIONS,
    TARGETS,
)
from mod_export.errors import UsageError
from mod_export.exporter.triton import TritonSettings
from mod_export.models.sources import from_module
from mod_export.pipeline import OnnxJob, run_onnx_job


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


_FLAGS = ("force", "validate", "allow_dense", "unsafe_load", "decode", "use_plugins")
_PATHS = ("calib_data", "calib_cache", "plugin_library")  # None or a path


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_arguments(args: dict) -> None:
    """export()'s arguments, before anything is loaded or written: a UsageError with one sentence each."""
    problems = {
        "target": (args["target"] in TARGETS, f"one of {', '.join(TARGETS)}"),
        "precision": (args["precision"] in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
        "out_dir": (isinstance(args["out_dir"], (str, os.PathLike)), "a path"),
        "opset": (_count(args["opset"], 0), "an integer"),
        "atol": (_number(args["atol"]) and args["atol"] > 0, "a finite number > 0"),
        "max_context": (_count(args["max_context"], 1), "an integer >= 1"),
        "calib_method": (args["calib_method"] in CALIBRATION_METHODS, f"one of {', '.join(CALIBRATION_METHODS)}"),
        "calib_windows": (_count(args["calib_windows"], 1), "an integer >= 1"),
        "routing_guard": (
            args["routing_guard"] is None or (_number(args["routing_guard"]) and 0 <= args["routing_guard"] <= 1),
            "None or a number in [0, 1]",
        ),
        "min_routing_agreement": (
            _number(args["min_routing_agreement"]) and 0 <= args["min_routing_agreement"] <= 1,
            "a number in [0, 1]",
        ),
        "engine": (args["engine"] is None or isinstance(args["engine"], EngineSettings), "None or EngineSettings"),
        "triton": (args["triton"] is None or isinstance(args["triton"], TritonSettings), "None or TritonSettings"),
        **{name: (isinstance(args[name], bool), "True or False") for name in _FLAGS},
        **{
            name: (args[name] is None or isinstance(args[name], (str, os.PathLike)), "None or a path")
            for name in _PATHS
        },
    }
    for name, (ok, expected) in problems.items():
        if not ok:
            raise UsageError(f"{name} must be {expected}, got {args[name]!r}")


def export(
    model,
    example_inputs=None,
    out_dir: str | os.PathLike = "export",
    *,
    target: str = "onnx",
    precision: str = "fp32",
    force: bool = False,
    opset: int = DEFAULT_OPSET,
    validate: bool = True,
    atol: float = DEFAULT_ATOL,
    allow_dense: bool = False,
    unsafe_load: bool = False,
    decode: bool = True,
    max_context: int = DEFAULT_MAX_CONTEXT,
    calib_data: str | os.PathLike | None = None,
    calib_method: str = "percentile",
    calib_cache: str | os.PathLike | None = None,
    calib_windows: int = DEFAULT_CALIBRATION_WINDOWS,
    routing_guard: float | None = DEFAULT_ROUTING_GUARD,
    min_routing_agreement: float = DEFAULT_MIN_ROUTING_AGREEMENT,
    engine: EngineSettings | None = None,
    use_plugins: bool = True,
    plugin_library: str | os.PathLike | None = None,
    triton: TritonSettings | None = None,
) -> ExportResult:
    """Export `model` into out_dir: both ONNX forms, checks, validation against `model` itself, precision,
    (trt) engine, (triton) model repository, report.json and manifest.json, written atomically.

    model: an nn.Module with forward(input_ids[B,T] int64, attention_mask[B,T] int64) -> logits[B,T,V], or a path
    to a mod_export/1 checkpoint, a safetensors folder or a .pt2 archive (unsafe_load=True required for .pt2).
    example_inputs: (input_ids, attention_mask) to trace with (default: B=2, T=48); both axes stay dynamic."""
    _check_arguments(locals())
    source = None
    model_path = None
    if isinstance(model, (str, os.PathLike)):
        if example_inputs is not None:
            raise UsageError("example_inputs are for a live module; a model file is traced with its own shapes")
        model_path = Path(model)
    else:
        source = from_module(model, example_inputs)
    options = PrecisionOptions(
        precision,
        None if calib_data is None else Path(calib_data),
        calib_method,
        None if calib_cache is None else Path(calib_cache),
        calib_windows,
        routing_guard,
        min_routing_agreement,
    )
    job = OnnxJob(
        model_path,
        Path(out_dir),
        force=force,
        opset=opset,
        allow_dense=allow_dense,
        unsafe_load=unsafe_load,
        validate=validate,
        atol=atol,
        target=target,
        use_plugins=use_plugins,
        plugin_library=None if plugin_library is None else Path(plugin_library),
        engine=engine,
        precision=options,
        decode=decode,
        max_context=max_context,
        source=source,
        triton=triton or TritonSettings(),
    )
    report = run_onnx_job(job)
    return ExportResult(Path(out_dir), target, precision, report)
