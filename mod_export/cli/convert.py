"""`mod-export convert SRC DST`: a built-in model between a mod_export/1 checkpoint and a safetensors folder.

model.pt -> DST folder (config.json + model.safetensors, sharded with --max-shard-size); folder -> DST.pt. Tensors are
copied bit for bit; the content hash of the checkpoint is recomputed from them. Training metrics stay in the
checkpoint: the folder holds config and weights only. A folder's tokenizer.json travels both ways: the checkpoint
carries its text under "tokenizer", and a folder written from such a checkpoint gets the file back."""

from __future__ import annotations

import argparse
from pathlib import Path

from mod_export.cli.types import byte_size
from mod_export.contract import TOKENIZER_FILE
from mod_export.errors import CheckpointError
from mod_export.generation.tokenizer import load_tokenizer
from mod_export.models.checkpoint import load_checkpoint_and_tokenizer, save_checkpoint
from mod_export.models.model import MoDTransformer
from mod_export.models.safetensors_folder import CONFIG_FILE, is_model_folder, load_folder, save_folder
from mod_export.output import Target, kinds, resolve_output


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


def run(args: argparse.Namespace) -> int:
    src, dst = args.src, args.dst
    if resolve_output(src) == resolve_output(dst):
        raise CheckpointError("SRC and DST are the same path")
    if is_model_folder(src):
        kind, load = kinds.CHECKPOINT, lambda: _from_folder(src)
    elif src.is_dir():
        raise CheckpointError(f"{src} is a folder without {CONFIG_FILE} (expected config.json + *.safetensors)")
    else:
        kind, load = kinds.MODEL_FOLDER, lambda: load_checkpoint_and_tokenizer(src, args.unsafe_load)
    # DST is checked and locked before the model is read, and replaced only when it is the same kind of output
    # and mod-export wrote it (--force); it never overlaps SRC. The write is atomic (mod_export.output).
    with Target(dst, kind, force=args.force, inputs=[src], option="DST") as target:
        model, tokenizer = load()
        if kind is kinds.CHECKPOINT:
            save_checkpoint(model, target, tokenizer=tokenizer)
        else:
            save_folder(model, target, args.max_shard_size, tokenizer=tokenizer)
    print(f"wrote {dst}")
    return 0


def _from_folder(src: Path) -> tuple[MoDTransformer, str | None]:
    """The folder's model, and its tokenizer.json's text (checked by the tokenizers library) when it has one."""
    model, tokenizer = load_folder(src), src / TOKENIZER_FILE
    if not tokenizer.is_file():
        return model, None
    load_tokenizer(tokenizer, CheckpointError)  # a file the export would refuse is refused here, before writing
    return model, tokenizer.read_text(encoding="utf-8")
