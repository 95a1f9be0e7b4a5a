"""`mod-export bench MODEL`: MoD vs its dense twin per backend, against the FLOP ideal."""

from __future__ import annotations

import argparse
from pathlib import Path

from mod_export.bench.report import markdown, write_outputs
from mod_export.bench.runner import BenchSettings, check_backends, run_bench
from mod_export.bench.threads import applied_policy
from mod_export.cli.types import non_negative_int, positive_int
from mod_export.errors import ModExportError
from mod_export.models.config import parse_capacity


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
        help="comma list of torch, onnxruntime, onnxruntime-plugin, tensorrt",
    )
    parser.add_argument("--batch", default="1")
    parser.add_argument("--seq-lens", default="256,512,1024,2048")
    parser.add_argument("--capacities", default="1/8", help="comma list of num/den (default 1/8)")
    parser.add_argument("--repeats", type=positive_int, default=10)
    parser.add_argument("--warmup", type=non_negative_int, default=2)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--no-profile", action="store_true", help="skip the ONNX Runtime profiler pass")
    parser.add_argument(
        "--spinning",
        action="store_true",
        help="let idle PyTorch (OpenMP) and ONNX Runtime threads spin (off by default: candidates take "
        "turns on the same cores and one's spinning threads slow down the next)",
    )
    parser.add_argument("--out", type=Path, help="write results.json, results.md and PNG plots here")


def run(args: argparse.Namespace) -> int:
    capacities = tuple(args.capacities.split(","))
    for cap in capacities:
        parse_capacity(cap)
    backends = tuple(args.backends.split(","))
    check_backends(backends)  # unknown names, before anything slow
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ModExportError(f"--out {args.out} exists and is not a directory")
    settings = BenchSettings(
        backends,
        _ints(args.batch, "batch"),
        _ints(args.seq_lens, "seq-lens"),
        capacities,
        args.repeats,
        args.warmup,
        args.threads,
        not args.no_profile,
        args.spinning,
    )
    data = run_bench(args.model, settings)
    data["thread_policy"] = applied_policy()  # set by the CLI entry point before torch loaded
    print(markdown(data))
    if args.out:
        for path in write_outputs(data, args.out):
            print(f"wrote {path}")
    return 0
