"""A Triton Inference Server model repository: the portable ONNX model on the ONNX Runtime backend, and,
where an engine was built, the engine on the TensorRT backend with its plugin library."""

from __future__ import annotations

import shutil
from pathlib import Path

from mod_export.contract import ATTENTION_MASK, INPUT_IDS, LOGITS, PORTABLE_FILE

ONNX_MODEL = "mod_export_onnx"
TRT_MODEL = "mod_export_trt"
REPOSITORY = "model_repository"


def _io_block(vocab: int) -> str:
    # max_batch_size > 0: Triton owns dim 0 (batch); dims below are per request (seq, and vocab for logits).
    return (
        "input [\n"
        f'  {{ name: "{INPUT_IDS}" data_type: TYPE_INT64 dims: [ -1 ] }},\n'
        f'  {{ name: "{ATTENTION_MASK}" data_type: TYPE_INT64 dims: [ -1 ] }}\n'
        "]\n"
        "output [\n"
        f'  {{ name: "{LOGITS}" data_type: TYPE_FP32 dims: [ -1, {vocab} ] }}\n'
        "]\n"
    )


def onnx_config(vocab: int, max_batch: int) -> str:
    return (
        f'name: "{ONNX_MODEL}"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch}\n'
        + _io_block(vocab)
        + "dynamic_batching { max_queue_delay_microseconds: 500 }\n"
    )


def trt_config(vocab: int, max_batch: int) -> str:
    return (
        f'name: "{TRT_MODEL}"\nplatform: "tensorrt_plan"\nmax_batch_size: {max_batch}\n'
        + _io_block(vocab)
        + "dynamic_batching { max_queue_delay_microseconds: 500 }\n"
        + "instance_group [ { kind: KIND_GPU, count: 1 } ]\n"
    )


def loading_notes(has_engine: bool) -> str:
    text = [
        "# Serving with Triton Inference Server\n",
        f"    tritonserver --model-repository=$PWD/{REPOSITORY}\n",
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
            "for IPluginRegistry::loadLibrary users). Build the engine with the TensorRT version of the Triton release you serve with.\n"
        )
    else:
        text.append(f"No TensorRT engine was built here, so there is no `{TRT_MODEL}` model.\n")
    return "\n".join(text)


def write_repository(
    root: Path, vocab: int, max_batch: int, portable_onnx: Path, engine: Path | None, plugin_library: Path | None
) -> Path:
    repo = root / REPOSITORY
    onnx_dir = repo / ONNX_MODEL
    (onnx_dir / "1").mkdir(parents=True)
    shutil.copyfile(portable_onnx, onnx_dir / "1" / PORTABLE_FILE)
    (onnx_dir / "config.pbtxt").write_text(onnx_config(vocab, max_batch))
    if engine is not None:
        trt_dir = repo / TRT_MODEL
        (trt_dir / "1").mkdir(parents=True)
        shutil.copyfile(engine, trt_dir / "1" / "model.plan")
        (trt_dir / "config.pbtxt").write_text(trt_config(vocab, max_batch))
        if plugin_library is not None:
            shutil.copyfile(plugin_library, trt_dir / plugin_library.name)
    (root / "TRITON.md").write_text(loading_notes(engine is not None))
    return repo
