"""`mod-export convert SRC DST`: a built-in model between a mod_export/1 checkpoint and a safetensors folder.

model.pt -> DST folder (config.json + model.safetensors, sharded with --max-shard-size); folder -> DST.pt. Tensors are
copied bit for bit; the content hash of the checkpoint is recomputed from them. Training metrics stay in the
checkpoint: the folder holds config and weights only."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mod_export.cli.types import byte_size
from mod_export.errors import CheckpointError
from mod_export.models.checkpoint import check_destination, load_checkpoint, save_checkpoint
from mod_export.models.safetensors_folder import CONFIG_FILE, MODEL_TYPE, is_model_folder, load_folder, save_folder


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = "Convert a built-in model: model.pt -> config.json + *.safetensors folder, or back."
    parser.add_argument("src", type=Path, help="model.pt (mod_export/1) or a folder with config.json + *.safetensors")
    parser.add_argument("dst", type=Path, help="a new folder (from model.pt) or a .pt file (from a folder)")
    parser.add_argument("--force", action="store_true", help="replace DST when it is a model mod-export wrote")
    parser.add_argument(
        "--max-shard-size",
        type=byte_size,
        help="split the weights into model-0000N-of-0000M.safetensors shards of at most this size (e.g. 2GB, 500KB)",
    )
    parser.add_argument(
        "--unsafe-load", action="store_true", help="allow pickled code in the checkpoint (only for files you trust)"
    )


def _check_folder_destination(dst: Path, force: bool) -> None:
    if not dst.exists():
        return
    if not force:
        raise CheckpointError(f"{dst} already exists (pass --force to replace a model folder mod-export wrote)")
    if not is_model_folder(dst) or MODEL_TYPE not in (dst / CONFIG_FILE).read_text(errors="replace"):
        raise CheckpointError(f"{dst} is not a model folder mod-export wrote; refusing to replace it even with --force")


def run(args: argparse.Namespace) -> int:
    src, dst = args.src, args.dst
    if src.resolve() == dst.resolve():
        raise CheckpointError("SRC and DST are the same path")
    if is_model_folder(src):
        check_destination(dst, args.force)
        model = load_folder(src)
        save_checkpoint(model, dst)
    elif src.is_dir():
        raise CheckpointError(f"{src} is a folder without {CONFIG_FILE} (expected config.json + *.safetensors)")
    else:
        _check_folder_destination(dst, args.force)
        model = load_checkpoint(src, unsafe=args.unsafe_load)
        shard = args.max_shard_size
        if dst.exists():  # checked above: a model folder of ours, replaced
            staged = save_folder(model, dst.with_name(f".{dst.name}.new"), shard)
            shutil.rmtree(dst)
            staged.rename(dst)
        else:
            save_folder(model, dst, shard)
    print(f"wrote {dst}")
    return 0
