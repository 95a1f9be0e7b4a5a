"""Quality of every precision on held-out text: float32, float16 and int8 with each calibration method
(routing-aware guard on and off), as bits per byte and routing agreement per routed layer.

    python benchmarks/precision_report.py MODEL.pt [--eval-windows 1000] [--calib-windows 64] [--png out.png] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys

from calibration.data import load_calibration_data
from calibration.evaluate import compare_to_reference, run_with_indices
from calibration.fp16 import convert_forms_fp16
from calibration.int8 import quantize_forms
from mod_export.checkpoint import load_checkpoint
from mod_export.data.corpus import fixed_windows, load_stdlib_corpus
from mod_export.export.onnx_export import export_forms
from mod_export.validate import idx_tensor_names


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    ax1.bar(names, [100 * r["relative_bpb_change"] for r in rows], color="tab:blue")
    ax1.axhline(0.5, color="tab:orange", ls="--", label="fp16 target +0.5%")
    ax1.axhline(3.0, color="tab:red", ls="--", label="int8 target +3%")
    ax1.set_ylabel("held-out bits/byte change vs float32 (%)")
    ax1.set_title("Quality")
    ax1.legend(fontsize=8)
    layers = sorted(rows[0]["routing_agreement"])
    width = 0.8 / len(layers)
    for i, layer in enumerate(layers):
        ax2.bar([x + i * width for x in range(len(rows))], [100 * r["routing_agreement"][layer] for r in rows],
                width=width, label=f"routed layer #{layer}")
    ax2.axhline(99.5, color="tab:orange", ls="--", label="fp16 target 99.5%")
    ax2.axhline(95, color="tab:red", ls="--", label="int8 target 95%")
    ax2.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))], names)
    ax2.set_ylim(0, 101)
    ax2.set_ylabel("rows whose top-k set equals float32's (%)")
    ax2.set_title("Routing agreement")
    ax2.legend(fontsize=8, loc="lower left")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--eval-windows", type=int, default=1000)
    parser.add_argument("--calib-windows", type=int, default=64)
    parser.add_argument("--png")
    parser.add_argument("--json")
    args = parser.parse_args()
    model = load_checkpoint(args.model)
    forms = export_forms(model)
    held = load_stdlib_corpus().held_out
    windows = fixed_windows(held[len(held) // 2 :], args.eval_windows, 257)  # calibration uses the other half
    calib = load_calibration_data(None, windows=args.calib_windows)
    rows = []

    reference_run = run_with_indices(forms.portable, idx_tensor_names(forms.plugin), windows)

    def add(variant, proto, extra=None):
        result = compare_to_reference(forms.portable, proto, forms.plugin, windows, reference_run)
        rows.append({"variant": variant, **result, **(extra or {})})
        print(f"done {variant}", file=sys.stderr)

    add("fp32", forms.portable)
    add("fp16", convert_forms_fp16(model, 18, False).portable)
    eligible = None
    for method in ("minmax", "percentile", "entropy"):
        for guard in (None, 0.99):
            q = quantize_forms(forms.plugin, forms.portable, calib, method, None, show_progress=False, routing_guard=guard)
            eligible = len(q.quantized_nodes) + len(q.float_for_routing)
            add(f"int8 {method}" + (" guard" if guard else " all"), q.portable,
                {"int8_matmuls": len(q.quantized_nodes), "eligible_matmuls": eligible})
    print("| variant | int8 MatMuls | bits/byte | change vs fp32 | " + " | ".join(f"routing agreement #{k}" for k in sorted(rows[0]["routing_agreement"])) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in rows[0]["routing_agreement"]) + " |")
    for r in rows:
        mm = f"{r['int8_matmuls']}/{r['eligible_matmuls']}" if "int8_matmuls" in r else "-"
        agree = " | ".join(f"{100 * r['routing_agreement'][k]:.1f}%" for k in sorted(r["routing_agreement"]))
        print(f"| {r['variant']} | {mm} | {r['bits_per_byte']:.4f} | {100 * r['relative_bpb_change']:+.3f}% | {agree} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"eval_windows": args.eval_windows, "calib_windows": args.calib_windows, "rows": rows}, fh, indent=2)
    if args.png:
        plot(rows, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
