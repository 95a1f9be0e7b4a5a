"""A model's own tokenizer (`tokenizer.json`, Hugging Face tokenizers) as a text codec: the same `encode`,
`decoder` and `decode` as mod_export.generation.text.ByteCodec, so every caller of a codec (generate --prompt,
Session.codec, the serving models) takes text for either kind of model.

`tokenizers` is imported when a tokenizer is first loaded: a byte-level model never needs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mod_export.contract import TOKENIZER_FILE
from mod_export.errors import InputError, MissingDependencyError, ModExportError


def load_tokenizer(path: Path, error: type[ModExportError]):
    """tokenizers.Tokenizer from `path`; `error` (one line) when it is not a readable tokenizer.json."""
    try:
        from tokenizers import Tokenizer  # noqa: PLC0415 - only a model with a tokenizer.json needs it
    except ImportError:
        raise MissingDependencyError(
            f"{path} needs the tokenizers package to turn text into token ids: pip install tokenizers"
        ) from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception for any bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise error(f"{path} is not a readable {TOKENIZER_FILE} ({first})") from None


class TokenizerDecoder:
    """Generated token ids -> text, incrementally (tokenizers' DecodeStream): feed() returns the text completed
    so far; a character split over several tokens is returned once whole. Special tokens are not shown."""

    def __init__(self, tokenizer) -> None:
        from tokenizers.decoders import DecodeStream  # noqa: PLC0415 - as in load_tokenizer

        self._tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=True)
        self._ids: list[int] = []
        self._shown = 0  # characters returned so far

    def feed(self, tokens: Iterable[int]) -> str:
        text = []
        for token in tokens:
            self._ids.append(int(token))
            chunk = self._stream.step(self._tokenizer, int(token))
            if chunk:
                text.append(chunk)
        out = "".join(text)
        self._shown += len(out)
        return out

    def flush(self) -> str:
        """The end of the stream: what the whole-sequence decode holds beyond what was returned (an incomplete
        character at the end, as the tokenizer's own decode shows it)."""
        whole = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        rest = whole[self._shown :]
        self._shown = len(whole)
        return rest


def check_fits(tokenizer_vocab: int, model_vocab: int | None, path: Path, error: type[ModExportError]) -> None:
    """A tokenizer may have fewer ids than the model's vocabulary (padded embeddings), never more."""
    if model_vocab is not None and tokenizer_vocab > model_vocab:
        raise error(
            f"{path} has {tokenizer_vocab} token ids, more than the model's vocabulary of {model_vocab}: "
            "it is not this model's tokenizer"
        )


class TokenizerCodec:
    """The codec of a model that brings its tokenizer.json. `error` is what an unreadable file raises (the
    exporter: CheckpointError for a model folder; the runtime: IntegrityError for an export)."""

    def __init__(self, path: Path, error: type[ModExportError]):
        self.path = Path(path)
        self._tokenizer = load_tokenizer(self.path, error)
        self.vocab = self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str | bytes) -> list[int]:
        """Text -> token ids, with the tokenizer's own special tokens (a BOS where it adds one). Bytes must be
        UTF-8 text: a tokenizer model reads text, not bytes."""
        if isinstance(text, (bytes, bytearray, memoryview)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"the text is not UTF-8 (byte {exc.object[exc.start]:#04x} at {exc.start}), and this model's "
                    f"{TOKENIZER_FILE} reads text"
                ) from None
        if not isinstance(text, str):
            raise InputError(f"text to encode must be str or bytes, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"the text holds {text[exc.start]!r} at position {exc.start}, which is not UTF-8 text"
            ) from None
        return list(self._tokenizer.encode(text).ids)

    def decoder(self) -> TokenizerDecoder:
        return TokenizerDecoder(self._tokenizer)

    def decode(self, tokens: Iterable[int]) -> str:
        """All at once: the same text as feeding the tokens to a decoder one by one and flushing it."""
        decoder = self.decoder()
        return decoder.feed(tokens) + decoder.flush()
