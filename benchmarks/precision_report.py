"""Quality of every precision on held-out text, for one or more trained models: float16 and int8 with each
calibration method (routing-aware guard on and off), as bits per byte change against float32 and routing
agreement per routed layer, raw and margin-aware (near-tie flips vs routing errors, docs/parity.md).

Calibration uses the first half of the example corpus' held-out slice, evaluation the second half (never both).

    python benchmarks/precision_report.py MODEL.pt [MODEL2.pt ...] [--eval-windows 1000] [--calib-windows 64]
           [--png out.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys

from calibration.data import load_calibration_data
from calibration.fp16 import fp16_stage
from calibration.int8 import quantize_forms
from mod_export.contract import WINDOW_BYTES
from mod_export.data.corpus import fixed_windows, held_out_split, load_stdlib_corpus
from mod_export.exporter.onnx_export import export_forms
from mod_export.models.checkpoint import load_checkpoint
from mod_export.validate.quality import quality_report


def plot(results: dict[str, list[dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    fig, axes = plt.subplots(len(models), 2, figsize=(14, 4.2 * len(models)), squeeze=False)
    for (ax1, ax2), model in zip(axes, models):
        rows = results[model]
        names = [r["variant"] for r in rows]
        ax1.bar(names, [100 * r["relative_bpb_change"] for r in rows], color="tab:blue")
        ax1.axhline(0.5, color="tab:orange", ls="--", label="fp16 limit +0.5%")
        ax1.axhline(3.0, color="tab:red", ls="--", label="int8 limit +3%")
        ax1.set_ylabel("bits/byte change vs float32 (%)")
        ax1.set_title(f"{model}: quality")
        ax1.legend(fontsize=8)
        layers = sorted(rows[0]["routing"])
        width = 0.8 / (2 * len(layers))
        for i, layer in enumerate(layers):
            for j, (key, hatch) in enumerate((("raw_agreement", ""), ("margin_aware_agreement", "//"))):
                ax2.bar(
                    [x + (2 * i + j) * width for x in range(len(rows))],
                    [100 * r["routing"][layer][key] for r in rows],
                    width=width,
                    hatch=hatch,
                    color=f"C{i}",
                    alpha=0.6 if j == 0 else 1.0,
                    label=f"#{layer} {'raw' if j == 0 else 'margin-aware'}",
                )
        ax2.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))], names)
        ax2.set_ylim(0, 101)
        ax2.set_ylabel("rows agreeing with float32 (%)")
        ax2.set_title(f"{model}: routing agreement (hatched: near-tie flips forgiven)")
        ax2.legend(fontsize=7, loc="lower left")
        for ax in (ax1, ax2):
            ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report_model(path: str, windows, calib) -> list[dict]:
    model = load_checkpoint(path)
    forms = export_forms(model)
    rows = []

    def add(variant, reduced, precision, extra=None):
        quality = quality_report(model, {"portable": reduced.portable}, reduced.plugin, windows, precision)
        rows.append({"variant": variant, **quality["forms"]["portable"], "passed": quality["passed"], **(extra or {})})
        print(f"{path}: done {variant}", file=sys.stderr)

    add("fp16", fp16_stage(export_forms(model, half=True)).forms, "fp16")
    for method in ("minmax", "percentile", "entropy"):
        for guard in (None, 0.99):
            q = quantize_forms(
                forms.plugin, forms.portable, calib, method, None, show_progress=False, routing_guard=guard
            )
            add(
                f"int8 {method}" + (" guard" if guard else " all"),
                q,
                "int8",
                {
                    "int8_matmuls": len(q.quantized_nodes),
                    "eligible_matmuls": len(q.quantized_nodes) + len(q.float_for_routing),
                },
            )
    return rows


def markdown(path: str, rows: list[dict]) -> str:
    layers = sorted(rows[0]["routing"])
    head = (
        "| variant | int8 MatMuls | bits/byte | change vs fp32 | forced-routing max err | "
        + " | ".join(f"#{k} raw / margin-aware (flips, errors)" for k in layers)
        + " | passed |"
    )
    lines = [
        f"`{path}` (float32 bits/byte {rows[0]['reference_bits_per_byte']:.4f})",
        "",
        head,
        "| " + " | ".join("---" for _ in range(6 + len(layers))) + " |",
    ]
    for r in rows:
        mm = f"{r['int8_matmuls']}/{r['eligible_matmuls']}" if "int8_matmuls" in r else "-"
        agree = " | ".join(
            f"{100 * r['routing'][k]['raw_agreement']:.1f}% / {100 * r['routing'][k]['margin_aware_agreement']:.1f}% "
            f"({r['routing'][k]['near_tie_flips']}, {r['routing'][k]['routing_errors']})"
            for k in layers
        )
        lines.append(
            f"| {r['variant']} | {mm} | {r['bits_per_byte']:.4f} | {100 * r['relative_bpb_change']:+.3f}% | "
            f"{r['forced_max_abs_err']:.3g} | {agree} | {'yes' if r['passed'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--eval-windows", type=int, default=1000)
    parser.add_argument("--calib-windows", type=int, default=64)
    parser.add_argument("--png")
    parser.add_argument("--json")
    args = parser.parse_args()
    evaluation = held_out_split(load_stdlib_corpus().held_out).evaluation
    windows = fixed_windows(evaluation, args.eval_windows, WINDOW_BYTES + 1)
    calib = load_calibration_data(None, windows=args.calib_windows)  # the calibration half only
    results = {path: report_model(path, windows, calib) for path in args.models}
    for path, rows in results.items():
        print(markdown(path, rows) + "\n")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"eval_windows": args.eval_windows, "calib_windows": args.calib_windows, "results": results},
                fh,
                indent=2,
            )
    if args.png:
        plot(results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
