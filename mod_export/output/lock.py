"""One run at a time per output, and what a killed run left behind.

OutputLock takes an exclusive flock on `.NAME.lock` beside the output for a whole run. Once it holds the lock no
other run is writing NAME, so whatever a run left beside it is stale and is cleaned up, with one INFO line:

- `.NAME.tmp-*`: a half-written temporary (file or folder), removed;
- `.NAME.old-*/previous`: the previous output moved aside by a swap that was cut short: put back when NAME is
  missing, else removed;
- `.NAME.new`: the same for the staging folder of older versions of `mod-export convert`;
- `.NAME.lock` itself, when it was there before us (its lock was not held): taken over and removed at the end.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
from pathlib import Path

from mod_export.errors import OutputDirError
from mod_export.output.files import fsync_dir, remove_tree
from mod_export.output.paths import resolve_output

logger = logging.getLogger(__name__)


def _stale(final: Path) -> tuple[list[Path], list[Path]]:
    """(temporaries, moved-aside copies) beside `final` that the killed run made."""
    name = re.escape(final.name)
    tmp = re.compile(rf"\.{name}\.tmp-[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?")
    aside = re.compile(rf"\.{name}\.(old-[A-Za-z0-9_]+|new)")
    temporaries, moved = [], []
    try:
        entries = sorted(final.parent.iterdir())
    except OSError:
        return [], []
    for entry in entries:
        if tmp.fullmatch(entry.name):
            temporaries.append(entry)
        elif aside.fullmatch(entry.name):
            moved.append(entry)
    return temporaries, moved


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        remove_tree(path)
    else:
        path.unlink(missing_ok=True)


def cleanup_stale(final: Path, stale_lock: bool = False) -> list[str]:
    """Remove (or put back) what a killed run left beside `final`; the caller holds its lock. Returns the notes."""
    temporaries, moved = _stale(final)
    notes = []
    for entry in moved:
        previous = entry / "previous" if entry.name.startswith(f".{final.name}.old-") else entry
        if not final.exists() and not final.is_symlink() and previous.is_dir():
            os.replace(previous, final)
            notes.append(f"moved {previous.relative_to(final.parent)} back into place as {final.name}")
        if entry.exists():
            _remove(entry)
            notes.append(f"removed {entry.name}")
    for entry in temporaries:
        _remove(entry)
        notes.append(f"removed {entry.name}")
    if stale_lock:
        notes.append(f"took over the stale lock .{final.name}.lock")
    if notes:
        fsync_dir(final.parent)
        logger.info("cleaned up after an interrupted run beside %s: %s", final, ", ".join(notes))
    return notes


class OutputLock:
    """An exclusive lock on one output path, held for a whole run: `.NAME.lock` beside it (flock; removed on
    release). Parent folders it had to create are removed again when the run fails."""

    def __init__(self, final: str | os.PathLike):
        self.final = resolve_output(final)
        self.path = self.final.parent / f".{self.final.name}.lock"
        self._fd: int | None = None
        self._made: list[Path] = []

    def _make_parents(self) -> None:
        missing = []
        probe = self.final.parent
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for folder in reversed(missing):
            folder.mkdir()
            self._made.append(folder)

    def _open_and_lock(self) -> tuple[int, bool]:
        """(fd holding the lock, whether the lock file was already there)."""
        while True:
            existed = self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise OutputDirError(
                        f"another mod-export run is writing {self.final} (lock {self.path}); wait for it or choose "
                        "another output"
                    ) from None
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and our lock: try again
                return fd, existed
            os.close(fd)

    def __enter__(self) -> OutputLock:
        try:
            self._make_parents()
            fd, existed = self._open_and_lock()
        except OSError as exc:
            self._remove_made()
            raise OutputDirError(f"cannot create output {self.final}: {exc.strerror or exc}") from None
        except BaseException:
            self._remove_made()
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        try:
            cleanup_stale(self.final, stale_lock=existed)
        except BaseException:
            self.__exit__(OSError, None, None)
            raise
        return self

    def _remove_made(self) -> None:
        for folder in reversed(self._made):
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        if exc_type is not None:
            self._remove_made()
