"""The export job's stages that are more than a call: the precision stage, the generation graphs and their
validation, the TensorRT engines, the FLOP table (mod_export/pipeline/job.py runs them in order)."""

from __future__ import annotations

import logging
from pathlib import Path

from calibration.apply import int8_stage
from calibration.fp16 import fp16_stage
from mod_export.backends.trt.availability import import_tensorrt, require_gpu
from mod_export.backends.trt.builder import build_engine
from mod_export.backends.trt.generation import DecodeLayout, build_phase_engine, phase_profiles
from mod_export.contract import (
    CACHE_APPEND,
    DECODE_ENGINE_FILE,
    ENGINE_FILE,
    PLUGIN_DECODE_FILE,
    PLUGIN_FILE,
    PLUGIN_PREFILL_FILE,
    PORTABLE_FILE,
    PREFILL_ENGINE_FILE,
    STEP_FILE,
    TAKE_COUNT,
)
from mod_export.exporter.artifacts import ArtifactDir
from mod_export.exporter.generation_graphs import export_decode_forms
from mod_export.exporter.onnx_export import ExportedForms, export_forms
from mod_export.graph.generation_plugin_form import plugin_decode_graph, plugin_prefill_graph
from mod_export.graph.weights import WeightStore
from mod_export.models.flops import forward_flops, ideal_speedup
from mod_export.models.sources import LoadedModel
from mod_export.pipeline.options import ExportOptions
from mod_export.plugin_build import library_path
from mod_export.validate.directory import judge_generation_graphs

logger = logging.getLogger(__name__)

PARITY_KEYS = ("parity", "plugin_parity")  # the generation entry's validation results (not in the manifest)


def precision_stage(
    options: ExportOptions, src: LoadedModel, float_forms: ExportedForms, calibration, store: WeightStore
) -> tuple[ExportedForms, dict | None]:
    """The forms at the requested precision, and what the precision stage did (None for fp32)."""
    if options.precision == "fp16":
        logger.info("exporting in float16 and applying the precision policy ...")
        stage = fp16_stage(export_forms(src, options.opset, options.allow_dense, half=True, store=store))
    elif options.precision == "int8":
        logger.info("calibrating and quantising to int8 ...")
        stage = int8_stage(float_forms, calibration, options.precision_options())
    else:
        return float_forms, None
    return stage.forms, stage.details


def generation_graphs(options: ExportOptions, src: LoadedModel, art_files: dict, store: WeightStore) -> dict:
    """Export the step graph (ONNX Runtime) and the plugin-form prefill/decode pair (TensorRT), validate them
    against the causal-routing reference (unless --no-validate), and describe them for the manifest. art_files
    receives the protos to save. Built-in architectures only: a user's model has no causal-routing contract the
    exporter could read."""
    model = src.builtin
    if model is None:
        logger.info("no generation graphs: %s is not a built-in architecture (docs/models.md)", src.source)
        return {"skipped": "generation graphs are exported for the built-in architectures only (docs/models.md)"}
    logger.info("exporting the generation graphs (the step graph, and the prefill/decode pair's plugin form) ...")
    decode = export_decode_forms(model, options.opset, store)
    art_files[STEP_FILE] = decode.step
    plugin_prefill, plugin_decode = plugin_prefill_graph(decode.prefill), plugin_decode_graph(decode.decode)
    art_files[PLUGIN_PREFILL_FILE], art_files[PLUGIN_DECODE_FILE] = plugin_prefill, plugin_decode
    cfg = model.config
    entry = {
        "mode": "causal routing",
        "step": STEP_FILE,  # ONNX Runtime: prefill and decode in one graph, one session
        "plugin_prefill": PLUGIN_PREFILL_FILE,  # TensorRT: MoDTakeCount + MoDCacheAppend, caches appended in place
        "plugin_decode": PLUGIN_DECODE_FILE,
        "decode_ops": [TAKE_COUNT, CACHE_APPEND],
        "layers": decode.layers,
        "routed_layers": decode.routed_layers,
        "heads": cfg.kv_heads,
        "head_dim": cfg.d_model // cfg.n_heads,
        "max_context": options.max_context,
        "precision": "fp32",
    }
    if options.validate:
        logger.info("validating generation (both forms): prefill + 64 decode steps on ONNX Runtime against PyTorch ...")
        graphs = {"step": decode.step, "plugin_prefill": plugin_prefill, "plugin_decode": plugin_decode}
        entry["parity"] = judge_generation_graphs(model, graphs)
        entry["plugin_parity"] = entry["parity"].pop("plugin")
    return entry


def manifest_generation(entry: dict | None) -> dict | None:
    """The generation entry as the manifest records it (no validation results), or None without one."""
    if not entry or "skipped" in entry:
        return None
    return {k: v for k, v in entry.items() if k not in PARITY_KEYS}


def build_engines(art: ArtifactDir, options: ExportOptions, forms: ExportedForms, generation: dict | None) -> dict:
    """model.engine (+ the plugin library beside it), every routed layer's idx marked as an engine output too, and
    the generation engines. Raises MissingDependencyError without TensorRT or a GPU."""
    import_tensorrt()
    require_gpu()
    settings = options.engine_settings()
    settings.extra_outputs = tuple(forms.idx_outputs)
    if options.use_plugins:
        library = options.plugin_library or library_path()
        art.put_copy(library, library.name)
        settings.plugin_library = Path(library)
    source = art.path(PLUGIN_FILE if options.use_plugins else PORTABLE_FILE)
    logger.info("building TensorRT engine from %s ...", source.name)
    info = build_engine(source, art.path(ENGINE_FILE), settings)
    report = {"built": True, "from": source.name, **info}
    if generation is not None and options.use_plugins and "skipped" not in generation:
        report["generation"] = generation_engines(art, options, settings, generation)
    return report


def generation_engines(art: ArtifactDir, options: ExportOptions, settings, generation: dict) -> dict:
    """One engine per phase from the plugin-form pair (docs/generation.md), each with its profile; names recorded
    in the generation entry (and so in the manifest) for Session.generate and examples/cpp/generate.cpp."""
    layout = DecodeLayout(
        generation["layers"], tuple(generation["routed_layers"]), generation["heads"], generation["head_dim"]
    )
    b = settings.batch
    profiles = phase_profiles(layout, b.max, options.max_context, opt_batch=b.opt)
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


def flops_table(cfg) -> dict:
    return {
        str(T): {
            "mod": forward_flops(cfg, 1, T)["total"],
            "dense": forward_flops(cfg, 1, T, False)["total"],
            "ideal_speedup": ideal_speedup(cfg, 1, T),
        }
        for T in (256, 1024, 4096)
    }
