"""ONNX Runtime sessions that share one copy of the weights: every external initializer is handed to the session
as an OrtValue over one private (copy-on-write) memory map of its data file (`SessionOptions.add_initializer`), so all the
sessions of a process that use a data file read the same pages, and those pages are the file's, not copies.

ONNX Runtime would otherwise read each session's weights into memory of its own, and its CPU MatMul kernels
would pre-pack them into yet another buffer per session; sessions built here turn pre-packing off
(`session.disable_prepacking`), which costs about 7% on a 256-token prefill and nothing at one decode row
(docs/weights.md has the measurements). The export job's validation uses them: two forms, prefill and decode,
checked side by side, with the weights once in memory.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from mod_export.graph.weights import external_refs, mapped_file

DISABLE_PREPACKING = "session.disable_prepacking"
_SHAREABLE = {  # ONNX element type -> numpy dtype that ONNX Runtime takes without a copy
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.BOOL: np.bool_,
}


def shared_initializers(proto: onnx.ModelProto) -> dict[str, ort.OrtValue]:
    """{initializer name: OrtValue over the mapped bytes} for each external tensor of a dtype numpy has (others,
    such as bfloat16, are left to ONNX Runtime's own loading). The values hold the map open."""
    values: dict[str, ort.OrtValue] = {}
    for tensor, path, offset, length in external_refs(proto):
        dtype = _SHAREABLE.get(tensor.data_type)
        if dtype is None or tensor.name in values:
            continue
        shape = tuple(tensor.dims)
        if int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize != length:
            continue  # not this tensor's plain bytes: leave it to ONNX Runtime, which checks
        array = np.ndarray(shape, dtype=dtype, buffer=mapped_file(path), offset=offset)  # a view, no copy
        values[tensor.name] = ort.OrtValue.ortvalue_from_numpy(array)
    return values


def share_weights(options: ort.SessionOptions, proto: onnx.ModelProto) -> dict[str, ort.OrtValue]:
    """Point `options` at the shared, mapped weights of `proto` and turn pre-packing off. Returns the values;
    the caller keeps them as long as the session lives."""
    values = shared_initializers(proto)
    if values:
        options.add_session_config_entry(DISABLE_PREPACKING, "1")
        for name, value in values.items():
            options.add_initializer(name, value)
    return values
