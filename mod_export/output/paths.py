"""Where an output really is: absolute, symlinks followed; whether one path lies in another; whether a folder can
really be written. Standard library only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mod_export.errors import ModExportError, OutputDirError


def absolute(path: str | os.PathLike, error: type[ModExportError] = OutputDirError) -> Path:
    """`path` made absolute (not resolved). A relative path in a current directory that was deleted has no
    absolute form: one `error` line naming the directory the shell last knew ($PWD) instead of `.`."""
    try:
        return Path(os.path.abspath(Path(path).expanduser()))
    except FileNotFoundError:
        pwd = os.environ.get("PWD")
        where = f" ({pwd})" if pwd else ""
        raise error(
            f"the current directory{where} no longer exists (deleted while in use), so {os.fspath(path)!r} names "
            "nothing; cd to an existing directory or give an absolute path"
        ) from None


def resolve_output(path: str | os.PathLike) -> Path:
    """The real location an output path names: absolute, symlinks followed, `.` and `..` resolved."""
    return Path(os.path.realpath(absolute(path)))


def within(inner: Path, outer: Path) -> bool:
    """inner is outer or lies somewhere under it (both resolved)."""
    return inner == outer or outer in inner.parents


def nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists."""
    probe = absolute(path)
    while not probe.exists():
        probe = probe.parent
    return probe


def can_write_in(directory: Path) -> bool:
    """Whether a file can really be created in `directory` (os.access says yes to root even on /proc). The probe is
    an anonymous temporary file: nothing is left behind, whatever happens."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False
