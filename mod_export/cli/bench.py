"""`mod-export bench MODEL`: MoD vs its dense twin per backend, against the FLOP ideal."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from mod_export.bench.generation import DecodeSettings, run_decode_bench
from mod_export.bench.report import (
    decode_markdown,
    markdown,
    plotting_available,
    write_decode_outputs,
    write_outputs,
)
from mod_export.bench.runner import BenchSettings, candidates, check_backends, run_bench
from mod_export.bench.threads import applied_policy
from mod_export.cli.types import non_negative_int, positive_int
from mod_export.errors import ModExportError
from mod_export.models.config import parse_capacity
from mod_export.output import Target, kinds


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ModExportError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ModExportError(f"--{what} values must be >= 1, got {text!r}")
    return values


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = "Benchmark MoD against its dense twin (same weights, routing off), interleaved in one run."
    parser.add_argument("model", help="checkpoint (model.pt) or synthetic:WIDTHxLAYERS (e.g. synthetic:512x8)")
    parser.add_argument(
        "--backends",
        default="torch,onnxruntime,onnxruntime-plugin",
        help=f"comma list of {', '.join(candidates())}",
    )
    parser.add_argument("--batch", help="comma list of batch sizes (default 1; with --decode 1,8,32)")
    parser.add_argument(
        "--seq-lens", default="256,512,1024,2048", help="comma list of sequence lengths (default 256,512,1024,2048)"
    )
    parser.add_argument("--capacities", default="1/8", help="comma list of num/den (default 1/8)")
    parser.add_argument("--repeats", type=positive_int, default=10, help="timed runs per candidate (default 10)")
    parser.add_argument(
        "--warmup", type=non_negative_int, default=2, help="untimed runs per candidate first (default 2)"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=2, help="intra-op threads of PyTorch and ONNX Runtime (default 2)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the ONNX Runtime profiler pass")
    parser.add_argument(
        "--spinning",
        action="store_true",
        help="let idle PyTorch (OpenMP) and ONNX Runtime threads spin (off by default: candidates take "
        "turns on the same cores and one's spinning threads slow down the next)",
    )
    parser.add_argument("--out", type=Path, help="write results.json, results.md and PNG plots here")
    parser.add_argument(
        "--force", action="store_true", help="replace --out DIR when it holds earlier mod-export bench results only"
    )
    decode = parser.add_argument_group("generation (--decode): decode steps instead of full-sequence forwards")
    decode.add_argument("--decode", action="store_true", help="benchmark generation (prefill + decode steps)")
    decode.add_argument("--prompt-lens", default="128,1024", help="decode: prompt lengths (default 128,1024)")
    decode.add_argument("--new-tokens", type=positive_int, default=128, help="decode: tokens per row (default 128)")
    decode.add_argument(
        "--torch-batches", default="1", help="decode: batch sizes PyTorch eager is timed at (default 1)"
    )


def _out_target(args: argparse.Namespace):
    """--out DIR: checked and locked before the benchmark runs (a folder of bench results, written in one piece;
    an existing one replaced only with --force and only when it holds earlier bench results and nothing else)."""
    if args.out is None:
        return contextlib.nullcontext()
    model = Path(args.model)
    return Target(args.out, kinds.BENCH_FOLDER, args.force, inputs=[model] if model.exists() else [])


def run_decode(args: argparse.Namespace) -> int:
    if "," in args.capacities:
        raise ModExportError("--decode takes one capacity")
    parse_capacity(args.capacities)
    batch = _ints(args.batch, "batch") if args.batch is not None else DecodeSettings().batch
    settings = DecodeSettings(
        batch,
        _ints(args.prompt_lens, "prompt-lens"),
        args.new_tokens,
        args.capacities,
        args.threads,
        _ints(args.torch_batches, "torch-batches"),
    )
    with _out_target(args) as out:
        with_plots = out is not None and plotting_available()  # warned before anything is measured or written
        data = run_decode_bench(args.model, settings)
        data["thread_policy"] = applied_policy()
        print(decode_markdown(data))
        if out is not None:
            for path in write_decode_outputs(data, out, with_plots):
                print(f"wrote {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.decode:
        return run_decode(args)
    capacities = tuple(args.capacities.split(","))
    for cap in capacities:
        parse_capacity(cap)
    backends = tuple(args.backends.split(","))
    check_backends(backends)  # unknown names, before anything slow
    settings = BenchSettings(
        backends,
        _ints(args.batch or "1", "batch"),
        _ints(args.seq_lens, "seq-lens"),
        capacities,
        args.repeats,
        args.warmup,
        args.threads,
        not args.no_profile,
        args.spinning,
    )
    with _out_target(args) as out:
        with_plots = out is not None and plotting_available()
        data = run_bench(args.model, settings)
        data["thread_policy"] = applied_policy()  # set by the CLI entry point before torch loaded
        print(markdown(data))
        if out is not None:
            for path in write_outputs(data, out, with_plots):
                print(f"wrote {path}")
    return 0
