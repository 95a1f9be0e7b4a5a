"""ONNX Runtime sessions for both ONNX forms; the plugin form gets the reference function bodies attached."""

from __future__ import annotations

import os

import onnx
import onnx.inliner
import onnxruntime as ort

from mod_export.backends.onnxrt.mapped_weights import share_weights
from mod_export.contract import DOMAIN
from mod_export.errors import ExportError
from mod_export.graph.reference_functions import attach_reference_functions
from mod_export.graph.weights import load_graph, session_config

_STATE = ort.capi.onnxruntime_pybind11_state
_LOAD_ERRORS = (_STATE.Fail, _STATE.InvalidArgument, _STATE.InvalidGraph, _STATE.InvalidProtobuf, _STATE.NotImplemented)


def has_custom_ops(model: onnx.ModelProto) -> bool:
    return any(n.domain == DOMAIN for n in model.graph.node)


def load_onnx(source: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """A graph without its weights (they stay in their data file; graph/weights.py)."""
    if isinstance(source, onnx.ModelProto):
        return source
    return load_graph(source)


def available_providers(prefer_gpu: bool = True) -> list[str]:
    have = ort.get_available_providers()
    order = ["CUDAExecutionProvider", "CPUExecutionProvider"] if prefer_gpu else ["CPUExecutionProvider"]
    return [p for p in order if p in have] or ["CPUExecutionProvider"]


def create_session(
    source: str | os.PathLike | onnx.ModelProto,
    providers: list[str] | None = None,
    threads: int | None = None,
    profile_prefix: str | None = None,
    stop_spinning_after_run: bool = False,
    shared_weights: bool = False,
):
    """An InferenceSession for either form. Custom MoD ops run through their attached reference bodies. The
    graph is serialised without its weights; ONNX Runtime reads them from their data file's folder.

    stop_spinning_after_run=True: intra-op threads still spin between the ops of a run, but stop the
    moment Run() returns (`session.force_spinning_stop`). Set it when several sessions (or PyTorch) take
    turns on the same cores: otherwise one session's idle spinning slows the next one down (a 512x512x2048
    MatMul took 15-16 ms instead of 8 alternating between two sessions on 2 cores).

    shared_weights=True: the session reads its weights from one memory map of their data file, shared with every
    other such session of this process (backends/onnxrt/mapped_weights.py); pre-packing is off."""
    model = load_onnx(source)
    weights = session_config(model)  # read before inlining, which may drop metadata
    options = ort.SessionOptions()
    shared = share_weights(options, model) if shared_weights else {}
    if has_custom_ops(model):
        # Attach the reference bodies and inline them here, so ONNX Runtime optimises exactly the graph it
        # would see for the portable form (its own late function inlining left ~5-20% on the table).
        model = onnx.inliner.inline_local_functions(attach_reference_functions(model))
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if stop_spinning_after_run:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    for key, value in weights.items():  # the session reads the weights from their file, the graph comes as bytes
        options.add_session_config_entry(key, value)
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=providers or available_providers())
    except (*_LOAD_ERRORS, UnicodeDecodeError) as exc:  # a damaged graph's message can hold bytes that are not UTF-8
        what = source if not isinstance(source, onnx.ModelProto) else f"graph {model.graph.name!r}"
        text = "the error message is not text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        first = (text.strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"ONNX Runtime cannot load {what}: {first}") from None
    session.mapped_weights = shared  # the OrtValues over the map must live as long as the session
    return session
