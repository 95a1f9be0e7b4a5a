"""A model folder's tokenizer.json (Hugging Face tokenizers) travels into the export and turns text into ids and
back: `generate --prompt`, Session.codec. A real byte-level BPE tokenizer trained here on the stdlib corpus, a
Llama-style MoD model with its vocabulary, real exports and ONNX Runtime generation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from mod_export.contract import TOKENIZER_FILE
from mod_export.errors import InputError, IntegrityError
from mod_export.generation.tokenizer import TokenizerCodec
from mod_export.runtime import Session
from tests.helpers import assert_one_line_error, run_cli
from tests.tokenizer_model import MODEL_VOCAB, VOCAB, model_folder, train_tokenizer

TEXT = "def héllo(wörld):  # ϖ → ∑ 🙂\n    return wörld"


@pytest.fixture(scope="module")
def tokenizer_path(corpus, tmp_path_factory) -> Path:
    return train_tokenizer(corpus, tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def exported(tokenizer_path, tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("tokenizer-export")
    proc = run_cli(model_folder(where, tokenizer_path), "--target", "onnx", "--out", where / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return where / "out"


def test_the_tokenizer_travels_into_the_export_and_the_manifest_vouches_for_it(exported, tokenizer_path):
    assert (exported / TOKENIZER_FILE).read_bytes() == tokenizer_path.read_bytes()
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["tokenizer"] == TOKENIZER_FILE and TOKENIZER_FILE in manifest["files"]
    assert json.loads((exported / "report.json").read_text())["tokenizer"] == TOKENIZER_FILE
    assert run_cli("validate", exported.parent / "model", exported).returncode == 0


def test_session_and_generate_take_text(exported, tokenizer_path):
    reference = Tokenizer.from_file(str(tokenizer_path))
    with Session(exported) as session:
        codec = session.codec
        ids = codec.encode(TEXT)
        assert ids == reference.encode(TEXT).ids and ids[0] == 0  # the tokenizer's own BOS
        assert codec.encode(TEXT.encode()) == ids
        assert codec.decode(ids) == TEXT
        generation = session.generate([ids], max_new_tokens=12)
    tokens = list(generation.tokens[0])
    proc = run_cli("generate", exported, "--prompt", TEXT, "--max-new-tokens", "12")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == reference.decode(ids + tokens, skip_special_tokens=True) + "\n"  # greedy: same tokens


def test_a_damaged_tokenizer_is_caught_by_the_manifest(exported, tmp_path):
    damaged = tmp_path / "out"
    shutil.copytree(exported, damaged)
    (damaged / TOKENIZER_FILE).write_text((damaged / TOKENIZER_FILE).read_text().replace("<s>", "<S>"))
    with Session(damaged) as session, pytest.raises(IntegrityError, match="tokenizer.json does not match"):
        session.codec  # noqa: B018 - loading the codec is the check
    proc = run_cli("generate", damaged, "--prompt", "x", "--max-new-tokens", "2")
    assert_one_line_error(proc, 1, "tokenizer.json does not match the sha256")


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, VOCAB - 1), max_size=24))
def test_streamed_text_is_the_whole_decode(tokenizer_path, ids):
    """Any id sequence, fed one token at a time (characters split over tokens, special tokens, nonsense byte
    sequences): the pieces join into exactly what the tokenizer's own decode gives."""
    codec = TokenizerCodec(tokenizer_path, IntegrityError)
    decoder = codec.decoder()
    pieces = [decoder.feed([token]) for token in ids]
    whole = Tokenizer.from_file(str(tokenizer_path)).decode(ids, skip_special_tokens=True)
    assert "".join(pieces) + decoder.flush() == whole


@pytest.mark.parametrize(
    "change, needle",
    [
        ("garbage", "is not a readable tokenizer.json"),
        ("too many ids", "has 384 token ids, more than the model's vocabulary of 300"),
    ],
)
def test_a_bad_tokenizer_is_one_line_before_any_work(tokenizer_path, tmp_path, change, needle):
    folder = model_folder(tmp_path, tokenizer_path, vocab=300 if change == "too many ids" else MODEL_VOCAB)
    if change == "garbage":
        (folder / TOKENIZER_FILE).write_text("{not json")
    proc = run_cli(folder, "--target", "onnx", "--out", tmp_path / "out")
    assert_one_line_error(proc, 1, needle)
    assert not (tmp_path / "out").exists()


def test_a_prompt_that_is_not_utf8_is_refused_for_a_tokenizer_model(exported):
    with Session(exported) as session, pytest.raises(InputError, match="not UTF-8"):
        session.codec.encode(b"caf\xe9")


def test_convert_carries_the_tokenizer_both_ways(exported, tokenizer_path, tmp_path):
    """FOLDER -> model.pt keeps tokenizer.json's text in the checkpoint; that checkpoint exports with it (the
    same text out of `generate --prompt` as the folder's export), and model.pt -> FOLDER gives the file back."""
    folder = exported.parent / "model"
    assert run_cli("convert", folder, tmp_path / "model.pt").returncode == 0
    back = run_cli("convert", tmp_path / "model.pt", tmp_path / "again")
    assert back.returncode == 0, back.stderr[-2000:]
    assert (tmp_path / "again" / TOKENIZER_FILE).read_bytes() == tokenizer_path.read_bytes()
    proc = run_cli(tmp_path / "model.pt", "--target", "onnx", "--out", tmp_path / "out", "--no-validate")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / TOKENIZER_FILE).read_bytes() == tokenizer_path.read_bytes()
    args = ("--prompt", TEXT, "--max-new-tokens", "6")
    assert run_cli("generate", tmp_path / "out", *args).stdout == run_cli("generate", exported, *args).stdout


def test_convert_refuses_a_folder_whose_tokenizer_is_not_readable(exported, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(exported.parent / "model", folder)
    (folder / TOKENIZER_FILE).write_text("{not json")
    assert_one_line_error(run_cli("convert", folder, tmp_path / "model.pt"), 1, "is not a readable tokenizer.json")
    assert not (tmp_path / "model.pt").exists()
