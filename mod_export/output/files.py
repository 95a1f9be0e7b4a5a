"""The primitive writes every module uses instead of open(..., "w"), Path.write_text, shutil, os.replace, ...

Inside a folder the output module handed out (a StagedDir before its commit, a scratch folder) a write goes
straight to its path: the whole folder is the temporary. Anywhere else it is atomic: a temporary sibling
`.NAME.tmp-XXXXXXXX`, fsync, rename over NAME (the old file stays until the new one is in place).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from mod_export.output.paths import absolute, within

_HANDED_OUT: list[Path] = []  # live staging and scratch folders (absolute)
_GUARD = threading.Lock()


@contextlib.contextmanager
def handed_out(folder: Path) -> Iterator[Path]:
    """Mark `folder` as the output module's own temporary while the block runs."""
    folder = absolute(folder)
    with _GUARD:
        _HANDED_OUT.append(folder)
    try:
        yield folder
    finally:
        with _GUARD:
            _HANDED_OUT.remove(folder)


def is_handed_out(path: str | os.PathLike) -> bool:
    path = absolute(path)
    with _GUARD:
        return any(within(path, root) for root in _HANDED_OUT)


@contextlib.contextmanager
def scratch_dir(prefix: str = "mod_export_") -> Iterator[Path]:
    """A private temporary folder in the system's temp directory (never a user's path), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, handed_out(Path(tmp)) as folder:
        yield folder


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable (best effort: some file systems refuse a directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def usual_mode(path: Path, directory: bool = False) -> None:
    """mkstemp / mkdtemp create 0600 / 0700: give the result the permissions a plain write would have."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def temporary_sibling(final: Path, directory: bool = False) -> Path:
    """`.NAME.tmp-XXXXXXXX` beside `final` (a file keeps NAME's suffix, which some writers need: torch.export.save
    wants .pt2, savefig reads the format from it); what cleanup_stale removes after a killed run."""
    if directory:
        return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    fd, made = tempfile.mkstemp(prefix=f".{final.name}.tmp-", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    return Path(made)


def replace_atomically(
    final: Path, fill: Callable[[Path], Any], before_rename: Callable[[], None] | None = None
) -> Path:
    """fill(tmp) writes the content into a temporary sibling; fsync; before_rename() (a last check); rename."""
    final = absolute(final)
    tmp = temporary_sibling(final)
    try:
        fill(tmp)
        fsync_file(tmp)
        usual_mode(tmp)
        if before_rename is not None:
            before_rename()
        os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


def write_with(path: str | os.PathLike, fill: Callable[[Path], Any]) -> Path:
    """fill(p) writes a file at p (torch.save, onnx.save_model, safetensors' save_file, savefig, ...): at `path`
    itself inside a handed-out folder, else into a temporary sibling renamed over `path`."""
    path = Path(path)
    if is_handed_out(path):
        fill(path)
        return path
    return replace_atomically(path, fill)


def put_bytes(data: bytes) -> Callable[[Path], None]:
    def fill(p: Path) -> None:
        with open(p, "wb") as fh:
            fh.write(data)

    return fill


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return write_with(path, put_bytes(bytes(data)))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_with(path, put_bytes(text.encode()))


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    return write_with(path, lambda p: shutil.copyfile(source, p))


def make_dirs(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a folder the output module made (a temporary, a replaced copy); errors ignored."""
    shutil.rmtree(path, ignore_errors=True)


def open_stream(path: str | os.PathLike) -> IO[bytes]:
    """A file another process writes as it runs (a server's log): opened for writing, truncated; the caller
    closes it. Not atomic by nature, so only for logs."""
    return open(path, "wb")  # noqa: SIM115 - handed to a subprocess, closed by the caller


# ---------------------------------------------------------------- the weight store's files (graph/weights.py)


def append_stream(path: str | os.PathLike) -> IO[bytes]:
    """A data file this tool grows as it works (an export's weight store, inside a folder it owns): opened for
    appending; the caller closes it. Its folder is removed or staged as a whole, so no atomicity is needed."""
    return open(path, "ab")  # noqa: SIM115 - closed by the caller


def lasting_scratch_dir(prefix: str = "mod_export_") -> Path:
    """A private temporary folder that outlives the call (removed when the process exits)."""
    folder = absolute(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    with _GUARD:
        _HANDED_OUT.append(folder)  # ours for the process's life: writes inside go straight to their paths
    return folder


def scratch_file(folder: str | os.PathLike, prefix: str, suffix: str = "") -> Path:
    """A new empty file with a unique name in `folder` (a folder this tool owns), for the caller to fill and
    remove (remove_file)."""
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(handle)
    return Path(name)


def remove_file(path: str | os.PathLike) -> None:
    Path(path).unlink(missing_ok=True)


def move_file(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename `source` to `path` (same file system), replacing it."""
    os.replace(source, path)
    return Path(path)


def publish_dir(staging: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Rename a finished folder `staging` to `path` unless a folder is already there (a cache entry that another
    process published first); True when it was published. Same file system, one rename."""
    try:
        os.rename(staging, path)
    except OSError:
        if Path(path).is_dir():
            return False
        raise
    fsync_dir(Path(path).parent)
    return True
