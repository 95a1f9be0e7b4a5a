"""`mod-export example --out model.pt`: train the built-in example MoD model on standard-library sources."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from mod_export.cli.types import non_negative_int, positive_int
from mod_export.contract import METRICS_FORMAT
from mod_export.errors import OutputDirError
from mod_export.models.checkpoint import save_checkpoint
from mod_export.models.config import ARCHITECTURES
from mod_export.output import Target, kinds, resolve_output
from mod_export.training.train import TrainSettings, example_config, train_example


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = "Train a small byte-level MoD language model on the Python standard library's sources."
    parser.add_argument("--out", required=True, type=Path, help="checkpoint to write (model.pt)")
    parser.add_argument("--force", action="store_true", help="replace an existing checkpoint file")
    parser.add_argument(
        "--steps", type=positive_int, default=750, help="training steps (default 750, about 3 minutes on 2 cores)"
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="training seed: initial weights and batches (default 0)"
    )
    parser.add_argument(
        "--capacity", default="1/8", help="routed-block capacity as num/den, from 1/1024 to 1 (default 1/8)"
    )
    parser.add_argument(
        "--gate",
        default="sigmoid",
        choices=("sigmoid", "identity"),
        help="what scales a routed block's output: sigmoid(router score) or the score itself (default sigmoid)",
    )
    parser.add_argument(
        "--arch",
        default="gpt",
        choices=ARCHITECTURES,
        help="gpt: LayerNorm, GELU, biases; llama: RMSNorm, SwiGLU, grouped-query attention, tied embeddings",
    )
    parser.add_argument("--metrics-json", type=Path, help="also write the metrics to this JSON file")


def summary_lines(metrics: dict) -> list[str]:
    lines = [
        f"held-out bits/byte: MoD {metrics['held_out_bits_per_byte']:.3f} | dense twin (routing off) "
        f"{metrics['dense_twin_held_out_bits_per_byte']:.3f} | unigram {metrics['unigram_bits_per_byte']:.3f} "
        f"({100 * metrics['improvement_over_unigram']:.1f}% better than unigram)",
        f"held-out bits/byte in causal-routing mode (how generation routes): "
        f"{metrics['causal_routing']['bits_per_byte']:.3f}; tokens taken per routed block: "
        + ", ".join(f"block {b} {100 * f:.1f}%" for b, f in metrics["causal_routing"]["take_fraction"].items()),
        f"training time: {metrics['train_seconds']:.0f} s",
    ]
    for layer, st in metrics["routing"].items():
        line = (
            f"routed layer {layer}: score std {st['score_std']:.3f}, entropy {st['score_entropy_normalised']:.3f}, "
            f"score selected {st['mean_score_selected']:+.2f} vs skipped {st['mean_score_skipped']:+.2f}, "
            f"whitespace share selected {st['selected_whitespace_share']:.2f} vs all {st['overall_whitespace_share']:.2f}"
        )
        if "predictor_accuracy" in st:
            line += (
                f"; causal predictor accuracy {100 * st['predictor_accuracy']:.1f}% "
                f"(baseline {100 * st['predictor_baseline_accuracy']:.1f}%, precision {st['predictor_precision']:.2f}, "
                f"recall {st['predictor_recall']:.2f})"
            )
        lines.append(line)
    return lines


def run(args: argparse.Namespace) -> int:
    if args.metrics_json is not None and resolve_output(args.metrics_json) == resolve_output(args.out):
        raise OutputDirError("--metrics-json and --out name the same file")
    # both outputs are checked and locked before minutes of training; each is written atomically at the end, and
    # replaces an existing file only with --force and only when it is one mod-export wrote (mod_export.output)
    metrics_target = (
        Target(args.metrics_json, kinds.METRICS_JSON, args.force, option="--metrics-json")
        if args.metrics_json
        else contextlib.nullcontext()
    )
    with Target(args.out, kinds.CHECKPOINT, args.force) as out, metrics_target as metrics_out:
        config = example_config(args.arch).replace(capacity=args.capacity, gate=args.gate)
        settings = TrainSettings(steps=args.steps, seed=args.seed, config=config)
        model, metrics = train_example(settings)
        save_checkpoint(model, out, metrics)
        if metrics_out is not None:
            metrics_out.put_json({"format": METRICS_FORMAT, **metrics})
    for line in summary_lines(metrics):
        print(line)
    print(f"wrote {args.out}")
    return 0
