"""A model with a real tokenizer, for the tests of text in and out (tests/unit/test_tokenizer.py, the serving
tests): a byte-level BPE tokenizer trained on the stdlib corpus, and a Llama-style MoD model folder with a
vocabulary padded above the tokenizer's."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from mod_export.contract import TOKENIZER_FILE
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer
from mod_export.models.safetensors_folder import save_folder

VOCAB = 384  # the tokenizer's size; the model's embedding has a few rows more, as padded vocabularies do
MODEL_VOCAB = 400


def train_tokenizer(corpus, folder: Path) -> Path:
    """folder/tokenizer.json: byte-level BPE with a BOS (<s>, id 0) that its post-processor adds."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    text = bytes(corpus.train[:300_000]).decode("utf-8", errors="replace")
    tok.train_from_iterator(text.splitlines(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    path = folder / TOKENIZER_FILE
    tok.save(str(path))
    return path


def model_folder(where: Path, tokenizer: Path | None, vocab: int = MODEL_VOCAB) -> Path:
    """where/model: config.json + model.safetensors of a small Llama MoD model, and the tokenizer beside them."""
    torch.manual_seed(0)
    cfg = MoDConfig(vocab_size=vocab, d_model=32, n_heads=4, n_layers=3, d_mlp=64, capacity="1/4")
    cfg = cfg.replace(arch="llama", n_kv_heads=2, tie_embeddings=True)
    folder = save_folder(MoDTransformer(cfg).eval(), where / "model")
    if tokenizer is not None:
        shutil.copyfile(tokenizer, folder / TOKENIZER_FILE)
    return folder
