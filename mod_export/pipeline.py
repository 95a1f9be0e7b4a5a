"""The export job for every target, as stages: load -> export both ONNX forms -> precision stage -> checks ->
validation -> (trt) engine build and its validation -> (triton) model repository -> report and manifest, all
written into DIR atomically under a lock. The CLI is a thin layer over run_onnx_job."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from calibration.apply import PrecisionOptions, int8_stage, load_calibration
from calibration.fp16 import fp16_stage
from mod_export.backends.trt.availability import import_tensorrt, require_gpu
from mod_export.backends.trt.builder import EngineSettings, build_engine
from mod_export.backends.trt.decoder import DecodeLayout, build_phase_engine, phase_profiles
from mod_export.contract import (
    CACHE_APPEND,
    DECODE_ENGINE_FILE,
    DECODE_FILE,
    DEFAULT_ATOL,
    DEFAULT_MAX_CONTEXT,
    DEFAULT_OPSET,
    DOMAIN,
    ENGINE_FILE,
    MANIFEST_FILE,
    PLUGIN_DECODE_FILE,
    PLUGIN_FILE,
    PLUGIN_PREFILL_FILE,
    PORTABLE_FILE,
    PREFILL_ENGINE_FILE,
    PREFILL_FILE,
    REPORT_FILE,
    SCATTER,
    TAKE_COUNT,
    TOPK_GATHER,
)
from mod_export.errors import MissingDependencyError, ParityError
from mod_export.exporter.artifacts import ArtifactDir, OutputLock, check_output_dir
from mod_export.exporter.decode_export import export_decode_forms
from mod_export.exporter.manifest import build_manifest
from mod_export.exporter.onnx_export import ExportedForms, check_model, check_opset, export_forms
from mod_export.exporter.triton import TritonSettings, write_repository
from mod_export.graph.decode_plugin_form import plugin_decode_graph, plugin_prefill_graph
from mod_export.models.flops import forward_flops, ideal_speedup
from mod_export.models.sources import LoadedModel, load_source
from mod_export.plugins import LIBRARY_NAME, library_path
from mod_export.validate.artifacts import validate_artifacts, validate_engine
from mod_export.validate.directory import judge_generation_graphs

logger = logging.getLogger(__name__)


@dataclass
class OnnxJob:
    model_path: Path | None  # a checkpoint, safetensors folder or .pt2 archive; None when `source` is given
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
    engine: EngineSettings | None = None
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)
    decode: bool = True  # also write the prefill/decode graphs for generation (docs/generation.md)
    max_context: int = DEFAULT_MAX_CONTEXT
    triton: TritonSettings = field(default_factory=TritonSettings)  # --target triton: configs of the repository
    source: LoadedModel | None = None  # a live module from mod_export.export(); else loaded from model_path

    @property
    def inputs(self) -> list[Path]:
        """The user's input files, which the output directory must never overlap."""
        return [] if self.model_path is None else [Path(self.model_path)]


def _pair(forms: ExportedForms) -> dict:
    return {"portable": forms.portable, "plugin": forms.plugin}


def _build_engine_into(art: ArtifactDir, job: OnnxJob, forms: ExportedForms, generation: dict | None = None) -> dict:
    """model.engine (+ the plugin library beside it), every routed layer's idx marked as an engine output too.
    Raises MissingDependencyError without TensorRT or a GPU."""
    import_tensorrt()
    require_gpu()
    settings = job.engine or EngineSettings()
    settings.extra_outputs = tuple(forms.idx_outputs)
    if job.use_plugins:
        library = job.plugin_library or library_path()
        art.put_copy(library, library.name)
        settings.plugin_library = Path(library)
    source = art.path(PLUGIN_FILE if job.use_plugins else PORTABLE_FILE)
    logger.info("building TensorRT engine from %s ...", source.name)
    info = build_engine(source, art.path(ENGINE_FILE), settings)
    report = {"built": True, "from": source.name, **info}
    if generation is not None and job.use_plugins:
        report["generation"] = _build_generation_engines(art, job, settings, generation)
    return report


def _build_generation_engines(art: ArtifactDir, job: OnnxJob, settings: EngineSettings, generation: dict) -> dict:
    """One engine per phase from the plugin-form pair (docs/generation.md), each with its profile; names recorded
    in the generation entry (and so in the manifest) for Session.generate and examples/cpp/generate.cpp."""
    layout = DecodeLayout(
        generation["layers"], tuple(generation["routed_layers"]), generation["heads"], generation["head_dim"]
    )
    b = settings.batch
    profiles = phase_profiles(layout, b.max, job.max_context, opt_batch=b.opt)
    built = {}
    for phase, onnx_name, engine_name in (
        ("prefill", PLUGIN_PREFILL_FILE, PREFILL_ENGINE_FILE),
        ("decode", PLUGIN_DECODE_FILE, DECODE_ENGINE_FILE),
    ):
        logger.info("building the TensorRT %s engine from %s ...", phase, onnx_name)
        built[phase] = build_phase_engine(
            art.path(onnx_name), art.path(engine_name), profiles[phase], settings.plugin_library, settings.workspace_mb
        )
    generation["prefill_engine"], generation["decode_engine"] = PREFILL_ENGINE_FILE, DECODE_ENGINE_FILE
    return built


def run_onnx_job(job: OnnxJob) -> dict:
    """Returns the report. Raises ParityError (after writing everything; `.report` holds it) when validation
    fails, and MissingDependencyError for --target trt without TensorRT or a GPU (after writing the ONNX
    artifacts). One run at a time per output directory; nothing half-written survives a failure."""
    check_opset(job.opset)  # cheap checks first, before any slow work
    check_output_dir(job.out_dir, job.force, job.inputs)
    with OutputLock(job.out_dir):
        return _run_locked(job)


def _generation(job: OnnxJob, src: LoadedModel, art_files: dict) -> dict:
    """Export the prefill and decode graphs, validate them against the causal-routing reference (unless
    --no-validate), and describe them for the manifest. art_files receives the protos to save. Built-in
    architectures only: a user's model has no causal-routing contract the exporter could read."""
    model = src.builtin
    if model is None:
        logger.info("no generation graphs: %s is not a built-in architecture (docs/models.md)", src.source)
        return {"skipped": "generation graphs are exported for the built-in architectures only (docs/models.md)"}
    logger.info("exporting the prefill and decode graphs for generation ...")
    decode = export_decode_forms(model, job.opset)
    art_files[PREFILL_FILE], art_files[DECODE_FILE] = decode.prefill, decode.decode
    plugin_prefill, plugin_decode = plugin_prefill_graph(decode.prefill), plugin_decode_graph(decode.decode)
    art_files[PLUGIN_PREFILL_FILE], art_files[PLUGIN_DECODE_FILE] = plugin_prefill, plugin_decode
    cfg = model.config
    entry = {
        "mode": "causal routing",
        "prefill": PREFILL_FILE,
        "decode": DECODE_FILE,
        "plugin_prefill": PLUGIN_PREFILL_FILE,  # TensorRT: MoDTakeCount + MoDCacheAppend, caches appended in place
        "plugin_decode": PLUGIN_DECODE_FILE,
        "decode_ops": [TAKE_COUNT, CACHE_APPEND],
        "layers": decode.layers,
        "routed_layers": decode.routed_layers,
        "heads": cfg.kv_heads,
        "head_dim": cfg.d_model // cfg.n_heads,
        "max_context": job.max_context,
        "precision": "fp32",
    }
    if job.validate:
        logger.info("validating generation (both forms): prefill + 64 decode steps on ONNX Runtime against PyTorch ...")
        graphs = {"prefill": decode.prefill, "decode": decode.decode}
        graphs.update(plugin_prefill=plugin_prefill, plugin_decode=plugin_decode)
        entry["parity"] = judge_generation_graphs(model, graphs)
        entry["plugin_parity"] = entry["parity"].pop("plugin")
    return entry


def _precision_stage(
    job: OnnxJob, src: LoadedModel, float_forms: ExportedForms, calibration
) -> tuple[ExportedForms, dict | None]:
    precision = job.precision.precision
    if precision == "fp16":
        logger.info("exporting in float16 and applying the precision policy ...")
        stage = fp16_stage(export_forms(src, job.opset, job.allow_dense, half=True))
    elif precision == "int8":
        logger.info("calibrating and quantising to int8 ...")
        stage = int8_stage(float_forms, calibration, job.precision)
    else:
        return float_forms, None
    return stage.forms, stage.details


def _flops(cfg) -> dict:
    return {
        str(T): {
            "mod": forward_flops(cfg, 1, T)["total"],
            "dense": forward_flops(cfg, 1, T, False)["total"],
            "ideal_speedup": ideal_speedup(cfg, 1, T),
        }
        for T in (256, 1024, 4096)
    }


def _manifest_generation(entry: dict | None) -> dict | None:
    if not entry or "skipped" in entry:
        return None
    return {k: v for k, v in entry.items() if k not in ("parity", "plugin_parity")}


def _run_locked(job: OnnxJob) -> dict:
    precision = job.precision
    calibration = load_calibration(precision)
    src = job.source if job.source is not None else load_source(job.model_path, unsafe=job.unsafe_load)
    model = src.module  # the reference every artifact is validated against, whatever its class
    logger.info("exporting %s (opset %d) ...", src.source, job.opset)
    float_forms = export_forms(src, job.opset, job.allow_dense)
    forms, precision_details = _precision_stage(job, src, float_forms, calibration)
    check_model(forms.plugin, PLUGIN_FILE)
    check_model(forms.portable, PORTABLE_FILE)
    logger.info(
        "found %d routed blocks of %d; both forms pass onnx.checker (full)", forms.routed_found, forms.routed_expected
    )
    report: dict = {
        "model": src.source,
        "source": src.kind,
        "target": job.target,
        "config": src.builtin.config.to_dict() if src.builtin is not None else {"class": type(model).__name__},
        "export": {
            "opset": job.opset,
            "routed_blocks_found": forms.routed_found,
            "routed_blocks_expected": forms.routed_expected,
            "idx_tensors": forms.idx_outputs,
        },
        "precision": precision.precision,
        "precision_details": precision_details,
        "flops_per_forward": None if src.builtin is None else _flops(src.builtin.config),
    }
    extra_files: dict = {}
    if job.decode:
        report["generation"] = _generation(job, src, extra_files)
    if job.validate:
        report["parity"] = validate_artifacts(
            model,
            _pair(forms),
            precision.precision,
            float_forms=_pair(float_forms),
            atol=job.atol,
            eval_windows=precision.eval_windows,
            min_routing_agreement=precision.min_routing_agreement,
        )
        for alarm in (report["parity"].get("router_health") or {}).get("alarms", []):
            logger.warning("degenerate router: %s", alarm)
        generation_parity = report.get("generation", {}).get("parity")
        if generation_parity is not None:
            report["parity"]["mismatches"] += generation_parity["mismatches"]
            report["parity"]["passed"] = report["parity"]["passed"] and generation_parity["passed"]
    missing: MissingDependencyError | None = None
    with ArtifactDir(job.out_dir, job.force, job.inputs) as art:
        art.save_onnx(forms.portable, PORTABLE_FILE)
        art.save_onnx(forms.plugin, PLUGIN_FILE)
        for name, proto in extra_files.items():
            art.save_onnx(proto, name)
        engine = None
        if job.target in ("trt", "triton"):
            try:
                report["engine"] = _build_engine_into(art, job, forms, report.get("generation"))
                engine = art.path(ENGINE_FILE)
            except MissingDependencyError as exc:
                report["engine"] = {"built": False, "reason": str(exc)}
                missing = exc
        if engine is not None and job.validate:
            library = art.path(LIBRARY_NAME)
            logger.info("validating the TensorRT engine against PyTorch ...")
            engine_parity = validate_engine(
                model, engine, library if library.is_file() else None, forms, precision.precision, atol=job.atol
            )
            report["engine_parity"] = engine_parity
            report["parity"]["mismatches"] += engine_parity["mismatches"]
            report["parity"]["passed"] = report["parity"]["passed"] and engine_parity["passed"]
        if job.target == "triton":
            library = art.path(LIBRARY_NAME)
            shapes = job.engine or EngineSettings()
            job.triton.max_seq_len = shapes.seq.max  # the scoring model refuses longer requests
            write_repository(
                art.tmp,
                src.vocab_size(),
                shapes.batch.max,
                art.path(PORTABLE_FILE),
                engine,
                library if library.is_file() else None,
                idx_names=list(forms.idx_outputs),
                settings=job.triton,
                generation=_manifest_generation(report.get("generation")),
            )
        art.put_json(REPORT_FILE, report)
        manifest = build_manifest(
            art.tmp,
            art.files(),
            forms.portable,
            {
                "target": job.target,
                "precision": precision.precision,
                "opset": job.opset,
                "custom_ops": {"domain": DOMAIN, "ops": [TOPK_GATHER, SCATTER], "in": PLUGIN_FILE},
                "routing_idx_tensors": forms.idx_outputs,
                "generation": _manifest_generation(report.get("generation")),
                "parity": None if "parity" not in report else ("passed" if report["parity"]["passed"] else "failed"),
                "engine": report.get("engine"),
            },
        )
        art.put_json(MANIFEST_FILE, manifest)
        report["written"] = sorted(p.relative_to(art.tmp).as_posix() for p in art.files())
    if "parity" in report and not report["parity"]["passed"]:
        mism = report["parity"]["mismatches"]
        raise ParityError(
            f"parity failed in {len(mism)} place(s), first: {mism[0]} (all in {job.out_dir}/{REPORT_FILE})",
            mism,
            report=report,
        )
    if missing is not None and job.target == "trt":
        raise MissingDependencyError(f"ONNX artifacts written, TensorRT engine not built: {missing}", report=report)
    if missing is not None:
        logger.warning("no TensorRT model in the Triton repository: %s", missing)
    return report
