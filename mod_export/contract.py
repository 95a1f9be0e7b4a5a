"""The one home of every name and shared default of mod-export: op domain and names, graph input/output
names, artifact file names, parity tolerances and precision-dependent limits. Pure Python, no imports
beyond the standard library, so every layer (the torch-free runtime included) can use it.

The contract these names belong to is written down in docs/design.md.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "0.1.0"  # mod-export's own version (pyproject.toml reads it from here)

# ---------------------------------------------------------------- custom ONNX ops (plugin form)
DOMAIN = "mod_export"
OPSET_VERSION = 1
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "mod_export"
TOPK_GATHER = "MoDTopKGather"
SCATTER = "MoDScatter"
TAKE_COUNT = "MoDTakeCount"  # decode step: the rows that take a block -> compact list + count (size tensor)
CACHE_APPEND = "MoDCacheAppend"  # decode step: one new entry per listed row into a KV cache, in place
GATE_IDS = {"identity": 0, "sigmoid": 1}

# ---------------------------------------------------------------- graph I/O
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
INPUT_NAMES = (INPUT_IDS, ATTENTION_MASK)
LOGITS = "logits"

# ---------------------------------------------------------------- artifacts
PORTABLE_FILE = "model.onnx"
PLUGIN_FILE = "model.plugin.onnx"
WEIGHTS_FILE = "model.onnx.data"  # every graph's weights, each tensor once (docs/weights.md)
ENGINE_FILE = "model.engine"
LIBRARY_NAME = "libmod_export_plugins.so"  # the TensorRT plugin library, copied next to an engine
STEP_FILE = "model.step.onnx"  # generation: new tokens against a past cache, prefill and decode (docs/generation.md)
STEP_TOKENS_AXIS = "new_tokens"  # the step graph's dynamic P (1 at decode): runtimes bind its outputs with P known
PLUGIN_PREFILL_FILE = "model.plugin.prefill.onnx"  # generation, plugin form (TensorRT; docs/generation.md)
PLUGIN_DECODE_FILE = "model.plugin.decode.onnx"  # decode step whose key.l/value.l are the caches, appended in place
PREFILL_ENGINE_FILE = "model.prefill.engine"  # TensorRT generation: one engine per phase (docs/generation.md)
DECODE_ENGINE_FILE = "model.decode.engine"
CUDA_GRAPH_BATCHES = (1, 2, 4, 8)  # decode batch sizes captured as CUDA graphs (a batch is padded up to one)
REPORT_FILE = "report.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "mod_export.manifest/1"
CHECKPOINT_FORMAT = "mod_export/1"

# ---------------------------------------------------------------- what else mod-export writes (mod_export/output
# recognises each by its content before --force may replace it: docs/errors.md)
MODEL_CONFIG_FILE = "config.json"  # a built-in model as a safetensors folder (docs/models.md)
TOKENIZER_FILE = (
    "tokenizer.json"  # a model folder's Hugging Face tokenizer; travels into the export (docs/generation.md)
)
MODEL_WEIGHTS_FILE = "model.safetensors"
MODEL_INDEX_FILE = "model.safetensors.index.json"
MODEL_TYPE = "mod_export"  # config.json's model_type
VALIDATION_REPORT_FORMAT = "mod_export.validation/1"  # `mod-export validate --report FILE`
METRICS_FORMAT = "mod_export.metrics/1"  # `mod-export example --metrics-json FILE`
BENCH_FORMAT = "mod_export.bench/1"  # results.json / decode.json of `mod-export bench --out DIR`
BENCH_FILES = (
    "results.json",
    "results.md",
    "speedup_vs_seq.png",
    "latency_percentiles.png",
    "decode.json",
    "decode.md",
    "decode.png",
)
CALIBRATION_CACHE_FORMAT = "mod_export.calibration/2"  # --calib-cache; 2: entropy/percentile bin counts applied
PLUGIN_PROJECT = "mod_export_plugins"  # the CMake project of plugins/ (a build folder of ours names it)

PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("onnx", "trt", "triton")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")

# ---------------------------------------------------------------- export and engine defaults
MIN_OPSET = 18  # torch's ONNX function library emits opset 18 (down-conversion to 17 breaks Split)
MAX_OPSET = 25  # 26+ emit Gelu-26, which ONNX Runtime 1.32 has no kernel for
DEFAULT_OPSET = 18
DEFAULT_BATCH_RANGE = "1:1:8"  # TensorRT optimisation profile MIN:OPT:MAX
DEFAULT_SEQ_RANGE = "1:256:4096"
DEFAULT_WORKSPACE_MB = 1024  # Orin shares memory with the CPU: keep this modest there
DEFAULT_MAX_CONTEXT = 4096  # generation: the longest prompt + new tokens a Session accepts (per export)
CUDA_ARCHS = "80;86;87;89;90"  # A100, RTX 30xx/A10, Orin, L4/L40, H100/H200
# Datasheet peak DRAM bandwidth (bytes/s) of the two targets the kernel rooflines are stated for (never a
# measurement: benchmarks/kernels.py measures the copy bandwidth of the GPU it runs on).
PEAK_BANDWIDTH = {"Jetson AGX Orin 64GB (LPDDR5)": 204.8e9, "H100 SXM5 (HBM3)": 3.35e12}

# ---------------------------------------------------------------- serving (--target triton)
DEFAULT_TRITON_INSTANCES = 1  # scoring model instances (one Python-backend process each)
DEFAULT_TRITON_QUEUE_DELAY_US = 500  # dynamic batcher: the longest a request waits for others
RUNTIME_DISTRIBUTION = "mod-export-runtime"  # the torch-free deployment distribution (deploy/runtime/)
TRITON_REPOSITORY = "model_repository"
TRITON_ONNX_MODEL = "mod_export_onnx"  # ONNX Runtime backend
TRITON_TRT_MODEL = "mod_export_trt"  # TensorRT backend
TRITON_SCORE_MODEL = "mod_export_score"  # Python backend, mod_export.serving.scoring
TRITON_GENERATE_MODEL = "mod_export_generate"  # Python backend, decoupled, mod_export.serving.generation
TOKEN_ID = "token_id"  # the generation model's output: one token per streamed response
PROMPT_TEXT = "prompt"  # the generation model's optional input: the prompt as text [1] (instead of input_ids)
TEXT_PIECE = "text"  # the generation model's second output: the text the token completes [1] (may be empty)
DEFAULT_TRITON_SLOTS = 16  # generation: requests generating at once (cache rows of the in-flight batch)
DEFAULT_TRITON_CONTEXT = 512  # generation: prompt + new tokens per request (cache entries per row)
TRITON_STEP_DELAY = "debug_step_delay_ms"  # generation config parameter: a wait after each decode step (tests only)


# The smallest capacity a model may have: 1/1024 selects one token of every window up to 1024 tokens. Below it,
# routing means nothing, and the export (which traces a built-in model at a length where k >= 2, since torch.export
# specialises k == 1 into a guard) would trace at more than 1024 tokens.
MIN_CAPACITY = (1, 1024)


def capacity_k(T, num: int, den: int):
    """k = min(T, max(1, ceil(T*num/den))), with integers only (a float capacity would specialise k at export).

    Works for ints and for symbolic sizes (torch.export): for T >= 1 and 0 < num <= den the clamp never
    binds, so the ceil-div alone is exact; plain ints keep the clamp (T = 0 gives 0 rows to select)."""
    k = (T * num + den - 1) // den
    if isinstance(T, int):
        return min(T, max(1, k)) if T > 0 else 0
    return k


@dataclass(frozen=True)
class Tolerance:
    """What a candidate of one precision may differ from the float32 PyTorch reference (docs/parity.md).

    logits_atol: max |logits - reference logits| with the reference forced to the candidate's selections.
    score_tolerance: relative near-tie band. A routing difference in a row is a near-tie flip when every swapped
        token's reference score is within score_tolerance x max(1, max |score| of the row) of the reference's
        k-th score. Set from the router-score deviation measured for each precision (candidate vs the forced
        reference, relative to the row's largest score), times two (both scores of a swap move) and a margin."""

    logits_atol: float
    score_tolerance: float


TOLERANCES = {
    "fp32": Tolerance(logits_atol=1e-4, score_tolerance=1e-5),
    "fp16": Tolerance(logits_atol=0.25, score_tolerance=1e-2),
    "int8": Tolerance(logits_atol=8.0, score_tolerance=0.25),
}
DEFAULT_ATOL = TOLERANCES["fp32"].logits_atol


def tolerance_for(precision: str, atol: float | None = None) -> Tolerance:
    """The one place a tolerance is chosen: the precision's default, with the user's --atol for float32 logits."""
    base = TOLERANCES[precision]
    return base if atol is None or precision != "fp32" else Tolerance(atol, base.score_tolerance)


# Reduced precision, judged on held-out text against float32 (bits per byte, margin-aware routing).
QUALITY_LIMITS = {"fp16": 0.005, "int8": 0.03}  # largest relative bits-per-byte increase accepted
DEFAULT_MIN_ROUTING_AGREEMENT = 0.95  # margin-aware, per routed layer
DEFAULT_ROUTING_GUARD = 0.99  # int8: a MatMul that alone drops margin-aware agreement below this stays float
DEFAULT_CALIBRATION_WINDOWS = 64
DEFAULT_EVAL_WINDOWS = 128
WINDOW_BYTES = 256
