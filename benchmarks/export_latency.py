"""Latency of the exported forms on ONNX Runtime CPU versus PyTorch eager, side by side in one run.

    python benchmarks/export_latency.py MODEL.pt [--shapes 1x256,1x1024,4x256] [--repeats 30] [--json out.json]

Prints a Markdown table: median / p95 / p99 per backend, plugin-form/portable and ORT/PyTorch ratios, and a
control (a second session of the portable file) whose ratio shows the noise floor of the machine.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from mod_export.bench.threads import set_idle_thread_policy

set_idle_thread_policy(spinning=False)  # before torch loads (mod_export/bench/threads.py says why)

import torch  # noqa: E402

from mod_export.backends.onnxrt.session import create_session  # noqa: E402
from mod_export.bench.device_info import cpu_model  # noqa: E402
from mod_export.bench.timing import measure_interleaved  # noqa: E402
from mod_export.checkpoint import load_checkpoint  # noqa: E402
from mod_export.export.onnx_export import export_forms  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--shapes", default="1x256,1x1024,4x256")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.model)
    forms = export_forms(model)
    sessions = {name: create_session(proto, providers=["CPUExecutionProvider"], threads=args.threads, stop_spinning_after_run=True)
                for name, proto in (("ort-portable", forms.portable), ("ort-plugin", forms.plugin),
                                    ("ort-portable-control", forms.portable))}
    rows = []
    for shape in args.shapes.split(","):
        B, T = (int(v) for v in shape.split("x"))
        ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (B, T)).astype(np.int64)
        mask = np.ones_like(ids)
        feed = {"input_ids": ids, "attention_mask": mask}
        tids, tmask = torch.from_numpy(ids), torch.from_numpy(mask)

        def torch_eager():
            with torch.inference_mode():
                return model(tids, tmask)

        candidates = {"pytorch-eager": torch_eager}
        for name, sess in sessions.items():
            candidates[name] = (lambda s=sess: s.run(None, feed))
        stats = measure_interleaved(candidates, repeats=args.repeats)
        row = {"batch": B, "seq": T, **{n: s.as_dict() for n, s in stats.items()}}
        row["plugin_over_portable"] = stats["ort-plugin"].median / stats["ort-portable"].median
        # a second session of the same portable file: the ratio any two identical runs show on this machine
        row["control_over_portable"] = stats["ort-portable-control"].median / stats["ort-portable"].median
        row["pytorch_over_ort_portable"] = stats["pytorch-eager"].median / stats["ort-portable"].median
        row["pytorch_over_ort_plugin"] = stats["pytorch-eager"].median / stats["ort-plugin"].median
        rows.append(row)
        print(f"done {shape}", file=sys.stderr)
    print("| B x T | PyTorch eager median / p95 / p99 (ms) | ORT portable | ORT plugin (ref. functions) | plugin / portable | "
          "control / portable (noise) | PyTorch / ORT portable | PyTorch / ORT plugin |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        cell = lambda n: f"{r[n]['median_ms']:.2f} / {r[n]['p95_ms']:.2f} / {r[n]['p99_ms']:.2f}"  # noqa: E731
        print(f"| {r['batch']}x{r['seq']} | {cell('pytorch-eager')} | {cell('ort-portable')} | {cell('ort-plugin')} | "
              f"{r['plugin_over_portable']:.3f} | {r['control_over_portable']:.3f} | {r['pytorch_over_ort_portable']:.2f}x | {r['pytorch_over_ort_plugin']:.2f}x |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": cpu_model(), "threads": args.threads, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
