"""Versions of mod-export, Python and the libraries it runs on, for manifests and benchmark records."""

from __future__ import annotations

import importlib.metadata
import platform

from mod_export.contract import VERSION

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxscript", "onnx-graphsurgeon", "polygraphy", "numpy", "tensorrt")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"mod-export": VERSION, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
