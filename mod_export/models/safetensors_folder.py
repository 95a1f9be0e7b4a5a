"""Built-in models as Hugging Face-style folders: config.json + model.safetensors (or shards with
model.safetensors.index.json). No pickle anywhere: safe to load from anyone (docs/models.md).

config.json holds the MoDConfig fields plus {"model_type": "mod_export", "format": "mod_export/1"}; tensors
are stored under their state_dict names, float32, with the tied lm_head.weight left out (it is embed.weight).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from mod_export.contract import CHECKPOINT_FORMAT
from mod_export.errors import CheckpointError, ConfigError
from mod_export.models.checkpoint import model_from_payload
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
MODEL_TYPE = "mod_export"
TIED_KEY = "lm_head.weight"


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def _stored_state(model: MoDTransformer) -> dict[str, torch.Tensor]:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop(TIED_KEY)  # safetensors stores no shared tensors; it is embed.weight
    return state


def save_folder(model: MoDTransformer, folder: str | os.PathLike, max_shard_bytes: int | None = None) -> Path:
    """Write config.json + model.safetensors (sharded above max_shard_bytes) into a new folder, atomically."""
    from safetensors.torch import save_file  # noqa: PLC0415 - optional at import time

    folder = Path(folder)
    state = _stored_state(model)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(state):
        nbytes = state[name].numel() * state[name].element_size()
        if max_shard_bytes is not None and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = state[name]
        size += nbytes
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        config = {"model_type": MODEL_TYPE, "format": CHECKPOINT_FORMAT, **model.config.to_dict()}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        metadata = {"format": "pt"}
        if len(shards) == 1:
            save_file(shards[0], str(tmp / WEIGHTS_FILE), metadata=metadata)
        else:
            weight_map = {}
            for i, shard in enumerate(shards, 1):
                name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(tmp / name), metadata=metadata)
                weight_map.update(dict.fromkeys(shard, name))
            index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())}}
            index["weight_map"] = dict(sorted(weight_map.items()))
            (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
        if folder.exists():
            raise CheckpointError(f"{folder} already exists")
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _read_config(folder: Path) -> MoDConfig:
    try:
        raw = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{folder / CONFIG_FILE} must hold a JSON object")
    model_type = raw.pop("model_type", None)
    raw.pop("format", None)
    if model_type != MODEL_TYPE:
        raise CheckpointError(
            f"{folder / CONFIG_FILE}: model_type {model_type!r} is not a mod-export architecture "
            f"(expected {MODEL_TYPE!r} with arch 'gpt' or 'llama'); export other models from Python through "
            "mod_export.export() or a .pt2 archive"
        )
    try:
        return MoDConfig.from_dict(raw)
    except ConfigError as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: {exc}") from None


def _weight_files(folder: Path) -> list[Path]:
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{index} is not a safetensors index (weight_map): {exc}") from None
        return [folder / n for n in names]
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    raise CheckpointError(f"{folder} has {CONFIG_FILE} but neither {WEIGHTS_FILE} nor {INDEX_FILE}")


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors files; one CheckpointError line for a damaged file."""
    from safetensors import SafetensorError  # noqa: PLC0415 - optional at import time
    from safetensors.torch import load_file  # noqa: PLC0415

    tensors: dict[str, torch.Tensor] = {}
    for path in _weight_files(folder):
        if not path.is_file():
            raise CheckpointError(f"{path} is listed in {INDEX_FILE} but missing")
        try:
            shard = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{path} is not a readable safetensors file (truncated or damaged?): {first}"
            ) from None
        duplicate = set(shard) & set(tensors)
        if duplicate:
            raise CheckpointError(f"{path}: tensor {sorted(duplicate)[0]!r} also appears in another shard")
        tensors.update(shard)
    return tensors


def load_folder(folder: str | os.PathLike) -> MoDTransformer:
    """An eval-mode MoDTransformer from a folder written by save_folder (or by hand in the same layout)."""
    folder = Path(folder)
    config = _read_config(folder)
    tensors = read_tensors(folder)
    if config.tie_embeddings and TIED_KEY not in tensors and "embed.weight" in tensors:
        tensors[TIED_KEY] = tensors["embed.weight"]
    for name, tensor in tensors.items():
        if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise CheckpointError(f"{folder}: tensor {name!r} has dtype {tensor.dtype}, expected a floating type")
    return model_from_payload({"config": config.to_dict(), "state_dict": tensors}, source=str(folder))
