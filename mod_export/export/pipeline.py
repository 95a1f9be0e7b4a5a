"""The export job for every target: load, export both ONNX forms, check, validate, then (trt) build the
engine and (triton) lay out a model repository; everything is written into DIR atomically."""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mod_export.errors import MissingDependencyError, ParityError
from mod_export.contract import DEFAULT_ATOL, DEFAULT_OPSET, ENGINE_FILE, PLUGIN_FILE, PORTABLE_FILE
from mod_export.export.artifacts import ArtifactDir, OutputLock, check_output_dir
from mod_export.export.manifest import build_manifest
from mod_export.export.onnx_export import check_model, check_opset, export_forms
from mod_export.flops import forward_flops, ideal_speedup



@dataclass
class OnnxJob:
    model_path: Path
    out_dir: Path
    force: bool = False
    opset: int = DEFAULT_OPSET
    allow_dense: bool = False
    unsafe_load: bool = False
    validate: bool = True
    atol: float = DEFAULT_ATOL
    target: str = "onnx"  # onnx | trt | triton
    use_plugins: bool = True  # trt: build from model.plugin.onnx (else the portable form)
    plugin_library: Path | None = None
    engine: "object | None" = field(default=None)  # backends.trt.builder.EngineSettings
    precision: "object | None" = field(default=None)  # calibration.apply.PrecisionOptions (None = fp32)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _build_engine_into(art: ArtifactDir, job: OnnxJob) -> dict:
    """model.engine (+ the plugin library beside it). Raises MissingDependencyError without TensorRT/GPU."""
    from mod_export.backends.trt.availability import import_tensorrt, require_gpu
    from mod_export.backends.trt.builder import EngineSettings, build_engine

    import_tensorrt()
    require_gpu()
    settings = job.engine or EngineSettings()
    if job.use_plugins:
        from mod_export.plugins import library_path

        library = job.plugin_library or library_path()
        shutil.copyfile(library, art.path(library.name))
        settings.plugin_library = Path(library)
    source = art.path(PLUGIN_FILE if job.use_plugins else PORTABLE_FILE)
    log(f"building TensorRT engine from {source.name} ...")
    info = build_engine(source, art.path(ENGINE_FILE), settings)
    return {"built": True, "from": source.name, **info}


def _validate(job: OnnxJob, model, float_forms, forms, precision) -> dict:
    """Parity (and for fp16/int8 quality) of what is about to be written; prints the tables and any router alarm."""
    from mod_export.validate.artifacts import format_validation, validate_artifacts

    def pair(f):
        return {"portable": f.portable, "plugin": f.plugin}

    parity = validate_artifacts(model, pair(forms), precision.precision, float_forms=pair(float_forms), atol=job.atol,
                                eval_windows=precision.eval_windows, min_routing_agreement=precision.min_routing_agreement,
                                log=log)
    print(format_validation(parity))
    for alarm in (parity.get("router_health") or {}).get("alarms", []):
        log(f"warning: degenerate router: {alarm}")
    return parity


def run_onnx_job(job: OnnxJob) -> dict:
    """Returns the report. Raises ParityError (after writing everything) when validation fails, and
    MissingDependencyError for --target trt without TensorRT or a GPU (after writing the ONNX artifacts).
    One run at a time per output directory (OutputLock); nothing half-written survives a failure."""
    check_opset(job.opset)  # cheap checks first, before any slow work
    check_output_dir(job.out_dir, job.force, [job.model_path])
    with OutputLock(job.out_dir):
        return _run_locked(job)


def _run_locked(job: OnnxJob) -> dict:
    from calibration.apply import PrecisionOptions, load_calibration
    from mod_export.checkpoint import load_checkpoint

    precision = job.precision or PrecisionOptions()
    calibration = load_calibration(precision)
    model = load_checkpoint(job.model_path, unsafe=job.unsafe_load)
    log(f"exporting {job.model_path} (opset {job.opset}) ...")
    forms = export_forms(model, job.opset, job.allow_dense)
    float_forms = forms
    precision_details = None
    if precision.precision != "fp32":
        from calibration.apply import reduce_precision

        log(f"converting to {precision.precision} ...")
        forms, precision_details = reduce_precision(model, forms, precision, calibration, job.opset, job.allow_dense)
    check_model(forms.plugin, PLUGIN_FILE)
    check_model(forms.portable, PORTABLE_FILE)
    log(f"found {forms.routed_found} routed blocks of {forms.routed_expected}; both forms pass onnx.checker (full)")
    cfg = model.config
    report: dict = {
        "model": str(job.model_path),
        "target": job.target,
        "config": cfg.to_dict(),
        "export": {"opset": job.opset, "routed_blocks_found": forms.routed_found, "routed_blocks_expected": forms.routed_expected,
                   "idx_tensors": forms.idx_outputs},
        "precision": precision.precision,
        "precision_details": precision_details,
        "flops_per_forward": {
            str(T): {"mod": forward_flops(cfg, 1, T)["total"], "dense": forward_flops(cfg, 1, T, False)["total"],
                     "ideal_speedup": ideal_speedup(cfg, 1, T)} for T in (256, 1024, 4096)
        },
    }
    if job.validate:
        report["parity"] = _validate(job, model, float_forms, forms, precision)
    missing: MissingDependencyError | None = None
    with ArtifactDir(job.out_dir, job.force, [job.model_path]) as art:
        art.save_onnx(forms.portable, PORTABLE_FILE)
        art.save_onnx(forms.plugin, PLUGIN_FILE)
        engine = None
        if job.target in ("trt", "triton"):
            try:
                report["engine"] = _build_engine_into(art, job)
                engine = art.path(ENGINE_FILE)
            except MissingDependencyError as exc:
                report["engine"] = {"built": False, "reason": str(exc)}
                missing = exc
        if job.target == "triton":
            from mod_export.export.triton import write_repository

            from mod_export.plugins import LIBRARY_NAME

            library = art.path(LIBRARY_NAME)
            max_batch = job.engine.batch.max if job.engine is not None else 8
            write_repository(art.tmp, cfg.vocab_size, max_batch, art.path(PORTABLE_FILE), engine,
                             library if library.is_file() else None)
        art.write_json("report.json", report)
        manifest = build_manifest(art.tmp, art.files(), forms.portable, {
            "target": job.target, "precision": precision.precision, "opset": job.opset,
            "custom_ops": {"domain": "mod_export", "ops": ["MoDTopKGather", "MoDScatter"], "in": PLUGIN_FILE},
            "routing_idx_tensors": forms.idx_outputs,
            "parity": None if "parity" not in report else ("passed" if report["parity"]["passed"] else "failed"),
            "engine": report.get("engine"),
        })
        art.write_json("manifest.json", manifest)
        written = sorted(p.relative_to(art.tmp).as_posix() for p in art.files())
    print(f"wrote {job.out_dir}: {', '.join(w for w in written if '/' not in w)}"
          + (" and model_repository/" if job.target == "triton" else ""))
    if "parity" in report and not report["parity"]["passed"]:
        mism = report["parity"]["mismatches"]
        raise ParityError(f"parity failed in {len(mism)} place(s), first: {mism[0]} (all in {job.out_dir}/report.json)", mism)
    if missing is not None and job.target == "trt":
        raise MissingDependencyError(f"ONNX artifacts written, TensorRT engine not built: {missing}")
    if missing is not None:
        log(f"note: no TensorRT model in the Triton repository: {missing}")
    return report
