"""`mod-export validate MODEL DIR` as a whole: load an export directory (every file checked against the sha256 of
its manifest), judge its forms, its generation graphs and (where TensorRT runs) its engine against the PyTorch
model, and name whatever was not checked."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import onnx

from mod_export.backends.onnxrt.generation import OrtStepper
from mod_export.backends.onnxrt.model import read_onnx
from mod_export.backends.trt.availability import import_tensorrt, require_gpu
from mod_export.contract import (
    DECODE_ENGINE_FILE,
    ENGINE_FILE,
    LIBRARY_NAME,
    MANIFEST_FILE,
    PLUGIN_FILE,
    PORTABLE_FILE,
    PRECISIONS,
    PREFILL_ENGINE_FILE,
)
from mod_export.errors import ExportError, IntegrityError, MissingDependencyError
from mod_export.integrity import read_manifest, unlisted_files, verify_files
from mod_export.output import absolute
from mod_export.parity.verdict import fold
from mod_export.validate.artifacts import evaluation_text, validate_artifacts, validate_engine
from mod_export.validate.generation import generation_cases, judge_generation

logger = logging.getLogger(__name__)
GRAPH_KEYS = ("step", "plugin_prefill", "plugin_decode")


@dataclass
class ExportDir:
    directory: Path  # absolute
    forms: dict  # {"portable": proto, "plugin": proto}
    precision: str
    manifest: dict | None  # None: --skip-integrity and no readable manifest
    not_checked: list[str] = field(default_factory=list)


def load_directory(directory: Path, verify: bool = True, model_hint: object = "MODEL") -> ExportDir:
    """The forms and precision of an export directory, every file it lists checked against the sha256 values of
    its manifest.json first (verify=False: the user edited them on purpose)."""
    directory = absolute(directory, ExportError)  # a deleted current directory is named, never shown as `.`
    if not directory.is_dir():
        raise ExportError(f"{directory} is not a directory written by `mod-export MODEL --target onnx`")
    for name in (PORTABLE_FILE, PLUGIN_FILE):
        if not (directory / name).is_file():
            raise ExportError(
                f"{directory / name} not found (run `mod-export {model_hint} --target onnx --out {directory}` first)"
            )
    not_checked = []
    if verify:
        manifest = read_manifest(directory)
        if manifest is None:
            raise IntegrityError(
                f"{directory} has no {MANIFEST_FILE}, so its files cannot be checked; "
                "pass --skip-integrity to validate them anyway"
            )
        verify_files(directory, sorted(manifest["files"]))  # every file, not only the two forms
        not_checked += [
            f"{name} (not listed in {MANIFEST_FILE}, so no hash vouches for it)"
            for name in unlisted_files(directory, manifest)
        ]
    else:
        try:
            manifest = read_manifest(directory)
        except IntegrityError:
            manifest = None
        not_checked.append("the sha256 of every file (--skip-integrity)")
    precision = (manifest or {}).get("precision") or "fp32"
    if precision not in PRECISIONS:
        raise IntegrityError(f"{directory / MANIFEST_FILE} names an unknown precision {precision!r}")
    forms = {"portable": read_onnx(directory / PORTABLE_FILE), "plugin": read_onnx(directory / PLUGIN_FILE)}
    return ExportDir(directory, forms, precision, manifest, not_checked)


def judge_generation_graphs(model, graphs: dict[str, onnx.ModelProto]) -> dict:
    """The step graph, and the plugin-form pair where given, against the causal-routing reference on held-out
    text, prefill + 64 decode steps, as the export does. Returns the step graph's report, with the plugin pair's
    mismatches and verdict folded in and its own report under "plugin"."""
    cases = generation_cases(evaluation_text(), model.config.vocab_size)
    parity = judge_generation(model, OrtStepper(graphs["step"], shared_weights=True), cases)
    if "plugin_prefill" in graphs and "plugin_decode" in graphs:
        plugin = judge_generation(
            model, OrtStepper(graphs["plugin_decode"], graphs["plugin_prefill"], shared_weights=True), cases
        )
        parity["plugin"] = plugin
        disagree = plugin["passed"] != parity["passed"]
        fold(parity, plugin, prefix="plugin form: ")
        if disagree:
            parity["mismatches"].append(
                "plugin form and portable form of the generation graphs reach different verdicts"
            )
    return parity


def _generation(source, export: ExportDir) -> dict | None:
    info = (export.manifest or {}).get("generation")
    if export.manifest is None:
        export.not_checked.append("the generation graphs (no readable manifest.json says which files they are)")
        return None
    if not info:
        return None  # exported with --no-decode: there are none
    if "step" not in info:
        export.not_checked.append("the generation graphs (exported by an older mod-export, before the step graph)")
        return None
    names = {key: info[key] for key in GRAPH_KEYS if info.get(key)}
    if source.builtin is None:
        export.not_checked.append(
            f"the generation graphs ({', '.join(names.values())}): {source.source} is not a built-in architecture, "
            "so there is no causal-routing reference"
        )
        return None
    graphs = {key: read_onnx(export.directory / name) for key, name in names.items()}
    logger.info("validating generation: prefill + 64 decode steps on ONNX Runtime against PyTorch ...")
    try:
        return judge_generation_graphs(source.builtin, graphs)
    except Exception as exc:  # a graph of another model: shapes or vocabulary do not fit
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ExportError(
            f"the generation graphs in {export.directory} do not run against this model ({type(exc).__name__}: {first})"
        ) from None


def _engine(model, export: ExportDir, atol: float | None) -> dict | None:
    listed = set((export.manifest or {}).get("files") or ())
    engines = [n for n in (ENGINE_FILE, PREFILL_ENGINE_FILE, DECODE_ENGINE_FILE) if n in listed]
    if not engines:
        return None
    phase = [n for n in engines if n != ENGINE_FILE]
    if phase:
        export.not_checked.append(f"{', '.join(phase)} (generation engines are judged by the export, not by validate)")
    if ENGINE_FILE not in engines:
        return None
    try:
        import_tensorrt()
        require_gpu()
    except MissingDependencyError as exc:
        export.not_checked.append(f"{ENGINE_FILE} ({exc})")
        return None
    library = export.directory / LIBRARY_NAME
    forms = SimpleNamespace(
        idx_outputs=list(export.manifest.get("routing_idx_tensors") or []), plugin=export.forms["plugin"]
    )
    logger.info("validating the TensorRT engine against PyTorch ...")
    return validate_engine(
        model, export.directory / ENGINE_FILE, library if library.is_file() else None, forms, export.precision, atol
    )


def validate_directory(source, export: ExportDir, atol: float | None = None) -> dict:
    """Everything `mod-export validate` vouches for; report["not_checked"] lists what it could not check."""
    report = validate_artifacts(source.module, export.forms, export.precision, atol=atol)
    checks = {"generation": _generation(source, export), "engine_parity": _engine(source.module, export, atol)}
    for key, part in checks.items():
        if part is not None:
            report[key] = part
            fold(report, part)
    report["not_checked"] = list(export.not_checked)
    return report
