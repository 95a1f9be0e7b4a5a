"""Atomic output folders (DESIGN.md section 5): everything is written into a temporary sibling folder,
then renamed into place, so a failed run leaves no half-written artifact."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import onnx

from mod_export.errors import OutputDirError

PORTABLE_FILE = "model.onnx"
PLUGIN_FILE = "model.plugin.onnx"
ENGINE_FILE = "model.engine"
EXTERNAL_DATA_THRESHOLD = 1_800_000_000  # protobuf cannot serialise a message over 2 GiB


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_output_dir(final: Path, force: bool) -> None:
    """Fail early, before any work, when DIR cannot be used."""
    if final.exists() and not final.is_dir():
        raise OutputDirError(f"output path {final} exists and is not a directory")
    if final.is_dir() and any(final.iterdir()) and not force:
        raise OutputDirError(f"output directory {final} is not empty (pass --force to replace it)")
    parent = final.absolute().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputDirError(f"output directory {final} is not writable (no write permission on {probe})")


class ArtifactDir:
    """with ArtifactDir(out, force) as art: art.path('model.onnx') ...; committed on a clean exit."""

    def __init__(self, final: str | os.PathLike, force: bool = False):
        self.final = Path(final)
        self.force = force
        self.tmp: Path | None = None

    def __enter__(self) -> "ArtifactDir":
        check_output_dir(self.final, self.force)
        parent = self.final.absolute().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-", dir=parent))
        except OSError as exc:
            raise OutputDirError(f"cannot create output directory {self.final}: {exc.strerror or exc}") from None
        return self

    def path(self, name: str) -> Path:
        assert self.tmp is not None
        return self.tmp / name

    def files(self) -> list[Path]:
        """Every file written so far, recursively."""
        assert self.tmp is not None
        return sorted(p for p in self.tmp.rglob("*") if p.is_file())

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path(name)
        path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        return path

    def save_onnx(self, model: onnx.ModelProto, name: str) -> Path:
        """Save; models too large for one protobuf use external data (NAME.data beside the file)."""
        path = self.path(name)
        size = sum(len(t.raw_data) for t in model.graph.initializer)
        if size > EXTERNAL_DATA_THRESHOLD:
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=f"{name}.data", size_threshold=1024)
        else:
            onnx.save_model(model, str(path))
        return path

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder the usual permissions
        old = None
        try:
            if self.final.exists():
                old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
                os.replace(self.final, old)
            os.replace(self.tmp, self.final)
        except OSError as exc:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if old is not None and not self.final.exists():
                os.replace(old, self.final)
            raise OutputDirError(f"cannot move artifacts into {self.final}: {exc.strerror or exc}") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
