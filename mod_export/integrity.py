"""Content hashes: sha256 of files (manifest.json records one per artifact) and of checkpoint tensors, and the
checks that refuse a file whose content differs from what was recorded. Standard library only."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mod_export.contract import MANIFEST_FILE, MANIFEST_FORMAT
from mod_export.errors import IntegrityError

SKIP_HINT = "pass --skip-integrity to use it anyway"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def can_write_in(directory: Path) -> bool:
    """Whether a file can really be created in `directory` (os.access says yes to root even on /proc)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def nearest_existing(path: Path) -> Path:
    probe = Path(path).absolute()
    while not probe.exists():
        probe = probe.parent
    return probe


def read_manifest(directory: Path) -> dict | None:
    """The directory's manifest.json, or None where there is none; IntegrityError when it is unreadable."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path} is not readable JSON ({type(exc).__name__}); {SKIP_HINT}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), dict):
        raise IntegrityError(f"{path} is not a mod-export manifest ({MANIFEST_FORMAT}); {SKIP_HINT}")
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
        if path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
            raise IntegrityError(
                f"{path} does not match the sha256 in {MANIFEST_FILE} (damaged, truncated or edited "
                f"since the export); {SKIP_HINT}"
            )
    return manifest
