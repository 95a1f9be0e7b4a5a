"""manifest.json: tool and library versions, inputs/outputs (names, dtypes, shape ranges), sha256 of every file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from mod_export.contract import MANIFEST_FILE, MANIFEST_FORMAT
from mod_export.integrity import sha256_file
from mod_export.versions import library_versions


def describe_io(model: onnx.ModelProto, ranges: dict[str, tuple[int, int]]) -> dict[str, list[dict[str, Any]]]:
    """Names, dtypes and dims (symbolic names resolved to [min, max] ranges where known)."""

    def one(value: onnx.ValueInfoProto) -> dict[str, Any]:
        t = value.type.tensor_type
        dims = []
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            else:
                name = d.dim_param or "?"
                dims.append({"name": name, "range": list(ranges[name]) if name in ranges else None})
        return {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "dims": dims}

    return {"inputs": [one(v) for v in model.graph.input], "outputs": [one(v) for v in model.graph.output]}


def build_manifest(root: Path, files: list[Path], model: onnx.ModelProto, extra: dict[str, Any]) -> dict[str, Any]:
    ranges = {"batch": (1, 4096), "seq": (1, 1 << 20)}
    return {
        "format": MANIFEST_FORMAT,
        "versions": library_versions(),
        "io": describe_io(model, ranges),
        "files": {
            p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in files
            if p.relative_to(root).as_posix() != MANIFEST_FILE
        },
        **extra,
    }
