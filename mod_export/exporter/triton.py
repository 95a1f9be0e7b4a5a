"""A Triton Inference Server model repository: the portable ONNX model on the ONNX Runtime backend; where an
engine was built, the engine on the TensorRT backend with its plugin library; and the scoring model on the Python
backend (mod_export.serving.scoring, torch-free), which reads its ONNX file from its own folder.

    model_repository/
      mod_export_onnx/   config.pbtxt  1/model.onnx
      mod_export_trt/    config.pbtxt  1/model.plan  libmod_export_plugins.so      (with an engine only)
      mod_export_score/  config.pbtxt  1/model.py  1/model.onnx  1/manifest.json
      mod_export_generate/ config.pbtxt  1/model.py  1/model.onnx  1/model.step.onnx
                           1/manifest.json                                  (with the generation graphs only)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mod_export import output
from mod_export.contract import (
    ATTENTION_MASK,
    DEFAULT_TRITON_CONTEXT,
    DEFAULT_TRITON_INSTANCES,
    DEFAULT_TRITON_QUEUE_DELAY_US,
    DEFAULT_TRITON_SLOTS,
    INPUT_IDS,
    LOGITS,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    PROMPT_TEXT,
    STEP_FILE,
    TEXT_PIECE,
    TOKEN_ID,
    TOKENIZER_FILE,
    TRITON_GENERATE_MODEL,
    TRITON_ONNX_MODEL,
    TRITON_REPOSITORY,
    TRITON_SCORE_MODEL,
    TRITON_STEP_DELAY,
    TRITON_TRT_MODEL,
    VERSION,
    WEIGHTS_FILE,
)
from mod_export.exporter.triton_readme import loading_notes
from mod_export.integrity import sha256_file

# the export's generation entry names these TensorRT files; the generation model's folder holds none of them
TENSORRT_GENERATION_KEYS = ("plugin_prefill", "plugin_decode", "decode_ops", "prefill_engine", "decode_engine")

ONNX_MODEL, TRT_MODEL, SCORE_MODEL, REPOSITORY = (
    TRITON_ONNX_MODEL,
    TRITON_TRT_MODEL,
    TRITON_SCORE_MODEL,
    TRITON_REPOSITORY,
)


@dataclass
class TritonSettings:
    """What `--target triton` writes into the configs: scheduling and instances (the CLI's --triton-* options)."""

    instances: int = DEFAULT_TRITON_INSTANCES  # model instances of the scoring model (one process each)
    queue_delay_us: int = DEFAULT_TRITON_QUEUE_DELAY_US  # dynamic batcher: longest wait for more requests
    threads: int = 0  # ONNX Runtime intra-op threads per scoring instance (0: ONNX Runtime's default)
    max_seq_len: int = 4096  # longest request the scoring model accepts (the --seq-len maximum)
    slots: int = DEFAULT_TRITON_SLOTS  # generation: requests generating at once (in-flight batch rows)
    context: int = DEFAULT_TRITON_CONTEXT  # generation: prompt + new tokens per request
    step_delay_ms: int = 0  # generation: a wait after each decode step (debugging and tests only; docs/serving.md)


def _io_block(vocab: int, optional_mask: bool = False) -> str:
    # max_batch_size > 0: Triton owns dim 0 (batch); dims below are per request (seq, and vocab for logits).
    optional = " optional: true" if optional_mask else ""
    return (
        "input [\n"
        f'  {{ name: "{INPUT_IDS}" data_type: TYPE_INT64 dims: [ -1 ] }},\n'
        f'  {{ name: "{ATTENTION_MASK}" data_type: TYPE_INT64 dims: [ -1 ]{optional} }}\n'
        "]\n"
        "output [\n"
        f'  {{ name: "{LOGITS}" data_type: TYPE_FP32 dims: [ -1, {vocab} ] }}\n'
        "]\n"
    )


def _batching(delay_us: int) -> str:
    return f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}\n"


def onnx_config(vocab: int, max_batch: int, settings: TritonSettings | None = None) -> str:
    settings = settings or TritonSettings()
    return (
        f'name: "{ONNX_MODEL}"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch}\n'
        + _io_block(vocab)
        + _batching(settings.queue_delay_us)
    )


def trt_config(vocab: int, max_batch: int, settings: TritonSettings | None = None) -> str:
    settings = settings or TritonSettings()
    return (
        f'name: "{TRT_MODEL}"\nplatform: "tensorrt_plan"\nmax_batch_size: {max_batch}\n'
        + _io_block(vocab)
        + _batching(settings.queue_delay_us)
        + "instance_group [ { kind: KIND_GPU, count: 1 } ]\n"
    )


def score_config(vocab: int, max_batch: int, settings: TritonSettings) -> str:
    """Python backend; ragged batching stays off, so a dynamic batch holds requests of one length only
    (mod_export.serving.batching says why MoD must not pad across requests)."""
    params = {"form": "portable", "max_seq_len": settings.max_seq_len, "intra_op_threads": settings.threads}
    return (
        f'name: "{SCORE_MODEL}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
        + _io_block(vocab, optional_mask=True)
        + _batching(settings.queue_delay_us)
        + f"instance_group [ {{ kind: KIND_CPU, count: {settings.instances} }} ]\n"
        + _parameters(params)
    )


def _parameters(params: dict) -> str:
    lines = ",\n".join(f'  {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in params.items())
    return "parameters [\n" + lines + "\n]\n"


GENERATE_OPTIONS = (  # name, Triton type, dims: the generation model's optional per-request inputs
    ("max_new_tokens", "TYPE_INT32", "[ 1 ]"),
    ("temperature", "TYPE_FP32", "[ 1 ]"),
    ("top_k", "TYPE_INT32", "[ 1 ]"),
    ("top_p", "TYPE_FP32", "[ 1 ]"),
    ("seed", "TYPE_INT64", "[ 1 ]"),
    ("stop_tokens", "TYPE_INT64", "[ -1 ]"),
)


def generate_config(settings: TritonSettings) -> str:
    """Python backend, decoupled (one response per token); one instance, whose loop thread batches in flight.
    max_batch_size 0: the model batches itself, per decode step, not Triton's dynamic batcher."""
    prompt = [(INPUT_IDS, "TYPE_INT64", "[ -1 ]"), (PROMPT_TEXT, "TYPE_STRING", "[ 1 ]")]  # one of the two
    inputs = [
        f'  {{ name: "{n}" data_type: {t} dims: {d} optional: true }}' for n, t, d in prompt + list(GENERATE_OPTIONS)
    ]
    params = {"max_slots": settings.slots, "max_context": settings.context, "intra_op_threads": settings.threads}
    if settings.step_delay_ms:
        params[TRITON_STEP_DELAY] = settings.step_delay_ms
    return (
        f'name: "{TRITON_GENERATE_MODEL}"\nbackend: "python"\nmax_batch_size: 0\n'
        + "model_transaction_policy { decoupled: true }\n"
        + "input [\n"
        + ",\n".join(inputs)
        + "\n]\n"
        + f'output [\n  {{ name: "{TOKEN_ID}" data_type: TYPE_INT64 dims: [ 1 ] }},\n'
        + f'  {{ name: "{TEXT_PIECE}" data_type: TYPE_STRING dims: [ 1 ] }}\n]\n'
        + "instance_group [ { kind: KIND_CPU, count: 1 } ]\n"
        + _parameters(params)
    )


def score_model_py(kind: str = "Scoring", module: str = "scoring", cls: str = "ScoringModel") -> str:
    """The model.py of a Python-backend model: Triton's class name over the library's implementation."""
    return (
        f'"""{kind} model of a mod-export {VERSION} Triton repository (Python backend); see TRITON.md beside\n'
        "model_repository/. Needs mod-export's torch-free runtime in the Python that Triton runs this with:\n"
        f'`pip install "mod-export-runtime=={VERSION}"`."""\n\n'
        "import triton_python_backend_utils as pb_utils\n\n"
        f"from mod_export.serving.{module} import {cls}\n\n\n"
        f"class TritonPythonModel({cls}):\n"
        "    pb_utils = pb_utils\n"
        f'    exported_with = "{VERSION}"\n'
    )


def generate_model_py() -> str:
    return score_model_py("Streaming generation", "generation", "GenerationModel")


def _copy_onnx(source: Path, folder: Path) -> list[Path]:
    """A graph and the data file its weights are in (once per folder) into folder; returns the copies."""
    copies = [output.copy_file(source, folder / source.name)]
    weights = source.parent / WEIGHTS_FILE
    if weights.is_file() and not (folder / WEIGHTS_FILE).exists():
        copies.append(output.copy_file(weights, folder / WEIGHTS_FILE))
    return copies


def _write_manifest(version: Path, copies: list[Path], extra: dict) -> None:
    """What Session checks the copied files against (the export's own manifest covers these too)."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in copies},
        **extra,
    }
    output.write_json(version / MANIFEST_FILE, manifest)


def _write_score_model(repo: Path, vocab: int, max_batch: int, portable_onnx: Path, idx_names: list[str], settings):
    folder = repo / SCORE_MODEL
    version = folder / "1"
    output.make_dirs(version)
    copies = _copy_onnx(portable_onnx, version)
    _write_manifest(version, copies, {"routing_idx_tensors": list(idx_names)})
    output.write_text(version / "model.py", score_model_py())
    output.write_text(folder / "config.pbtxt", score_config(vocab, max_batch, settings))


def _write_generate_model(
    repo: Path, portable_onnx: Path, generation: dict, settings: TritonSettings, tokenizer: Path | None
) -> None:
    """The decoupled generation model: model.onnx (Session's vocabulary and input checks), the step graph, and
    the export's tokenizer.json when it has one (the text codec of Session.codec)."""
    folder = repo / TRITON_GENERATE_MODEL
    version = folder / "1"
    output.make_dirs(version)
    copies = _copy_onnx(portable_onnx, version) + _copy_onnx(portable_onnx.parent / STEP_FILE, version)
    # the folder's own entry: the graph it holds, not the export's TensorRT files
    extra: dict = {"generation": {k: v for k, v in generation.items() if k not in TENSORRT_GENERATION_KEYS}}
    if tokenizer is not None:
        copies.append(output.copy_file(tokenizer, version / TOKENIZER_FILE))
        extra["tokenizer"] = TOKENIZER_FILE
    _write_manifest(version, copies, extra)
    output.write_text(version / "model.py", generate_model_py())
    output.write_text(folder / "config.pbtxt", generate_config(settings))


def write_repository(
    root: Path,
    vocab: int,
    max_batch: int,
    portable_onnx: Path,
    engine: Path | None,
    plugin_library: Path | None,
    idx_names: list[str] | None = None,
    settings: TritonSettings | None = None,
    generation: dict | None = None,
    tokenizer: Path | None = None,
) -> Path:
    """generation: the export's manifest entry for its generation graphs (beside portable_onnx), or None.
    tokenizer: the export's tokenizer.json, for the generation model's text input and output."""
    settings = settings or TritonSettings()
    repo = root / REPOSITORY
    onnx_dir = repo / ONNX_MODEL
    output.make_dirs(onnx_dir / "1")
    _copy_onnx(portable_onnx, onnx_dir / "1")
    output.write_text(onnx_dir / "config.pbtxt", onnx_config(vocab, max_batch, settings))
    if engine is not None:
        trt_dir = repo / TRT_MODEL
        output.make_dirs(trt_dir / "1")
        output.copy_file(engine, trt_dir / "1" / "model.plan")
        output.write_text(trt_dir / "config.pbtxt", trt_config(vocab, max_batch, settings))
        if plugin_library is not None:
            output.copy_file(plugin_library, trt_dir / plugin_library.name)
    _write_score_model(repo, vocab, max_batch, portable_onnx, idx_names or [], settings)
    if generation:
        _write_generate_model(repo, portable_onnx, generation, settings, tokenizer)
    output.write_text(root / "TRITON.md", loading_notes(engine is not None, settings, generation is not None))
    return repo
