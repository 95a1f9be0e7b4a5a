"""The step graph (one ONNX Runtime session for prefill and decode) against the prefill/decode pair it replaced
(two sessions), side by side: resident memory once the sessions are open, peak, prefill and decode step times.
Each run is a process of its own, alternating step and pair, so that neither stepper's thread pool or pre-packed
weights disturb the other's timings (docs/generation.md; benchmarks/RESULTS.md).

    python benchmarks/step_graph.py --spec synthetic:1024x8 --batch 1,4 --prompt 128,512 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build(spec: str, folder: Path) -> None:
    from mod_export.bench.generation import DecodeSettings, decode_models
    from mod_export.exporter.generation_graphs import export_decode_forms
    from mod_export.graph.weights import WeightStore, save_graphs
    from mod_export.validate.artifacts import evaluation_text

    model, _ = decode_models(spec, DecodeSettings(capacity="1/8"), evaluation_text())
    forms = export_decode_forms(model, store=WeightStore.temporary())
    save_graphs({"step.onnx": forms.step, "prefill.onnx": forms.prefill, "decode.onnx": forms.decode}, folder)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    (folder / "weights.json").write_text(json.dumps({"bytes": weights}))


def rss_gb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 1e9


def peak_gb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024 / 1e9


def run(folder: Path, kind: str, batch: int, prompt: int, steps: int) -> dict:
    """One stepper in this process: prefill 4 times (median of the last 3), then `steps` greedy decode steps."""
    from mod_export.backends.onnxrt.generation import OrtStepper
    from mod_export.graph.weights import load_graph

    start = rss_gb()
    names = ["step.onnx"] if kind == "step" else ["decode.onnx", "prefill.onnx"]
    stepper = OrtStepper(*(load_graph(folder / n) for n in names), threads=2)
    opened = rss_gb()
    ids = np.random.default_rng(0).integers(0, 256, (batch, prompt)).astype(np.int64)  # [B,P]
    prefill = []
    for _ in range(4):
        t = time.perf_counter()
        stepper.prefill(ids, np.ones_like(ids), prompt + steps + 1)
        prefill.append(time.perf_counter() - t)
    token, active, step = ids[:, -1], np.ones(batch, bool), []
    for _ in range(steps):
        t = time.perf_counter()
        out = stepper.step(token, active)
        step.append(time.perf_counter() - t)
        token = out.logits.argmax(-1)
    return {
        "kind": kind,
        "sessions_gb": opened - start,
        "peak_gb": peak_gb(),
        "prefill_ms": 1e3 * float(np.median(prefill[1:])),
        "step_p50_ms": 1e3 * float(np.median(step)),
        "step_p95_ms": 1e3 * float(np.percentile(step, 95)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="synthetic:1024x8")
    parser.add_argument("--batch", default="1,4")
    parser.add_argument("--prompt", default="128,512")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)  # FOLDER KIND BATCH PROMPT STEPS
    args = parser.parse_args()
    if args.child:
        folder, kind, batch, prompt, steps = args.child
        print(json.dumps(run(Path(folder), kind, int(batch), int(prompt), int(steps))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(args.spec, folder)
        weights = json.loads((folder / "weights.json").read_text())["bytes"] / 1e9
        print(f"{args.spec}: weights {weights:.2f} GB (float32); medians over {args.repeats} processes each\n")
        print("| B | prompt | graph | sessions open (GB) | peak RSS (GB) | prefill ms | decode p50 / p95 ms |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for batch in map(int, args.batch.split(",")):
            for prompt in map(int, args.prompt.split(",")):
                rows: dict[str, list[dict]] = {"step": [], "pair": []}
                for _ in range(args.repeats):
                    for kind in rows:
                        child = [
                            sys.executable,
                            __file__,
                            "--child",
                            tmp,
                            kind,
                            str(batch),
                            str(prompt),
                            str(args.steps),
                        ]
                        out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
                        rows[kind].append(json.loads(out.strip().splitlines()[-1]))
                for kind, runs in rows.items():
                    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0] if k != "kind"}
                    print(
                        f"| {batch} | {prompt} | {kind} | {med['sessions_gb']:.2f} | {med['peak_gb']:.2f} | "
                        f"{med['prefill_ms']:.0f} | {med['step_p50_ms']:.2f} / {med['step_p95_ms']:.2f} |"
                    )


if __name__ == "__main__":
    main()
