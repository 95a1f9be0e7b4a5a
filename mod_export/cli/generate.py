"""`mod-export generate DIR --prompt TEXT`: generate with an exported model (causal routing, MoD-aware KV cache).

Byte-level models (vocabulary 256, like the built-in example) take text, and their output is decoded as UTF-8 as
it comes (mod_export.generation.text); other models take token ids and print token ids."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from mod_export.backends import registry
from mod_export.cli.types import fraction, non_negative_int, positive_int
from mod_export.errors import InputError, ModExportError
from mod_export.runtime import Session


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _top_p(text: str) -> float:
    value = fraction(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be in (0, 1]")
    return value


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = "Generate text (byte-level models) or tokens with the generation graph of an export."
    parser.add_argument("dir", type=Path, help="directory written by `mod-export MODEL --target onnx`")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument(
        "--prompt", help="prompt text (byte-level models: vocabulary 256); text that is not UTF-8 is taken as bytes"
    )
    prompt.add_argument("--prompt-ids", help="prompt as comma-separated token ids, e.g. 100,101,102")
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=64, help="tokens to generate at most (default 64)"
    )
    parser.add_argument("--temperature", type=_nonneg_float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=non_negative_int, default=0, help="keep the k most likely tokens (0 = all)")
    parser.add_argument("--top-p", type=_top_p, default=1.0, help="nucleus sampling mass in (0, 1] (default 1)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the sampling (default 0; unused when greedy)"
    )
    parser.add_argument("--stop", help="comma-separated token ids that end a row, each in [0, vocabulary)")
    parser.add_argument(
        "--backend",
        choices=[name for name in registry.runtime_names() if name != registry.AUTO],
        default="onnxruntime",
        help="runtime to generate with (default onnxruntime; tensorrt is not available from the CLI yet)",
    )
    parser.add_argument("--skip-integrity", action="store_true", help="load files that differ from manifest.json")


def _ids(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None


def _printable(text: str, out: TextIO) -> str:
    """text as `out` can write it: a character its encoding lacks becomes '?' rather than an error."""
    encoding = getattr(out, "encoding", None) or "utf-8"
    return text.encode(encoding, errors="replace").decode(encoding)


def run(args: argparse.Namespace) -> int:
    if args.backend == "tensorrt":
        raise ModExportError("generation on TensorRT is not available in this version (use --backend onnxruntime)")
    session = Session(args.dir, backend="onnxruntime", skip_integrity=args.skip_integrity)
    codec = session.codec  # None: a model of token ids
    if args.prompt is not None:
        if codec is None:
            raise InputError(f"this model's vocabulary has {session.vocab} tokens, not bytes: pass --prompt-ids")
        prompt = codec.encode(os.fsencode(args.prompt))  # the bytes the shell passed, UTF-8 or not
    else:
        prompt = _ids(args.prompt_ids, "--prompt-ids")
    if not prompt:
        raise InputError("the prompt is empty: give at least one character (--prompt) or token id (--prompt-ids)")
    stops = tuple(_ids(args.stop, "--stop")) if args.stop else ()
    events = session.stream(prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed, stops)
    out = sys.stdout
    text = codec.decoder() if codec is not None else None
    if text is not None:
        out.write(_printable(text.feed(prompt), out))
    generated, seconds = [], 0.0
    for event in events:
        if event.emitted[0]:
            token = int(event.tokens[0])
            generated.append(token)
            out.write(_printable(text.feed([token]), out) if text is not None else f" {token}")
            out.flush()
        seconds += event.seconds
    out.write(_printable(text.flush(), out) + "\n" if text is not None else "\n")
    rates = session.take_rates(0)
    print(
        f"{len(generated)} tokens in {seconds:.2f} s ({len(generated) / seconds if seconds else 0:.1f} tokens/s, "
        f"prefill included); take rate per routed block: "
        + ", ".join(f"block {layer} {100 * rate:.1f}%" for layer, rate in rates.items()),
        file=sys.stderr,
    )
    return 0
