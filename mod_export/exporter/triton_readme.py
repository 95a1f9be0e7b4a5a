"""TRITON.md, written next to model_repository/: how to serve each model of the repository."""

from __future__ import annotations

from mod_export.contract import (
    PROMPT_TEXT,
    RUNTIME_DISTRIBUTION,
    TEXT_PIECE,
    TOKEN_ID,
    TRITON_GENERATE_MODEL,
    TRITON_ONNX_MODEL,
    TRITON_REPOSITORY,
    TRITON_SCORE_MODEL,
    TRITON_TRT_MODEL,
    VERSION,
)

PYTRITON = "nvidia-pytriton==0.7.0"  # ships tritonserver 2.51 with the Python backend (x86-64 Linux)
NGC_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51, the release the bundled server is


ONNX_MODEL, TRT_MODEL, SCORE_MODEL, REPOSITORY = (
    TRITON_ONNX_MODEL,
    TRITON_TRT_MODEL,
    TRITON_SCORE_MODEL,
    TRITON_REPOSITORY,
)
RUNTIME = f'"{RUNTIME_DISTRIBUTION}=={VERSION}"'


def loading_notes(has_engine: bool, settings, has_generation: bool = False) -> str:
    """The repository's README.md: which model runs where, and how to serve each."""
    sections = _models_table(has_engine, has_generation) + _ngc_container(has_engine)
    sections += _score_model(settings) + _generate_model(settings)
    return "\n".join(sections)


def _models_table(has_engine: bool, has_generation: bool) -> list[str]:
    runtime = RUNTIME
    return [
        "# Serving with Triton Inference Server\n",
        "| model | backend | serve it with |\n| --- | --- | --- |",
        f"| `{ONNX_MODEL}` | ONNX Runtime | the NGC container (x86-64, any GPU or CPU), JetPack's Triton on Orin |",
        f"| `{TRT_MODEL}` | TensorRT | the NGC container or JetPack's Triton, whose TensorRT built the engine |"
        if has_engine
        else f"| `{TRT_MODEL}` | TensorRT | not written: no TensorRT engine was built here |",
        f"| `{SCORE_MODEL}` | Python | any of them with `pip install {runtime}` in Triton's Python, or the bundled "
        "server below |",
        f"| `{TRITON_GENERATE_MODEL}` | Python, decoupled | as `{SCORE_MODEL}` |"
        if has_generation
        else f"| `{TRITON_GENERATE_MODEL}` | Python, decoupled | not written: exported with --no-decode |",
        "",
    ]


def _ngc_container(has_engine: bool) -> list[str]:
    text = [
        "## ONNX Runtime and TensorRT models: the NGC container\n",
        f"    docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 -v $PWD/{REPOSITORY}:/models \\",
        f"        {NGC_IMAGE} tritonserver --model-repository=/models\n",
        f"`{ONNX_MODEL}` runs `model.onnx` (standard ops only) on the ONNX Runtime backend, CPU or GPU.\n",
    ]
    if has_engine:
        text.append(
            f"`{TRT_MODEL}` runs the TensorRT engine, which contains the MoD plugin layers. Triton must load the plugins "
            "before the model, with the statically registering build of the library "
            "(`cmake -S plugins -B build -DTENSORRT_INCLUDE_DIR=... -DMOD_BUILD_PRELOAD_LIBRARY=ON -DTENSORRT_LIB_DIR=...`):\n\n"
            "    LD_PRELOAD=/path/libmod_export_plugins_preload.so tritonserver --model-repository=...\n"
            "    # or: tritonserver --backend-config=tensorrt,plugins=/path/libmod_export_plugins_preload.so ...\n\n"
            f"`{TRT_MODEL}/libmod_export_plugins.so` is the library the engine was built with (getCreators entry point, "
            "for IPluginRegistry::loadLibrary users). Build the engine with the TensorRT version of the Triton release you "
            "serve with (24.10: TensorRT 10.5).\n"
        )
    else:
        text.append(f"No TensorRT engine was built here, so there is no `{TRT_MODEL}` model.\n")
    return text


def _score_model(settings) -> list[str]:
    runtime = RUNTIME
    return [
        "## Jetson Orin: JetPack's Triton\n",
        "JetPack 6 (TensorRT 10.3) runs Triton from NVIDIA's Jetson release (the `tritonserver<version>-igpu` tarball, "
        "or the `-py3-igpu` container) with the same repository; build the engine on the Orin itself (`mod-export "
        "MODEL --target triton` there), since an engine is tied to its GPU and TensorRT version:\n",
        f"    tritonserver --model-repository=$PWD/{REPOSITORY} --backend-directory=/opt/tritonserver/backends\n",
        f"## `{SCORE_MODEL}`: the Python backend\n",
        "Each dynamic batch is one runtime call (`mod_export.runtime.Session`, torch-free); the logits go back per "
        "request; a bad request (ids outside the vocabulary, more tokens than `max_seq_len`, a missing input) gets "
        "its own error and the rest of the batch is served. Ragged batching stays off on purpose: MoD selects "
        "k = ceil(T x capacity) tokens of the padded length T, so padding a request to a longer neighbour would "
        "change its routing; Triton's dynamic batcher therefore merges requests of equal length only.\n",
        f"Settings (config.pbtxt; `--triton-instances`, `--triton-queue-delay-us`, `--triton-threads` at export): "
        f"{settings.instances} instance(s), max queue delay {settings.queue_delay_us} us, ONNX Runtime threads "
        f"{settings.threads or 'default'} per instance, `max_seq_len` {settings.max_seq_len}, `form` portable "
        "(`plugin` needs `model.plugin.onnx` copied into `1/`).\n",
        "The model reads `1/model.onnx` relative to its own folder (checked against `1/manifest.json`), so the "
        "repository can be copied anywhere. Its Python environment needs the runtime and nothing of PyTorch:\n",
        f"    pip install {runtime}          # numpy, onnx, onnxruntime, polygraphy, onnx-graphsurgeon\n",
        f"(`{RUNTIME_DISTRIBUTION}` is built from mod-export's repository, `deploy/runtime/`: until it is on your "
        "package index, `pip install ./deploy/runtime` from a checkout, or the wheel `pip wheel --no-deps "
        "./deploy/runtime` makes.)\n",
        "On x86-64 Linux without Docker, the `nvidia-pytriton` wheel carries a complete tritonserver (2.51) with the "
        "Python backend; mod-export starts it directly (PyTriton's own wrapper is not used). Its Python backend "
        "needs numpy < 2:\n",
        f"    pip install --no-deps --target ./pytriton {PYTRITON}\n"
        f"    python3 -m venv serving && serving/bin/pip install {runtime} 'numpy<2'\n"
        f"    serving/bin/python -m mod_export.serving.bundled --repository {REPOSITORY} --pytriton ./pytriton\n",
        "It serves HTTP and gRPC on 127.0.0.1 (ports printed; `--http-port`, `--grpc-port` to choose). Only the "
        "Python-backend models load there: the wheel has no ONNX Runtime or TensorRT backend.\n",
    ]


def _generate_model(settings) -> list[str]:
    return [
        f"## `{TRITON_GENERATE_MODEL}`: streaming generation (Python backend, decoupled)\n",
        "One response per generated token (`" + TOKEN_ID + "` [1] int64, and `" + TEXT_PIECE + "` [1] string: the "
        "text that token completes, often empty mid-character; empty for a model without a text codec); the last "
        "carries Triton's final flag. Inputs: the prompt as `input_ids` [P] int64, or as `" + PROMPT_TEXT + "` [1] "
        "string (UTF-8 text, encoded by the model's tokenizer.json, or as bytes by a byte-level model), and optional "
        "`max_new_tokens` [1] int32 (default 64), "
        "`temperature` [1] fp32 (0: greedy), `top_k` [1] int32, `top_p` [1] fp32, `seed` [1] int64, `stop_tokens` "
        "[N] int64. Requests that arrive while others generate join the running batch between two decode steps "
        "(in-flight batching on the per-row MoD cache: each request owns a cache row with its own lengths; prompts "
        "of one length that arrive together share one prefill run); one that finishes frees its row at once, one "
        "that is cancelled or whose client disconnects within 20 ms. Use a streaming "
        "client (gRPC `stream_infer`, or HTTP `generate_stream`).\n",
        f"Settings (`--triton-slots`, `--triton-context` at export): {settings.slots} rows, {settings.context} "
        "cache entries (prompt + new tokens) per row. Metrics on Triton's /metrics: "
        "`mod_export_generate_busy_rows`, `_waiting`, `_steps`, `_row_steps`, `_routed_runs` (routed blocks that "
        "ran: a block runs when any busy row takes it), `_prefills`, `_joined`, `_cancelled`, `_finished`.\n",
    ]
