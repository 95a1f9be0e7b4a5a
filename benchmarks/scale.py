"""Real-size models through the main job: Llama-style MoD models (capacity 1/8 on every other block, causal
predictors, seeded random weights) saved as safetensors folders and exported with `mod-export FOLDER --target
onnx` in a child process. Per size: export wall time, the child's peak RSS from the kernel (getrusage), the bytes
on disk of the export folder, the ratio of each to the float32 weight bytes, and the exit status.

    python benchmarks/scale.py --sizes s,m --results benchmarks/RESULTS.md

Sizes (width, layers, query/kv heads, MLP, vocab): see SIZES. `tinyllama` is the TinyLlama-1.1B shape.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer
from mod_export.models.safetensors_folder import save_folder

SIZES = {  # name: (d_model, n_layers, n_heads, n_kv_heads, d_mlp, vocab)
    "s": (512, 8, 8, 4, 1408, 32000),
    "m": (1024, 12, 16, 4, 2816, 32000),
    "l": (2048, 12, 32, 4, 5632, 32000),  # 0.6B: float32 weights over protobuf's 2 GB
    "tinyllama": (2048, 22, 32, 4, 5632, 32000),  # 1.1B
}
SECTION = "## Real-size export (benchmarks/scale.py)"


def build(name: str) -> MoDTransformer:
    d, layers, heads, kv, mlp, vocab = SIZES[name]
    torch.manual_seed(0)
    config = MoDConfig(
        vocab_size=vocab, d_model=d, n_heads=heads, n_kv_heads=kv, n_layers=layers, d_mlp=mlp, arch="llama"
    )
    return MoDTransformer(config).eval()


def run_one(name: str, work: Path, extra: list[str], dtype: str = "float32", shard_bytes: int | None = None) -> dict:
    model = build(name)
    params = sum(p.numel() for p in model.parameters())
    if dtype != "float32":  # a checkpoint as real ones ship: bfloat16 or float16 tensors, sharded with an index
        model = model.to(getattr(torch, dtype))
    folder = save_folder(model, work / f"{name}-model", max_shard_bytes=shard_bytes)
    del model
    out = work / f"{name}-export"
    command = [
        str(Path(sys.executable).parent / "mod-export"),
        str(folder),
        "--target",
        "onnx",
        "--out",
        str(out),
        *extra,
    ]
    log = work / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS from the kernel
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss * 1024
    weights = params * 4
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else 0
    last = (log.read_text().strip().splitlines() or [""])[-1]
    return {
        "size": name,
        "params": params,
        "weights_gb": weights / 1e9,
        "exit": code,
        "wall_s": wall,
        "peak_rss_gb": peak / 1e9,
        "rss_over_weights": peak / weights,
        "disk_gb": disk / 1e9,
        "disk_over_weights": disk / weights,
        "last_line": last[:160],
        "flags": " ".join(extra),
        "source_dtype": dtype,
    }


def table(rows: list[dict]) -> str:
    head = "| size | params | fp32 weights | source | flags | exit | wall | peak RSS | RSS / weights | on disk | disk / weights |"
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        rss, ratio = f"{r['peak_rss_gb']:.2f} GB", f"{r['rss_over_weights']:.1f}x"
        lines.append(
            f"| {r['size']} | {r['params'] / 1e6:.0f}M | {r['weights_gb']:.2f} GB | {r['source_dtype']} | {r['flags'] or '-'} | "
            f"{r['exit']} | "
            f"{r['wall_s'] / 60:.1f} min | {rss} | {ratio} | {r['disk_gb']:.2f} GB | {r['disk_over_weights']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="s,m,l", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--flags", default="", help="extra export flags, e.g. '--no-validate --precision fp16'")
    parser.add_argument("--work", default=None, help="folder for the models and exports (default: a temporary one)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="folder dtype")
    parser.add_argument("--shard-gb", type=float, default=None, help="shard the folder's safetensors at this size")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mod_export_scale_", dir=args.work) as work:
        for name in args.sizes.split(","):
            print(f"[scale] {name}: building, saving and exporting ...", flush=True)
            shard = int(args.shard_gb * 1e9) if args.shard_gb else None
            rows.append(run_one(name, Path(work), args.flags.split(), args.dtype, shard))  # one child per size
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    print(f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
