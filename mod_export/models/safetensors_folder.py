"""Built-in models as Hugging Face-style folders: config.json + model.safetensors (or shards with
model.safetensors.index.json). No pickle anywhere: safe to load from anyone (docs/models.md).

config.json holds the MoDConfig fields plus {"model_type": "mod_export", "format": "mod_export/1"}; tensors
are stored under their state_dict names, float32, with the tied lm_head.weight left out (it is embed.weight).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import safetensors.torch  # called through the module, so a test can fault a write
import torch
from safetensors import SafetensorError

from mod_export.contract import (
    CHECKPOINT_FORMAT,
    MODEL_CONFIG_FILE,
    MODEL_INDEX_FILE,
    MODEL_TYPE,
    MODEL_WEIGHTS_FILE,
    TOKENIZER_FILE,
)
from mod_export.errors import CheckpointError, ConfigError
from mod_export.models.checkpoint import model_from_payload
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer
from mod_export.output import StagedDir, Target, kinds

logger = logging.getLogger(__name__)

CONFIG_FILE = MODEL_CONFIG_FILE
WEIGHTS_FILE = MODEL_WEIGHTS_FILE
INDEX_FILE = MODEL_INDEX_FILE
TIED_KEY = "lm_head.weight"


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def _stored_state(model: MoDTransformer) -> dict[str, torch.Tensor]:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop(TIED_KEY)  # safetensors stores no shared tensors; it is embed.weight
    return state


def _shards(state: dict[str, torch.Tensor], max_shard_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(state):
        nbytes = state[name].numel() * state[name].element_size()
        if max_shard_bytes is not None and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = state[name]
        size += nbytes
    return shards


def _write_folder(model: MoDTransformer, stage: StagedDir, max_shard_bytes: int | None, tokenizer: str | None) -> None:
    if tokenizer is not None:
        stage.put_text(TOKENIZER_FILE, tokenizer)
    state = _stored_state(model)
    shards = _shards(state, max_shard_bytes)
    config = {"model_type": MODEL_TYPE, "format": CHECKPOINT_FORMAT, **model.config.to_dict()}
    stage.put_text(CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    metadata = {"format": "pt"}
    if len(shards) == 1:
        stage.write_with(WEIGHTS_FILE, lambda p: safetensors.torch.save_file(shards[0], str(p), metadata=metadata))
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        stage.write_with(name, lambda p, shard=shard: safetensors.torch.save_file(shard, str(p), metadata=metadata))
        weight_map.update(dict.fromkeys(shard, name))
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())}}
    index["weight_map"] = dict(sorted(weight_map.items()))
    stage.put_text(INDEX_FILE, json.dumps(index, indent=2) + "\n")


def save_folder(
    model: MoDTransformer,
    folder: str | os.PathLike | Target,
    max_shard_bytes: int | None = None,
    force: bool = True,
    tokenizer: str | None = None,
) -> Path:
    """Write config.json + model.safetensors (sharded above max_shard_bytes) as one folder, atomically, through
    mod_export.output: an existing folder is replaced only when it is a model folder mod-export wrote (never with
    force=False). `folder` may be a Target the caller already holds."""
    if isinstance(folder, Target):
        with folder.staged() as stage:
            _write_folder(model, stage, max_shard_bytes, tokenizer)
        return folder.given
    with Target(folder, kinds.MODEL_FOLDER, force=force) as target, target.staged() as stage:
        _write_folder(model, stage, max_shard_bytes, tokenizer)
    return Path(folder)


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
    tensors: dict[str, torch.Tensor] = {}
    for path in _weight_files(folder):
        if not path.is_file():
            raise CheckpointError(f"{path} is listed in {INDEX_FILE} but missing")
        try:
            shard = safetensors.torch.load_file(str(path))
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
