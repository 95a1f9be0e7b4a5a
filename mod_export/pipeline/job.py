"""The export job, for every target, as stages: load -> export both ONNX forms -> precision stage -> checks ->
validation -> (trt) engine build and its validation -> (triton) model repository -> report and manifest, all
written into DIR atomically under a lock. The CLI and `mod_export.export()` are thin layers over run_export_job."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from calibration.apply import load_calibration
from mod_export import output
from mod_export.contract import (
    DOMAIN,
    ENGINE_FILE,
    MANIFEST_FILE,
    PLUGIN_FILE,
    PORTABLE_FILE,
    REPORT_FILE,
    SCATTER,
    TOKENIZER_FILE,
    TOPK_GATHER,
)
from mod_export.errors import CheckpointError, MissingDependencyError, ParityError
from mod_export.exporter import trace_cache
from mod_export.exporter.artifacts import ArtifactDir, OutputLock, check_output_dir, resolve_output
from mod_export.exporter.manifest import build_manifest
from mod_export.exporter.onnx_export import ExportedForms, check_model, check_opset, export_forms
from mod_export.exporter.triton import write_repository
from mod_export.generation.text import codec_for
from mod_export.graph.weights import WeightStore
from mod_export.models.memory import check_export_memory
from mod_export.models.sources import LoadedModel, load_source
from mod_export.parity.verdict import fold
from mod_export.pipeline.options import ExportOptions
from mod_export.pipeline.stages import (
    build_engines,
    flops_table,
    generation_graphs,
    manifest_generation,
    precision_stage,
)
from mod_export.plugin_build import LIBRARY_NAME
from mod_export.validate.artifacts import validate_artifacts, validate_engine

logger = logging.getLogger(__name__)


@dataclass
class ExportJob:
    """What to export and where: a model file (or a live module as `source`) into out_dir, with `options`."""

    model_path: Path | None  # a checkpoint, safetensors folder or .pt2 archive; None when `source` is given
    out_dir: Path
    options: ExportOptions = field(default_factory=ExportOptions)
    source: LoadedModel | None = None  # a live module from mod_export.export(); else loaded from model_path

    @property
    def inputs(self) -> list[Path]:
        """The user's input files, which the output directory must never overlap."""
        return [] if self.model_path is None else [Path(self.model_path)]


@dataclass
class Exported:
    """What the stages before writing produced: the model, its forms at the export precision and in float32,
    the extra graphs to save (generation), and the report so far."""

    src: LoadedModel
    forms: ExportedForms
    float_forms: ExportedForms
    extra_files: dict
    report: dict


def run_export_job(job: ExportJob) -> dict:
    """Returns the report. Raises ParityError (after writing everything; `.report` holds it) when validation
    fails, and MissingDependencyError for --target trt without TensorRT or a GPU (after writing the ONNX
    artifacts). One run at a time per output directory; nothing half-written survives a failure."""
    check_opset(job.options.opset)  # cheap checks first, before any slow work
    check_output_dir(job.out_dir, job.options.force, job.inputs)
    cache = trace_cache.cache_folder(job.options.trace_cache)  # --trace-cache, else $MOD_EXPORT_TRACE_CACHE
    if cache is not None:
        trace_cache.check_cache_folder(cache, job.out_dir)
    with OutputLock(job.out_dir), _work_store(job.out_dir) as store, trace_cache.using(job.options.trace_cache):
        exported = _export_and_validate(job, store)
        missing = _write(job, exported)
    return _conclude(job, exported.report, missing)


@contextlib.contextmanager
def _work_store(out_dir: Path) -> Iterator[WeightStore]:
    """The job's weights, once, in a folder beside the output (same file system, so not in RAM on a tmpfs /tmp):
    every graph references them until _write packs the ones it keeps. Removed at the end; a killed run's folder
    is a stale sibling that the next run removes (mod_export.output)."""
    folder = output.temporary_sibling(resolve_output(out_dir), directory=True)
    store = WeightStore.at(folder)
    try:
        with output.handed_out(folder):  # the job's own folder: writes inside go straight to their paths
            yield store
    finally:
        store.close()
        output.remove_tree(folder)


def _export_and_validate(job: ExportJob, store: WeightStore) -> Exported:
    options = job.options
    calibration = load_calibration(options.precision_options())  # checked before the slow work
    src = job.source if job.source is not None else load_source(job.model_path, unsafe=options.unsafe_load)
    if src.tokenizer is not None:  # a folder's tokenizer.json: readable, and made for this vocabulary
        codec_for(src.vocab_size(), src.tokenizer, CheckpointError)
    if options.memory_check:  # before the slow work: exit 4 rather than the kernel's OOM killer mid-export
        check_export_memory(src.parameter_count(), options.validate, src.source)
    logger.info("exporting %s (opset %d) ...", src.source, options.opset)
    float_forms = export_forms(src, options.opset, options.allow_dense, store=store)
    forms, precision_details = precision_stage(options, src, float_forms, calibration, store)
    check_model(forms.plugin, PLUGIN_FILE)
    check_model(forms.portable, PORTABLE_FILE)
    logger.info(
        "found %d routed blocks of %d; both forms pass onnx.checker (full)", forms.routed_found, forms.routed_expected
    )
    report = _report_head(job, src, forms, precision_details)
    extra_files: dict = {}
    if options.decode:
        report["generation"] = generation_graphs(options, src, extra_files, store)
    if options.validate:
        report["parity"] = validate_artifacts(
            src.module,
            _pair(forms),
            options.precision,
            float_forms=_pair(float_forms),
            atol=options.atol,
            eval_windows=options.eval_windows,
            min_routing_agreement=options.min_routing_agreement,
        )
        for alarm in (report["parity"].get("router_health") or {}).get("alarms", []):
            logger.warning("degenerate router: %s", alarm)
        generation_parity = report.get("generation", {}).get("parity")
        if generation_parity is not None:
            fold(report["parity"], generation_parity)
    return Exported(src, forms, float_forms, extra_files, report)


def _pair(forms: ExportedForms) -> dict:
    return {"portable": forms.portable, "plugin": forms.plugin}


def _report_head(job: ExportJob, src: LoadedModel, forms: ExportedForms, precision_details: dict | None) -> dict:
    builtin = src.builtin
    return {
        "model": src.source,
        "source": src.kind,
        "target": job.options.target,
        "config": builtin.config.to_dict() if builtin is not None else {"class": type(src.module).__name__},
        "export": {
            "opset": job.options.opset,
            "routed_blocks_found": forms.routed_found,
            "routed_blocks_expected": forms.routed_expected,
            "idx_tensors": forms.idx_outputs,
        },
        "precision": job.options.precision,
        "precision_details": precision_details,
        "tokenizer": TOKENIZER_FILE if src.tokenizer is not None else None,
        "flops_per_forward": None if builtin is None else flops_table(builtin.config),
    }


def _write(job: ExportJob, exported: Exported) -> MissingDependencyError | None:
    """Everything into the output directory, atomically: the forms, the generation graphs, (trt/triton) the
    engines and their validation, (triton) the repository, report.json and manifest.json. Returns why the engine
    was not built, if it was asked for and could not be."""
    options, forms, report = job.options, exported.forms, exported.report
    missing: MissingDependencyError | None = None
    with ArtifactDir(job.out_dir, options.force, job.inputs) as art:
        art.save_onnx({PORTABLE_FILE: forms.portable, PLUGIN_FILE: forms.plugin, **exported.extra_files})
        if exported.src.tokenizer is not None:
            output.copy_file(exported.src.tokenizer, art.path(TOKENIZER_FILE))
        engine = None
        if options.target in ("trt", "triton"):
            try:
                report["engine"] = build_engines(art, options, forms, report.get("generation"))
                engine = art.path(ENGINE_FILE)
            except MissingDependencyError as exc:
                report["engine"] = {"built": False, "reason": str(exc)}
                missing = exc
        library = art.path(LIBRARY_NAME)
        library = library if library.is_file() else None
        if engine is not None and options.validate:
            logger.info("validating the TensorRT engine against PyTorch ...")
            report["engine_parity"] = validate_engine(
                exported.src.module, engine, library, forms, options.precision, atol=options.atol
            )
            fold(report["parity"], report["engine_parity"])
        if options.target == "triton":
            _write_repository(art, options, exported, engine, library)
        art.put_json(REPORT_FILE, report)
        art.put_json(MANIFEST_FILE, _manifest(art, options, forms, report))
        report["written"] = sorted(p.relative_to(art.tmp).as_posix() for p in art.files())
    return missing


def _write_repository(art: ArtifactDir, options: ExportOptions, exported: Exported, engine, library) -> None:
    shapes = options.engine_settings()
    triton = dataclasses.replace(options.triton, max_seq_len=shapes.seq.max)  # longer requests are refused
    write_repository(
        art.tmp,
        exported.src.vocab_size(),
        shapes.batch.max,
        art.path(PORTABLE_FILE),
        engine,
        library,
        idx_names=list(exported.forms.idx_outputs),
        settings=triton,
        generation=manifest_generation(exported.report.get("generation")),
        tokenizer=art.path(TOKENIZER_FILE) if exported.src.tokenizer is not None else None,
    )


def _manifest(art: ArtifactDir, options: ExportOptions, forms: ExportedForms, report: dict) -> dict:
    parity = report.get("parity")
    return build_manifest(
        art.tmp,
        art.files(),
        forms.portable,
        {
            "target": options.target,
            "precision": options.precision,
            "opset": options.opset,
            "custom_ops": {"domain": DOMAIN, "ops": [TOPK_GATHER, SCATTER], "in": PLUGIN_FILE},
            "routing_idx_tensors": forms.idx_outputs,
            "generation": manifest_generation(report.get("generation")),
            "parity": None if parity is None else ("passed" if parity["passed"] else "failed"),
            "engine": report.get("engine"),
            "tokenizer": report.get("tokenizer"),
        },
    )


def _conclude(job: ExportJob, report: dict, missing: MissingDependencyError | None) -> dict:
    """The job's outcome once everything is written: ParityError, MissingDependencyError (trt), or the report."""
    if "parity" in report and not report["parity"]["passed"]:
        mism = report["parity"]["mismatches"]
        raise ParityError(
            f"parity failed in {len(mism)} place(s), first: {mism[0]} (all in {job.out_dir}/{REPORT_FILE})",
            mism,
            report=report,
        )
    if missing is not None and job.options.target == "trt":
        raise MissingDependencyError(f"ONNX artifacts written, TensorRT engine not built: {missing}", report=report)
    if missing is not None:
        logger.warning("no TensorRT model in the Triton repository: %s", missing)
    return report
