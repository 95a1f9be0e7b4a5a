"""Running onnx-graphsurgeon graph functions on ModelProtos: import, edit, export, copied back in place with
the model's metadata (producer, IR version, opset imports, local functions, properties) kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import onnx
import onnx_graphsurgeon as gs

R = TypeVar("R")


def edit_in_place(model: onnx.ModelProto, edit: Callable[[gs.Graph], R]) -> R:
    """edit(graph) on an onnx-graphsurgeon import of `model`; when it returns a truthy result (it changed
    something), the edited graph replaces model.graph in place."""
    graph = gs.import_onnx(model)
    result = edit(graph)
    if result:
        edited = gs.export_onnx(graph, do_type_check=False)
        model.graph.CopyFrom(edited.graph)
    return result


def read(model: onnx.ModelProto) -> gs.Graph:
    """An onnx-graphsurgeon view of `model` for queries (nothing is written back)."""
    return gs.import_onnx(model)
