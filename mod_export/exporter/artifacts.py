"""Output directories that never lose a user's file (docs/errors.md):

- everything is written into a temporary sibling folder, then renamed into place, so a failed or interrupted
  run leaves no half-written artifact and no temporary file;
- an existing directory is replaced only with --force, and only when this tool wrote it: it carries our
  manifest.json and holds nothing that the manifest does not list;
- the output can never contain, or be contained in, an input (the model being exported);
- one run at a time per output: a lock file beside it makes a second concurrent run refuse.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import onnx

from mod_export.contract import MANIFEST_FILE, MANIFEST_FORMAT
from mod_export.errors import OutputDirError
from mod_export.integrity import can_write_in, nearest_existing

EXTERNAL_DATA_THRESHOLD = 1_800_000_000  # protobuf cannot serialise a message over 2 GiB


def resolve_output(path: str | os.PathLike) -> Path:
    """The real location an output path names: absolute, symlinks followed, `.` and `..` resolved."""
    return Path(os.path.realpath(Path(path).expanduser()))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _bytecode_of_listed(path: Path, directory: Path, listed: set[str]) -> bool:
    """`X/__pycache__/NAME.cpython-311.pyc` of a listed `X/NAME.py`: Python's cache of a module we wrote (Triton's
    Python backend writes one beside the scoring model's model.py when it serves it)."""
    if path.parent.name != "__pycache__" or path.suffix != ".pyc":
        return False
    source = path.parent.parent / (path.name.split(".", 1)[0] + ".py")
    return source.relative_to(directory).as_posix() in listed


def why_not_ours(directory: Path) -> str | None:
    """None when `directory` is an earlier export of this tool (a mod-export manifest.json listing every file in
    it); otherwise the reason, naming the first foreign file."""
    manifest = directory / MANIFEST_FILE
    entries = sorted(p for p in directory.rglob("*"))
    first = next((p.relative_to(directory).as_posix() for p in entries if p.name != MANIFEST_FILE), None)
    try:
        data = json.loads(manifest.read_text())
        listed = set(data["files"]) if data.get("format") == MANIFEST_FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        listed = None
    if listed is None:
        return f"it has no mod-export manifest.json (first file: {first})"
    for path in entries:
        rel = path.relative_to(directory).as_posix()
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            return f"it holds {rel}, which is not a plain file"
        if (
            path.is_file()
            and rel != MANIFEST_FILE
            and rel not in listed
            and not _bytecode_of_listed(path, directory, listed)
        ):
            return f"it holds {rel}, which its manifest does not list"
    return None


def check_output_dir(final: Path, force: bool, inputs: Iterable[Path] = ()) -> None:
    """Fail early, before any work, when `final` cannot be used."""
    final = resolve_output(final)
    for source in inputs:
        source = resolve_output(source)
        if _within(source, final):
            raise OutputDirError(f"output directory {final} contains the input {source}: choose another --out")
        if _within(final, source):
            raise OutputDirError(f"output directory {final} is inside the input {source}: choose another --out")
    if final.exists() and not final.is_dir():
        raise OutputDirError(f"output path {final} exists and is not a directory")
    if final.is_dir() and any(final.iterdir()):
        if not force:
            raise OutputDirError(f"output directory {final} is not empty (pass --force to replace an earlier export)")
        reason = why_not_ours(final)
        if reason:
            raise OutputDirError(
                f"refusing to replace {final}: {reason}; --force replaces only an earlier mod-export export, never other files"
            )
    probe = nearest_existing(final.parent)
    if not probe.is_dir() or not can_write_in(probe):
        raise OutputDirError(f"output directory {final} is not writable (cannot create files in {probe})")


class OutputLock:
    """An exclusive lock on one output path, held for a whole run: `.NAME.lock` beside it (flock; removed on
    release, and a stale file left by a killed run is simply taken over)."""

    def __init__(self, final: Path):
        self.final = resolve_output(final)
        self.path = self.final.parent / f".{self.final.name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputDirError(f"cannot create output directory {self.final}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise OutputDirError(
                    f"another mod-export run is writing {self.final} (lock {self.path}); wait for it or choose another --out"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None


class ArtifactDir:
    """with ArtifactDir(out, force, inputs) as art: art.path('model.onnx') ...; committed on a clean exit.

    The caller holds an OutputLock on `out` for the whole run."""

    def __init__(self, final: str | os.PathLike, force: bool = False, inputs: Iterable[Path] = ()):
        self.final = resolve_output(final)
        self.force = force
        self.inputs = list(inputs)
        self.tmp: Path | None = None

    def __enter__(self) -> ArtifactDir:
        check_output_dir(self.final, self.force, self.inputs)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-", dir=self.final.parent))
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
            onnx.save_model(
                model,
                str(path),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=f"{name}.data",
                size_threshold=1024,
            )
        else:
            onnx.save_model(model, str(path))
        return path

    def _commit(self) -> None:
        """Swap the temporary folder into place; on any failure the previous directory is put back."""
        assert self.tmp is not None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder the usual permissions
        check_output_dir(self.final, self.force, self.inputs)  # nothing foreign appeared while we worked
        old = None
        try:
            if self.final.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.old-", dir=self.final.parent))
                os.replace(self.final, old / "previous")
            os.replace(self.tmp, self.final)
        except OSError as exc:
            if old is not None and (old / "previous").exists() and not self.final.exists():
                os.replace(old / "previous", self.final)  # put the previous export back
            raise OutputDirError(f"cannot move artifacts into {self.final}: {exc.strerror or exc}") from None
        finally:
            if old is not None and self.final.exists():  # never delete the previous export unless replaced or restored
                shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        try:
            if exc_type is None:
                self._commit()
        finally:
            if self.tmp.exists():
                shutil.rmtree(self.tmp, ignore_errors=True)
