"""`mod-export generate DIR --prompt TEXT`: generate with an exported model (causal routing, MoD-aware KV cache).

Byte-level models (vocabulary 256, like the built-in example) take text; other models take token ids."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mod_export.cli.types import fraction, non_negative_int, positive_int
from mod_export.errors import InputError, ModExportError
from mod_export.runtime import Session

BYTE_VOCAB = 256


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
    parser.description = "Generate text (byte-level models) or tokens with the prefill/decode graphs of an export."
    parser.add_argument("dir", type=Path, help="directory written by `mod-export MODEL --target onnx`")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="prompt text (byte-level models: vocabulary 256)")
    prompt.add_argument("--prompt-ids", help="prompt as comma-separated token ids")
    parser.add_argument("--max-new-tokens", type=positive_int, default=64)
    parser.add_argument("--temperature", type=_nonneg_float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=non_negative_int, default=0, help="keep the k most likely tokens (0 = all)")
    parser.add_argument("--top-p", type=_top_p, default=1.0, help="nucleus sampling mass in (0, 1] (default 1)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--stop", help="comma-separated token ids that end a row")
    parser.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime")
    parser.add_argument("--skip-integrity", action="store_true", help="load files that differ from manifest.json")


def _ids(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    if args.backend == "tensorrt":
        raise ModExportError("generation on TensorRT is not available in this version (use --backend onnxruntime)")
    session = Session(args.dir, backend="onnxruntime", skip_integrity=args.skip_integrity)
    byte_level = session.vocab == BYTE_VOCAB
    if args.prompt is not None and not byte_level:
        raise InputError(f"this model's vocabulary has {session.vocab} tokens, not bytes: pass --prompt-ids")
    prompt = list(args.prompt.encode()) if args.prompt is not None else _ids(args.prompt_ids, "--prompt-ids")
    stops = tuple(_ids(args.stop, "--stop")) if args.stop else ()
    events = session.stream(prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed, stops)
    out = sys.stdout
    if byte_level:
        out.write(args.prompt)
    generated, seconds = [], 0.0
    for event in events:
        if event.emitted[0]:
            token = int(event.tokens[0])
            generated.append(token)
            out.write(bytes([token]).decode("utf-8", errors="replace") if byte_level else f" {token}")
            out.flush()
        seconds += event.seconds
    out.write("\n")
    rates = session.take_rates(0)
    print(
        f"{len(generated)} tokens in {seconds:.2f} s ({len(generated) / seconds if seconds else 0:.1f} tokens/s, "
        f"prefill included); take rate per routed block: "
        + ", ".join(f"block {layer} {100 * rate:.1f}%" for layer, rate in rates.items()),
        file=sys.stderr,
    )
    return 0
