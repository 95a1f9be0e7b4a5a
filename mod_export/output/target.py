"""What may be written where: check_target() before any work, Target for a whole run (check, lock, clean up
what a killed run left, then write atomically), BuildFolder for a build tree we reuse."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mod_export.contract import PLUGIN_PROJECT
from mod_export.errors import OutputDirError
from mod_export.output.files import put_bytes, replace_atomically
from mod_export.output.kinds import Kind
from mod_export.output.lock import OutputLock
from mod_export.output.paths import can_write_in, nearest_existing, resolve_output, within
from mod_export.output.staged import StagedDir


def _label(kind: Kind, final: Path) -> str:
    return f"output directory {final}" if kind.folder else f"{final}"


def _check_inputs(final: Path, kind: Kind, inputs: Iterable[str | os.PathLike], option: str) -> None:
    for given in inputs:
        source = resolve_output(given)
        label = _label(kind, final)
        if kind.folder and within(source, final):
            raise OutputDirError(f"{label} contains the input {source}: choose another {option}")
        if source == final:
            raise OutputDirError(f"{option} {final} is the input itself: choose another {option}")
        if within(final, source):
            raise OutputDirError(f"{label} is inside the input {source}: choose another {option}")


def check_target(
    final: str | os.PathLike,
    kind: Kind,
    force: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    option: str = "--out",
) -> Path:
    """Fail early, before any work and without writing anything, when `final` cannot be written: it overlaps an
    input, is of another type, exists without `force`, is not ours to replace, or its folder is not writable."""
    final = resolve_output(final)
    _check_inputs(final, kind, inputs, option)
    if kind.folder and final.exists() and not final.is_dir():
        raise OutputDirError(f"output path {final} exists and is not a directory")
    if not kind.folder and final.is_dir():
        raise OutputDirError(f"{option} {final} is a directory; give a file name such as {kind.example}")
    occupied = final.is_dir() and any(final.iterdir()) if kind.folder else final.exists()
    if occupied:
        if not force:
            what = "already exists and is not empty" if kind.folder else "already exists"
            raise OutputDirError(f"{_label(kind, final)} {what} (pass --force to replace {kind.what})")
        reason = kind.why_not_ours(final)
        if reason:
            raise OutputDirError(
                f"refusing to replace {final}: {reason}; --force replaces only {kind.what}, never other files"
            )
    probe = nearest_existing(final.parent)
    if not probe.is_dir() or not can_write_in(probe):
        if kind.folder:
            raise OutputDirError(f"output directory {final} is not writable (cannot create files in {probe})")
        raise OutputDirError(f"cannot write {kind.noun} {final}: no write permission on {probe}")
    return final


class Target:
    """One output of one run: `with Target(path, kind, force, inputs) as out:` checks it, locks it and cleans up
    what a killed run left; then `out.write_with(fill)` / `put_json(data)` (a file kind) or
    `with out.staged() as stage:` (a folder kind) writes it atomically. `parents=False`: the folder must exist."""

    def __init__(
        self,
        final: str | os.PathLike,
        kind: Kind,
        force: bool = False,
        inputs: Iterable[str | os.PathLike] = (),
        option: str = "--out",
        parents: bool = True,
    ):
        self.given = Path(final)
        self.kind, self.force, self.inputs, self.option = kind, force, list(inputs), option
        self.parents = parents
        self.final = resolve_output(final)
        self._lock: OutputLock | None = None

    def check(self) -> Path:
        if not self.parents and not self.final.parent.is_dir():
            raise OutputDirError(f"{self.option} {self.given}: not a file in an existing directory")
        return check_target(self.final, self.kind, self.force, self.inputs, self.option)

    def __enter__(self) -> Target:
        self.check()
        self._lock = OutputLock(self.final)
        self._lock.__enter__()
        try:
            self.check()  # again: a cleanup may have put a moved-aside output back
        except BaseException as exc:
            self._lock.__exit__(type(exc), exc, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._lock is not None:
            self._lock.__exit__(exc_type, exc, tb)
            self._lock = None

    def write_with(self, fill: Callable[[Path], Any]) -> Path:
        """fill(tmp) writes the file into a temporary sibling; checked again, then renamed over the target."""
        assert self._lock is not None and not self.kind.folder, "write inside `with Target(...)`, a file kind"
        try:
            return replace_atomically(self.final, fill, before_rename=self.check)
        except OSError as exc:
            raise OutputDirError(f"cannot write {self.kind.noun} {self.final}: {exc.strerror or exc}") from None

    def put_bytes(self, data: bytes) -> Path:
        return self.write_with(put_bytes(data))

    def put_text(self, text: str) -> Path:
        return self.put_bytes(text.encode())

    def put_json(self, data: Any) -> Path:
        return self.put_text(json.dumps(data, indent=2, default=str) + "\n")

    def staged(self) -> StagedDir:
        assert self._lock is not None and self.kind.folder, "stage inside `with Target(...)`, a folder kind"
        return StagedDir(self.final, before_commit=self.check)


# ---------------------------------------------------------------- build folders (reused, never replaced)


def cmake_cache_entry(cache: Path, name: str) -> str | None:
    """A variable of a CMakeCache.txt (NAME:TYPE=value), or None."""
    try:
        for line in cache.read_text(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.split(":", 1)[0] == name:
                return value
    except OSError:
        return None
    return None


def check_build_folder(build: str | os.PathLike, source: Path, option: str = "--build-dir") -> Path:
    """A CMake build folder for `source` may be new, empty, or one of ours (its CMakeCache.txt names our project
    and this source); anything else is refused, and it may not overlap the source tree."""
    build, source = resolve_output(build), resolve_output(source)
    if within(build, source) or within(source, build):
        raise OutputDirError(f"{option} {build} overlaps the source tree {source}: choose a folder outside it")
    if build.exists() and not build.is_dir():
        raise OutputDirError(f"{option} {build} exists and is not a directory")
    if build.is_dir() and any(build.iterdir()):
        cache = build / "CMakeCache.txt"
        project = cmake_cache_entry(cache, "CMAKE_PROJECT_NAME")
        home = cmake_cache_entry(cache, "CMAKE_HOME_DIRECTORY")
        if project != PLUGIN_PROJECT:
            first = sorted(p.name for p in build.iterdir())[0]
            raise OutputDirError(
                f"{option} {build} is not a mod-export plugin build folder (no CMakeCache.txt of {PLUGIN_PROJECT}; "
                f"first file: {first}): choose an empty or new folder"
            )
        if home is None or resolve_output(home) != source:
            raise OutputDirError(
                f"{option} {build} was configured for another source tree ({home}): delete it or choose another folder"
            )
    probe = nearest_existing(build)
    if not probe.is_dir() or not can_write_in(probe):
        raise OutputDirError(f"{option} {build} is not writable (cannot create files in {probe})")
    return build


class BuildFolder:
    """`with BuildFolder(path, source) as build:` checked as above and locked for the whole build."""

    def __init__(self, build: str | os.PathLike, source: Path, option: str = "--build-dir"):
        self.build, self.source, self.option = Path(build), Path(source), option
        self._lock: OutputLock | None = None

    def __enter__(self) -> Path:
        final = check_build_folder(self.build, self.source, self.option)
        self._lock = OutputLock(final)
        self._lock.__enter__()
        return final

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._lock is not None:
            self._lock.__exit__(exc_type, exc, tb)
            self._lock = None
