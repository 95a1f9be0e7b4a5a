"""Text in and out of a model: the one place where text becomes token ids and generated ids become text.

A byte-level model (vocabulary 256, like the built-in example) reads and writes UTF-8 bytes: its codec encodes
text as UTF-8 and takes bytes as they are (a prompt that is not valid UTF-8 is its bytes), and decodes generated
bytes incrementally: a character is printed once its last byte arrives, so one the model wrote as two bytes
(`cf 96`, ϖ) is one character, not two U+FFFD. Bytes that are not UTF-8 become U+FFFD, as a one-shot
`bytes.decode("utf-8", errors="replace")` of the whole stream would give. A model that brings a `tokenizer.json`
has a TokenizerCodec (mod_export.generation.tokenizer) with the same methods; `codec_for` chooses.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from pathlib import Path

from mod_export.errors import InputError, IntegrityError, ModExportError
from mod_export.generation.tokenizer import TokenizerCodec, check_fits
from mod_export.integrity import verify_files

BYTE_VOCAB = 256  # a byte-level model's vocabulary: token id = byte value


class TextDecoder:
    """Generated token ids -> text, incrementally: feed() returns the characters completed so far."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, tokens: Iterable[int]) -> str:
        return self._utf8.decode(bytes(tokens))

    def flush(self) -> str:
        """The end of the stream: an incomplete character left over becomes U+FFFD."""
        return self._utf8.decode(b"", final=True)


class ByteCodec:
    """The codec of a byte-level model (vocabulary 256)."""

    vocab = BYTE_VOCAB

    def encode(self, text: str | bytes) -> list[int]:
        """Text -> UTF-8 byte ids; bytes are taken as they are. A str holding surrogate escapes (how Python hands
        over command-line bytes that are not UTF-8) gives those bytes back, as os.fsencode does."""
        if isinstance(text, (bytes, bytearray, memoryview)):
            return list(bytes(text))
        if not isinstance(text, str):
            raise InputError(f"text to encode must be str or bytes, got {type(text).__name__}")
        try:
            return list(text.encode("utf-8", errors="surrogateescape"))
        except UnicodeEncodeError as exc:
            raise InputError(
                f"the text holds {text[exc.start]!r} at position {exc.start}, a lone surrogate that is not a character"
            ) from None

    def decoder(self) -> TextDecoder:
        return TextDecoder()

    def decode(self, tokens: Iterable[int]) -> str:
        """All at once: the same text as feeding the tokens to a decoder one by one and flushing it."""
        decoder = self.decoder()
        return decoder.feed(tokens) + decoder.flush()


def codec_for(
    vocab: int | None, tokenizer: Path | None = None, error: type[ModExportError] = IntegrityError
) -> ByteCodec | TokenizerCodec | None:
    """The text codec of a model with this vocabulary: its tokenizer's when it has one, else a byte-level
    model's, else None (token ids only). A tokenizer that is unreadable, or has more ids than the model, is
    `error` (an export's file: IntegrityError; a model folder's, at export: CheckpointError)."""
    if tokenizer is not None:
        codec = TokenizerCodec(tokenizer, error)
        check_fits(codec.vocab, vocab, tokenizer, error)
        return codec
    return ByteCodec() if vocab == BYTE_VOCAB else None


def export_codec(
    source: Path, manifest: dict | None, vocab: int | None, skip_integrity: bool
) -> ByteCodec | TokenizerCodec | None:
    """The codec of an export (a folder, or a file in one): the tokenizer its manifest names, checked against the
    manifest's sha256 unless skip_integrity; else codec_for(vocab)."""
    name = manifest.get("tokenizer") if manifest else None
    if not name:
        return codec_for(vocab)
    directory = source if source.is_dir() else source.parent
    if not skip_integrity:
        verify_files(directory, [name])
    return codec_for(vocab, directory / name)
