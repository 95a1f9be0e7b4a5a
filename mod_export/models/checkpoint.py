"""Safe checkpoints (docs/design.md (artifacts)): {"format": "mod_export/1", "config", "state_dict", "metrics"}, and
"tokenizer" (a tokenizer.json's text) when the model came from a folder that had one (`mod-export convert`).

Loading never executes pickled code: torch.load(weights_only=True) unless the caller passes unsafe=True.
Every problem is reported as one CheckpointError with a one-line message.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mod_export.contract import CHECKPOINT_FORMAT
from mod_export.errors import CheckpointError, ConfigError
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer
from mod_export.output import Target, kinds

FORMAT_TAG = CHECKPOINT_FORMAT


def tensors_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order: what save_checkpoint records."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def checkpoint_payload(
    model: MoDTransformer, metrics: dict[str, Any] | None = None, tokenizer: str | None = None
) -> dict[str, Any]:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT_TAG,
        "config": model.config.to_dict(),
        "state_dict": state,
        "content_sha256": tensors_sha256(state),
        "metrics": metrics or {},
    }
    if tokenizer is not None:
        payload["tokenizer"] = tokenizer
    return payload


def save_checkpoint(
    model: MoDTransformer,
    path: str | os.PathLike | Target,
    metrics: dict[str, Any] | None = None,
    force: bool = True,
    tokenizer: str | None = None,
) -> Path:
    """Write atomically through mod_export.output (a temporary sibling, fsync, rename). An existing file at `path`
    is replaced only when it is a mod_export/1 checkpoint (never with force=False). `path` may be a Target the
    caller already holds (the CLI locks it before training)."""
    payload = checkpoint_payload(model, metrics, tokenizer)  # tokenizer: a tokenizer.json's text
    if isinstance(path, Target):
        path.write_with(lambda tmp: torch.save(payload, tmp))
        return path.given
    with Target(path, kinds.CHECKPOINT, force=force) as target:
        target.write_with(lambda tmp: torch.save(payload, tmp))
    return Path(path)


def read_checkpoint(path: str | os.PathLike, unsafe: bool = False) -> dict[str, Any]:
    """Read and structurally validate a checkpoint file; returns the payload dict."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (not a torch.save zip archive; truncated or another file type)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not unsafe)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unpickling failed"
        raise CheckpointError(
            f"{path} contains objects that weights_only loading refuses (it would run pickled code): {first[:160]}; "
            "pass --unsafe-load only if you trust this file"
        ) from None
    except Exception as exc:  # torch raises many types for corrupt archives
        raise CheckpointError(
            f"{path} could not be read as a checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"{path}: expected a dict with 'format', 'config', 'state_dict', got {type(payload).__name__}"
        )
    tag = payload.get("format")
    if tag != FORMAT_TAG:
        raise CheckpointError(f"{path}: format tag is {tag!r}, expected {FORMAT_TAG!r}")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path}: missing top-level key {key!r}")
    if not isinstance(payload["state_dict"], dict):
        raise CheckpointError(f"{path}: 'state_dict' must be a dict of tensors")
    if not isinstance(payload.get("tokenizer", ""), str):
        raise CheckpointError(f"{path}: 'tokenizer' must be the text of a tokenizer.json")
    return payload


def model_from_payload(payload: dict[str, Any], source: str = "checkpoint") -> MoDTransformer:
    """Build the model from a config and check every state_dict key and shape before loading."""
    try:
        config = MoDConfig.from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    model = MoDTransformer(config)
    expected = model.state_dict()
    given = payload["state_dict"]
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: state_dict is missing {len(missing)} key(s): {', '.join(missing[:5])}")
    if unexpected:
        raise CheckpointError(
            f"{source}: state_dict has {len(unexpected)} unexpected key(s): {', '.join(unexpected[:5])}"
        )
    for name, ref in expected.items():
        value = given[name]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: state_dict[{name!r}] is {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: state_dict[{name!r}] has shape {tuple(value.shape)}, config implies {tuple(ref.shape)}"
            )
        if not value.is_floating_point():
            raise CheckpointError(f"{source}: state_dict[{name!r}] has dtype {value.dtype}, expected a floating type")
        if not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{source}: state_dict[{name!r}] has {bad} NaN or Inf value(s): the weights are broken"
            )
    recorded = payload.get("content_sha256")
    if recorded is not None and recorded != tensors_sha256(given):
        raise CheckpointError(
            f"{source}: tensor contents do not match the checkpoint's content hash (the file was "
            "damaged or edited after it was written)"
        )
    model.load_state_dict({k: v.float() for k, v in given.items()})
    return model.eval()


def load_checkpoint(path: str | os.PathLike, unsafe: bool = False) -> MoDTransformer:
    """Load a mod_export/1 checkpoint into an eval-mode MoDTransformer (forward(input_ids, attention_mask))."""
    return load_checkpoint_and_tokenizer(path, unsafe)[0]


def load_checkpoint_and_tokenizer(path: str | os.PathLike, unsafe: bool = False) -> tuple[MoDTransformer, str | None]:
    """The model, and the tokenizer.json text the checkpoint carries (None when it has none)."""
    payload = read_checkpoint(path, unsafe=unsafe)
    return model_from_payload(payload, source=str(path)), payload.get("tokenizer")
