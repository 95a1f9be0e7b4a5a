"""The one call of torch.onnx.export (dynamo): quiet, typed errors, weights straight into a store, and the trace
cache (exporter/trace_cache.py) in front of it."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from mod_export.errors import ExportError
from mod_export.exporter.trace_cache import traced_graph
from mod_export.graph.weights import WeightStore


def trace_onnx(
    module: nn.Module,
    args: tuple,
    dynamic,
    names: tuple[list[str], list[str]],
    opset: int,
    store: WeightStore,
    translation_table: dict | None = None,
    what: str = "torch.onnx.export",
    cache: Path | None = None,
) -> onnx.ModelProto:
    """torch.onnx.export(module, args) with dynamic axes `dynamic`, (input names, output names) `names`, and the
    optimiser on; returns the weightless graph, its weights in `store`. A failure is one ExportError line:
    "{what} failed: ..."."""
    input_names, output_names = names

    def trace():
        return torch_onnx_export(module, args, dynamic, opset, translation_table, what)

    settings = {
        "dynamic": repr(dynamic),
        "names": [list(input_names), list(output_names)],
        "opset": opset,
        "custom_ops": sorted(map(repr, translation_table or {})),
        "optimize": True,
    }
    proto = traced_graph(module, args, settings, store, trace, (list(input_names), list(output_names)), folder=cache)
    proto.producer_name = "mod-export"
    return proto


def torch_onnx_export(module, args, dynamic, opset: int, translation_table, what: str):
    """The trace alone: no optimiser and no input/output names (trace_cache.traced_graph does both after)."""
    log = io.StringIO()
    torch_onnx_logger = logging.getLogger("torch.onnx")
    previous_level = torch_onnx_logger.level
    torch_onnx_logger.setLevel(logging.ERROR)  # "torchvision is not installed" notes are noise here
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                module,
                args,
                dynamo=True,
                dynamic_shapes=dynamic,
                opset_version=opset,
                custom_translation_table=translation_table,
                optimize=False,
                verbose=False,
            )
    except Exception as exc:
        summary = next((ln.strip() for ln in str(exc).splitlines() if "rror" in ln), str(exc)[:200])
        raise ExportError(f"{what} failed: {summary}") from exc
    finally:
        torch_onnx_logger.setLevel(previous_level)
