"""The one options object of the export job: every field once, with its default, its check and its help. The API
(`mod_export.export(**options)`), the CLI (`mod-export MODEL --target ...`, whose flags are generated from the
fields below) and the pipeline all read this class; nothing else spells an export option.

A field's metadata:
    expected  what the field must be, as the API's UsageError says it ("an integer >= 1")
    valid     the check of a value
    flag      its CLI flag ("--opset"; "--no-X" for a True-by-default switch), or none (API only, or set by the
              CLI from other flags: engine from --batch/--seq-len/..., triton from --triton-*)
    cli       how the CLI parses the flag: parse (the name of a mod_export.cli.types check, "int" or "path"),
              choices, required
    group     the help section of the flag
    help      the flag's help text
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibration.apply import PrecisionOptions
from mod_export.backends.trt.builder import EngineSettings
from mod_export.contract import (
    CALIBRATION_METHODS,
    DEFAULT_ATOL,
    DEFAULT_CALIBRATION_WINDOWS,
    DEFAULT_EVAL_WINDOWS,
    DEFAULT_MAX_CONTEXT,
    DEFAULT_MIN_ROUTING_AGREEMENT,
    DEFAULT_OPSET,
    DEFAULT_ROUTING_GUARD,
    MAX_OPSET,
    MIN_OPSET,
    PRECISIONS,
    TARGETS,
    WINDOW_BYTES,
)
from mod_export.errors import UsageError
from mod_export.exporter.triton import TritonSettings

EXPORT, PRECISION, TENSORRT = "export", "precision", "tensorrt"  # the help sections of the CLI flags


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(minimum: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in choices


def _boolean(value) -> bool:
    return isinstance(value, bool)


def _optional_path(value) -> bool:
    return value is None or isinstance(value, (str, os.PathLike))


def _in_unit_interval(value) -> bool:
    return _number(value) and 0 <= value <= 1


def option(default, expected: str, valid, help: str = "", flag: str | None = None, group: str = EXPORT, **cli):
    """A field of ExportOptions (the metadata is described in the module docstring)."""
    meta = {"expected": expected, "valid": valid, "flag": flag, "cli": cli, "group": group, "help": help}
    if isinstance(default, type):  # a class: each ExportOptions gets an instance of its own
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _switch(default: bool, flag: str, help: str, group: str = EXPORT):
    return option(default, "True or False", _boolean, help, flag, group)


def _path(flag: str, help: str, group: str):
    return option(None, "None or a path", _optional_path, help, flag, group, parse="path")


def _choice(default: str, choices: tuple[str, ...], flag: str, help: str, group: str = EXPORT, **cli):
    return option(default, f"one of {', '.join(choices)}", _one_of(choices), help, flag, group, choices=choices, **cli)


def _integer(default: int, minimum: int, flag: str | None = None, help: str = "", group: str = EXPORT):
    expected = "an integer" if minimum == 0 else f"an integer >= {minimum}"
    return option(
        default, expected, _count(minimum), help, flag, group, parse="int" if minimum == 0 else "positive_int"
    )


def _fraction(default: float | None, flag: str, help: str, none_allowed: bool = False):
    expected = "None or a number in [0, 1]" if none_allowed else "a number in [0, 1]"
    valid = (lambda value: value is None or _in_unit_interval(value)) if none_allowed else _in_unit_interval
    return option(default, expected, valid, help, flag, PRECISION, parse="fraction")


def _settings(kind: type, default):
    return option(default, f"None or {kind.__name__}", lambda value: value is None or isinstance(value, kind))


@dataclass
class ExportOptions:
    """How to export: the target, precision, validation and the engine and Triton settings. Checked on creation
    (a UsageError naming the field); paths become Path objects."""

    target: str = _choice(
        "onnx",
        TARGETS,
        "--target",
        "onnx: the ONNX forms; trt: plus a TensorRT engine (GPU); triton: plus a Triton model repository",
        required=True,
    )
    force: bool = _switch(False, "--force", "replace a non-empty output directory")
    opset: int = _integer(
        DEFAULT_OPSET, 0, "--opset", f"ONNX opset (default {DEFAULT_OPSET}, {MIN_OPSET}..{MAX_OPSET})"
    )
    decode: bool = _switch(True, "--no-decode", "do not write the generation graphs (step graph, plugin-form pair)")
    max_context: int = _integer(
        DEFAULT_MAX_CONTEXT,
        1,
        "--max-context",
        f"generation: longest prompt + new tokens a Session accepts (default {DEFAULT_MAX_CONTEXT})",
    )
    allow_dense: bool = _switch(False, "--allow-dense", "export a model without routed blocks as dense")
    validate: bool = _switch(True, "--no-validate", "skip the PyTorch vs ONNX Runtime parity check")
    memory_check: bool = _switch(
        True,
        "--no-memory-check",
        "start even when the predicted peak memory exceeds what is available (docs/weights.md)",
    )
    trace_cache: Path | None = _path(
        "--trace-cache",
        "keep traced graphs (without weights) in this folder and reuse them for any model of the same "
        "architecture and shapes (default: $MOD_EXPORT_TRACE_CACHE, else none; docs/trace-cache.md)",
        EXPORT,
    )
    atol: float = option(
        DEFAULT_ATOL,
        "a finite number > 0",
        lambda value: _number(value) and value > 0,
        f"fp32 forced-routing logits tolerance for validation (default {DEFAULT_ATOL:g})",
        "--atol",
        parse="positive_float",
    )
    unsafe_load: bool = _switch(
        False,
        "--unsafe-load",
        "allow pickled code: a checkpoint with objects, or any .pt2 archive (only for files you trust)",
    )
    precision: str = _choice(
        "fp32",
        PRECISIONS,
        "--precision",
        "fp32 (default); fp16 (routers kept float32); int8 (Q/DQ from calibration on --calib-data)",
        PRECISION,
    )
    calib_data: Path | None = _path(
        "--calib-data", "int8: a text file or folder (default: the example corpus' held-out slice)", PRECISION
    )
    calib_method: str = _choice(
        "percentile",
        CALIBRATION_METHODS,
        "--calib-method",
        "int8: how activation ranges are chosen from the calibration data (default percentile)",
        PRECISION,
    )
    calib_cache: Path | None = _path(
        "--calib-cache", "int8: calibration cache (reused when model and data hashes match)", PRECISION
    )
    calib_windows: int = _integer(
        DEFAULT_CALIBRATION_WINDOWS,
        1,
        "--calib-windows",
        f"int8: calibration windows of {WINDOW_BYTES} bytes (default {DEFAULT_CALIBRATION_WINDOWS})",
        PRECISION,
    )
    routing_guard: float | None = _fraction(
        DEFAULT_ROUTING_GUARD,
        "--routing-guard",
        "int8: keep float a MatMul whose quantisation alone drops routing agreement below this (0 = off)",
        none_allowed=True,
    )
    min_routing_agreement: float = _fraction(
        DEFAULT_MIN_ROUTING_AGREEMENT,
        "--min-routing-agreement",
        "fp16/int8: margin-aware routing agreement required per routed layer",
    )
    eval_windows: int = _integer(DEFAULT_EVAL_WINDOWS, 1)  # fp16/int8: held-out windows of the quality check
    use_plugins: bool = _switch(True, "--no-plugins", "build from the portable form (TopK limits k <= 3840)", TENSORRT)
    plugin_library: Path | None = _path(
        "--plugin-library", "libmod_export_plugins.so (default: `mod-export build-plugins` output)", TENSORRT
    )
    engine: EngineSettings | None = _settings(EngineSettings, None)
    triton: TritonSettings = _settings(TritonSettings, TritonSettings)

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if not spec.metadata["valid"](value):
                raise UsageError(f"{spec.name} must be {spec.metadata['expected']}, got {value!r}")
        for name in ("calib_data", "calib_cache", "plugin_library"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        if self.routing_guard == 0:
            self.routing_guard = None  # 0 turns the guard off
        if self.triton is None:
            self.triton = TritonSettings()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(spec.name for spec in dataclasses.fields(cls))

    @classmethod
    def of(cls, options: dict) -> ExportOptions:
        """From keyword arguments (the API): an unknown name is a UsageError listing the known ones."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise UsageError(f"unknown export option {unknown[0]!r}; the options are {', '.join(cls.names())}")
        return cls(**options)

    def precision_options(self) -> PrecisionOptions:
        return PrecisionOptions(
            precision=self.precision,
            calib_data=self.calib_data,
            calib_method=self.calib_method,
            calib_cache=self.calib_cache,
            calib_windows=self.calib_windows,
            routing_guard=self.routing_guard,
            min_routing_agreement=self.min_routing_agreement,
            eval_windows=self.eval_windows,
        )

    def engine_settings(self) -> EngineSettings:
        """A copy (the job adds the routing outputs and the plugin library to it; the caller's stays as given)."""
        return dataclasses.replace(self.engine) if self.engine is not None else EngineSettings()
