"""Content hashes: sha256 of files (manifest.json records one per artifact) and of checkpoint tensors, and the
checks that refuse a file whose content differs from what was recorded, or a manifest that is not one of ours
(hand-edited with a wrong type, damaged). Standard library only."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from mod_export.contract import MANIFEST_FILE, MANIFEST_FORMAT
from mod_export.errors import IntegrityError

SKIP_HINT = "--skip-integrity / skip_integrity=True to use it anyway"
_GENERATION_NAMES = ("step",)  # or, written before the step graph, the portable pair below
_GENERATION_LEGACY_NAMES = ("prefill", "decode")
_GENERATION_OPTIONAL_NAMES = ("plugin_prefill", "plugin_decode", "prefill_engine", "decode_engine")
_GENERATION_INTS = ("layers", "heads", "head_dim")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _inside(name: object) -> bool:
    """A relative path inside the export folder (no absolute path, no `..`)."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts


def _files_problem(files: object) -> str | None:
    if not isinstance(files, dict):
        return f"'files' must be an object of file names, not {_kind(files)}"
    for name, entry in files.items():
        if not _inside(name):
            return f"'files' names {name!r}, which is not a path inside the folder"
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not _is_count(entry.get("bytes")):
            return f'\'files\' entry {name!r} must be {{"sha256": ..., "bytes": ...}}'
    return None


def _generation_problem(generation: object) -> str | None:
    if generation is None:
        return None
    if not isinstance(generation, dict):
        return f"'generation' must be an object or null, not {_kind(generation)}"
    required = _GENERATION_NAMES if "step" in generation or "prefill" not in generation else _GENERATION_LEGACY_NAMES
    for key in required + _GENERATION_OPTIONAL_NAMES:
        value = generation.get(key)
        if (key in required or value is not None) and not _inside(value):
            return f"'generation.{key}' must be a file name, not {_kind(value)}"
    for key in _GENERATION_INTS:
        if not _is_count(generation.get(key)) or not generation.get(key):
            return f"'generation.{key}' must be a positive integer, not {generation.get(key)!r}"
    routed = generation.get("routed_layers")
    if not isinstance(routed, list) or not all(_is_count(v) for v in routed):
        return f"'generation.routed_layers' must be a list of layer numbers, not {_kind(routed)}"
    context = generation.get("max_context")
    if context is not None and not (_is_count(context) and context):
        return f"'generation.max_context' must be a positive integer or null, not {context!r}"
    return None


def manifest_problem(data: object) -> str | None:
    """None when `data` is a well-formed mod-export manifest; else what is wrong with it, in a few words."""
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return f"is not a mod-export manifest ({MANIFEST_FORMAT})"
    problem = _files_problem(data.get("files"))
    if problem:
        return problem
    idx = data.get("routing_idx_tensors")
    if idx is not None and not (isinstance(idx, list) and all(isinstance(v, str) for v in idx)):
        return f"'routing_idx_tensors' must be a list of tensor names, not {_kind(idx)}"
    for key in ("precision", "target"):
        if data.get(key) is not None and not isinstance(data.get(key), str):
            return f"'{key}' must be a string, not {_kind(data.get(key))}"
    if data.get("engine") is not None and not isinstance(data.get("engine"), dict):
        return f"'engine' must be an object or null, not {_kind(data.get('engine'))}"
    tokenizer = data.get("tokenizer")
    if tokenizer is not None and not (_inside(tokenizer) and tokenizer in data["files"]):
        return f"'tokenizer' must name one of the listed files, not {tokenizer!r}"
    return _generation_problem(data.get("generation"))


def read_manifest(directory: Path) -> dict | None:
    """The directory's manifest.json, or None where there is none; IntegrityError when it is unreadable or not
    a well-formed mod-export manifest (a field of the wrong type is named)."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path} is not readable JSON ({type(exc).__name__}); {SKIP_HINT}") from None
    problem = manifest_problem(data)
    if problem:
        where = f"{path} " if problem.startswith("is ") else f"{path}: "
        raise IntegrityError(f"{where}{problem}; {SKIP_HINT}")
    return data


def verify_files(directory: Path, names: Iterable[str]) -> dict | None:
    """Check each named file of an export directory against the sha256 its manifest.json records. Returns the
    manifest (None where the directory has none: nothing to check against)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        return None
    for name in names:
        entry = manifest["files"].get(name)
        path = directory / name
        if entry is None:
            raise IntegrityError(f"{path} is not listed in {directory / MANIFEST_FILE}; {SKIP_HINT}")
        if not path.is_file():
            raise IntegrityError(f"{path} is listed in the manifest but missing")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise IntegrityError(
                f"{path} does not match the sha256 in {MANIFEST_FILE} (damaged, truncated or edited "
                f"since the export); {SKIP_HINT}"
            )
    return manifest


def unlisted_files(directory: Path, manifest: dict) -> list[str]:
    """Files in the directory that its manifest does not list (so no hash vouches for them)."""
    directory = Path(directory)
    listed = set(manifest["files"]) | {MANIFEST_FILE}
    return sorted(
        rel
        for rel in (p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
        if rel not in listed and "__pycache__" not in rel.split("/")
    )


def check_files(path: Path, names: list[str], skip: bool) -> dict | None:
    """Check the files that will be loaded against the manifest of their directory; returns that manifest. An
    export directory must have one; a file outside any export directory has nothing to be checked against."""
    directory = path if path.is_dir() else path.parent
    if skip:
        try:
            return read_manifest(directory)
        except IntegrityError:
            return None
    manifest = read_manifest(directory)
    if manifest is None:
        if path.is_dir():
            raise IntegrityError(f"{directory} has no manifest.json, so its files cannot be checked ({SKIP_HINT})")
        return None
    if not path.is_dir():
        names = [n for n in names if n in manifest["files"]]
    return verify_files(directory, names)
