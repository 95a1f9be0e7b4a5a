"""The one list of backends: name, where its code lives, what it runs, which export targets produce its artifacts,
and whether it can run here. Runtime (`Session`), bench, validation and the CLI choices read it; nothing else
spells a backend's name.

Each backend is a package under mod_export/backends/ whose `__init__` offers, imported only when the backend is
used (so the torch-free runtime never imports the torch backend, and TensorRT is imported only where asked for):

    unavailable() -> str | None           why it cannot run on this machine (None: it can)
    runner(...) -> polygraphy BaseRunner  the runner contract (docs/architecture.md); what it is built from is the
                                          backend's own kind of artifact: a module, an ONNX proto, an engine file
    open_model(path, **options)           runtime backends only: the model object a Session drives (run, routing,
                                          generation stepper, close; mod_export.backends.model.RuntimeModel)

Adding a backend: its package with those functions, and one BackendSpec line below (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mod_export.contract import ENGINE_FILE, PORTABLE_FILE
from mod_export.errors import UsageError

AUTO = "auto"  # Session: the first runtime backend (in AUTO_ORDER) whose artifact is there and that can run here
AUTO_ORDER = ("tensorrt", "onnxruntime")


@dataclass(frozen=True)
class BackendSpec:
    name: str  # the one name of the backend, everywhere (CLI choices, reports, runner names)
    module: str  # its package
    runs: str  # what its runner takes: "module" (PyTorch), "onnx" (a proto of either form), "engine" (a file)
    targets: tuple[str, ...]  # export targets whose artifacts it runs (empty: the reference, not deployed)
    runtime: bool  # a deployed Session can use it (mod-export-runtime: never the torch backend)
    artifact: str | None = None  # the file of an export folder it loads (runtime backends)
    suffixes: tuple[str, ...] = ()  # a single file it loads directly

    def api(self) -> ModuleType:
        """The backend's package (imported on first use)."""
        return importlib.import_module(self.module)

    def unavailable(self) -> str | None:
        """Why this backend cannot run here (a missing library or device), or None."""
        return self.api().unavailable()


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec("torch", "mod_export.backends.torch", "module", (), runtime=False),
        BackendSpec(
            "onnxruntime",
            "mod_export.backends.onnxrt",
            "onnx",
            ("onnx", "trt", "triton"),
            True,
            PORTABLE_FILE,
            (".onnx",),
        ),
        BackendSpec(
            "tensorrt", "mod_export.backends.trt", "engine", ("trt", "triton"), True, ENGINE_FILE, (".engine", ".plan")
        ),
    )
}


def get(name: str) -> BackendSpec:
    spec = BACKENDS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    return spec


def runtime_names() -> tuple[str, ...]:
    """The backends a Session may be asked for, "auto" first (the CLI's and Session's choices)."""
    return (AUTO, *(name for name, spec in BACKENDS.items() if spec.runtime))


def names_for_target(target: str) -> tuple[str, ...]:
    return tuple(name for name, spec in BACKENDS.items() if target in spec.targets)


def loads(spec: BackendSpec, path: Path) -> bool:
    """Whether `path` (an export folder or a single file) holds what this runtime backend loads."""
    return (
        path.suffix in spec.suffixes
        if path.is_file()
        else spec.artifact is not None and (path / spec.artifact).is_file()
    )


def choose(path: Path, name: str = AUTO) -> BackendSpec:
    """The runtime backend for `path`: the one named, or for "auto" the first in AUTO_ORDER that has its artifact
    there and can run here (ONNX Runtime otherwise)."""
    if name != AUTO:
        spec = get(name)
        if not spec.runtime:
            raise UsageError(f"backend must be one of {runtime_names()}, got {name!r}")
        return spec
    for candidate in AUTO_ORDER:
        spec = BACKENDS[candidate]
        if loads(spec, path) and spec.unavailable() is None:
            return spec
    return BACKENDS["onnxruntime"]
