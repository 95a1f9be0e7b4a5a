"""What mod-export writes, recognised by content: an existing output is replaced (with --force) only when it is
the same kind of thing and this tool wrote it. Each kind's `why_not_ours(path)` is None for one of ours, else the
reason, naming the first foreign file. Nothing here unpickles or imports anything from the file it reads."""

from __future__ import annotations

import json
import pickletools
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mod_export.contract import (
    BENCH_FILES,
    BENCH_FORMAT,
    CALIBRATION_CACHE_FORMAT,
    CHECKPOINT_FORMAT,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    METRICS_FORMAT,
    MODEL_CONFIG_FILE,
    MODEL_INDEX_FILE,
    MODEL_TYPE,
    MODEL_WEIGHTS_FILE,
    VALIDATION_REPORT_FORMAT,
)

MAX_SNIFF_BYTES = 64 << 20  # a marker file larger than this is not one of ours (never read it all)
SHARD_NAME = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


@dataclass(frozen=True)
class Kind:
    """One kind of output: `what` completes "--force replaces only ..."; `example` is a name of that kind."""

    noun: str
    what: str
    folder: bool
    why_not_ours: Callable[[Path], str | None]
    example: str = ""


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def _first(folder: Path, skip: str = "") -> str | None:
    return next((p.relative_to(folder).as_posix() for p in _entries(folder) if p.name != skip), None)


def _plain(path: Path, folder: Path) -> str | None:
    if path.is_symlink() or not (path.is_dir() or path.is_file()):
        return f"it holds {path.relative_to(folder).as_posix()}, which is not a plain file"
    return None


def _json_object(path: Path) -> dict | None:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_SNIFF_BYTES:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------- folders


def _bytecode_of_listed(path: Path, directory: Path, listed: set[str]) -> bool:
    """`X/__pycache__/NAME.cpython-311.pyc` of a listed `X/NAME.py`: Python's cache of a module we wrote (Triton's
    Python backend writes one beside the scoring model's model.py when it serves it)."""
    if path.parent.name != "__pycache__" or path.suffix != ".pyc":
        return False
    source = path.parent.parent / (path.name.split(".", 1)[0] + ".py")
    return source.relative_to(directory).as_posix() in listed


def export_folder(directory: Path) -> str | None:
    """An earlier export: a mod-export manifest.json listing every file in the folder."""
    data = _json_object(directory / MANIFEST_FILE)
    files = data.get("files") if data and data.get("format") == MANIFEST_FORMAT else None
    if not isinstance(files, dict):
        return f"it has no mod-export manifest.json (first file: {_first(directory, MANIFEST_FILE)})"
    listed = set(files)
    for path in _entries(directory):
        rel = path.relative_to(directory).as_posix()
        reason = _plain(path, directory)
        if reason:
            return reason
        if path.is_file() and rel != MANIFEST_FILE and rel not in listed:
            if not _bytecode_of_listed(path, directory, listed):
                return f"it holds {rel}, which its manifest does not list"
    return None


def model_folder(folder: Path) -> str | None:
    """A built-in model as safetensors: config.json with our model_type, the weights, nothing else."""
    config = _json_object(folder / MODEL_CONFIG_FILE)
    if not config or config.get("model_type") != MODEL_TYPE:
        return (
            f"it is not a model folder mod-export wrote (no {MODEL_CONFIG_FILE} with model_type {MODEL_TYPE!r}; "
            f"first file: {_first(folder)})"
        )
    known = {MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE, MODEL_INDEX_FILE}
    for path in _entries(folder):
        reason = _plain(path, folder)
        if reason:
            return reason
        rel = path.relative_to(folder).as_posix()
        if rel not in known and not SHARD_NAME.fullmatch(rel):
            return f"it holds {rel}, which is not part of a model folder mod-export wrote"
    return None


def bench_folder(folder: Path) -> str | None:
    """Results of `mod-export bench --out`: only our result files, one of them carrying our format tag."""
    tagged = [
        n for n in ("results.json", "decode.json") if (_json_object(folder / n) or {}).get("format") == BENCH_FORMAT
    ]
    if not tagged:
        return f"it holds no mod-export bench results (first file: {_first(folder)})"
    for path in _entries(folder):
        reason = _plain(path, folder)
        if reason:
            return reason
        rel = path.relative_to(folder).as_posix()
        if rel not in BENCH_FILES:
            return f"it holds {rel}, which mod-export bench does not write"
    return None


# ---------------------------------------------------------------- files


def _pickle_strings(data: bytes, limit: int = 64) -> list[str]:
    """The first string constants of a pickle stream, read as opcodes (nothing is unpickled or run)."""
    found = []
    for op, arg, _ in pickletools.genops(data):
        if isinstance(arg, str) and "UNICODE" in op.name:
            found.append(arg)
            if len(found) >= limit:
                break
    return found


def checkpoint(path: Path) -> str | None:
    """A mod_export/1 checkpoint: a torch.save archive whose top-level dict starts with our format tag."""
    not_ours = f"it is not a mod-export checkpoint (no {CHECKPOINT_FORMAT!r} format tag)"
    try:
        if not path.is_file() or path.is_symlink() or not zipfile.is_zipfile(path):
            return not_ours
        with zipfile.ZipFile(path) as archive:
            pickles = [i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == "data.pkl"]
            if len(pickles) != 1 or pickles[0].file_size > MAX_SNIFF_BYTES:
                return not_ours
            strings = _pickle_strings(archive.read(pickles[0]))
    except Exception:  # noqa: BLE001 - any damage to someone's file means: not ours to replace
        return not_ours
    pairs = set(zip(strings, strings[1:]))
    return None if ("format", CHECKPOINT_FORMAT) in pairs else not_ours


def pt2_archive(path: Path) -> str | None:
    """A torch.export archive (`mod_export.save_archive`)."""
    try:
        if path.is_file() and not path.is_symlink() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                tags = [i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == "archive_format"]
                if len(tags) == 1 and tags[0].file_size < 64 and archive.read(tags[0]).strip() == b"pt2":
                    return None
    except Exception:  # noqa: BLE001 - damaged: not ours
        pass
    return "it is not a torch.export archive"


def json_tagged(noun: str, accept: Callable[[object], bool]) -> Callable[[Path], str | None]:
    """A JSON file of ours: an object whose "format" key `accept`s."""

    def why_not_ours(path: Path) -> str | None:
        data = _json_object(path)
        return None if data is not None and accept(data.get("format")) else f"it is not a {noun} mod-export wrote"

    return why_not_ours


# ---------------------------------------------------------------- the kinds

EXPORT_FOLDER = Kind("export", "an earlier mod-export export", True, export_folder)
MODEL_FOLDER = Kind("model folder", "a model folder mod-export wrote", True, model_folder)
BENCH_FOLDER = Kind("bench results", "earlier mod-export bench results", True, bench_folder)
CHECKPOINT = Kind("checkpoint", "an earlier mod-export checkpoint", False, checkpoint, "model.pt")
PT2_ARCHIVE = Kind("archive", "an earlier torch.export archive", False, pt2_archive, "model.pt2")


def _json_file(name: str, description: str, format_tag: str, filename: str) -> Kind:
    """A JSON file mod-export wrote, known by its format tag."""
    return Kind(name, description, False, json_tagged(name, lambda f: f == format_tag), filename)


VALIDATION_REPORT = _json_file(
    "validation report", "an earlier report of mod-export validate", VALIDATION_REPORT_FORMAT, "report.json"
)
METRICS_JSON = _json_file(
    "metrics file", "an earlier metrics file of mod-export example", METRICS_FORMAT, "metrics.json"
)
_CACHE_FAMILY = CALIBRATION_CACHE_FORMAT.rsplit("/", 1)[0] + "/"
CALIBRATION_CACHE = Kind(
    "calibration cache",
    "a mod-export calibration cache",
    False,
    json_tagged("calibration cache", lambda f: isinstance(f, str) and f.startswith(_CACHE_FAMILY)),
    "calib.json",
)
