"""A folder written in one piece: everything goes into a temporary sibling `.NAME.tmp-XXXXXXXX`, which replaces
NAME at the end (fsync first). An existing NAME is exchanged with it atomically (renameat2 RENAME_EXCHANGE), so
NAME is never missing; where the file system cannot exchange, NAME is moved aside to `.NAME.old-XXXXXXXX/previous`
first and put back if the second rename fails. A failure or an interrupt before the end leaves NAME as it was."""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mod_export.errors import OutputDirError
from mod_export.output import files
from mod_export.output.files import fsync_dir, fsync_file, handed_out, remove_tree, temporary_sibling, usual_mode

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system or file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (38, 22, 95):  # ENOSYS, EINVAL (file system without exchange), EOPNOTSUPP
        return False
    raise OSError(code, os.strerror(code), str(b))


def settle_tree(root: Path) -> None:
    """Every file and folder of a staging tree: the permissions a plain write gives (writers such as mkdtemp or
    safetensors make 0600/0700), then on disk (fsync) before the tree is put in place."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            usual_mode(path)
            fsync_file(path)
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        usual_mode(path, directory=True)
        fsync_dir(path)
    usual_mode(root, directory=True)
    fsync_dir(root)


class StagedDir:
    """with StagedDir(final, before_commit) as stage: stage.put_json('x.json', ...) ...; committed on a clean
    exit. The caller holds an OutputLock on `final` (Target.staged() does all of this)."""

    def __init__(self, final: Path, before_commit: Callable[[], None] | None = None):
        self.final = Path(final)
        self.before_commit = before_commit
        self.tmp: Path | None = None
        self._handout = None

    def __enter__(self) -> StagedDir:
        try:
            self.tmp = temporary_sibling(self.final, directory=True)
        except OSError as exc:
            raise OutputDirError(f"cannot create output directory {self.final}: {exc.strerror or exc}") from None
        self._handout = handed_out(self.tmp)
        self._handout.__enter__()
        return self

    # ------------------------------------------------------------ writing inside the staging folder

    def path(self, name: str) -> Path:
        assert self.tmp is not None
        return self.tmp / name

    def files(self) -> list[Path]:
        """Every file written so far, recursively."""
        assert self.tmp is not None
        return sorted(p for p in self.tmp.rglob("*") if p.is_file())

    def write_with(self, name: str, fill: Callable[[Path], Any]) -> Path:
        path = self.path(name)
        files.make_dirs(path.parent)
        return files.write_with(path, fill)

    def put_bytes(self, name: str, data: bytes) -> Path:
        files.make_dirs(self.path(name).parent)
        return files.write_bytes(self.path(name), data)

    def put_text(self, name: str, text: str) -> Path:
        files.make_dirs(self.path(name).parent)
        return files.write_text(self.path(name), text)

    def put_json(self, name: str, data: Any) -> Path:
        files.make_dirs(self.path(name).parent)
        return files.write_json(self.path(name), data)

    def put_copy(self, source: Path, name: str) -> Path:
        files.make_dirs(self.path(name).parent)
        return files.copy_file(source, self.path(name))

    # ------------------------------------------------------------ the commit

    def _commit(self) -> None:
        """Put the staging folder in place of `final`; on any failure `final` is as it was."""
        assert self.tmp is not None
        try:
            settle_tree(self.tmp)
            if self.before_commit is not None:
                self.before_commit()  # e.g. nothing foreign appeared in `final` while we worked
            if not (self.final.exists() and exchange(self.tmp, self.final)):
                self._move_aside_and_rename()
            # after an exchange self.tmp holds the previous content: removed in __exit__
            fsync_dir(self.final.parent)
        except OSError as exc:
            raise OutputDirError(f"cannot move the output into {self.final}: {exc.strerror or exc}") from None

    def _move_aside_and_rename(self) -> None:
        assert self.tmp is not None
        if not self.final.exists():
            os.replace(self.tmp, self.final)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.old-", dir=self.final.parent))
        try:
            os.replace(self.final, old / "previous")
            try:
                os.replace(self.tmp, self.final)
            except OSError:
                os.replace(old / "previous", self.final)  # put the previous output back
                raise
        finally:
            if self.final.exists():  # never delete the previous output unless replaced or restored
                remove_tree(old)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        try:
            if exc_type is None:
                self._commit()
        finally:
            self._handout.__exit__(None, None, None)
            if self.tmp.exists():
                remove_tree(self.tmp)
