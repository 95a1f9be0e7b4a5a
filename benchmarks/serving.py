"""Serving figures: the scoring model (Triton's Python backend, mod_export.serving.scoring) and the streaming
generation model (decoupled, in-flight batching, mod_export.serving.generation) of a MoD model against its dense
twin (same weights, routing off), each in its own repository written the same way and served by its own real
tritonserver (the nvidia-pytriton wheel's binary, torch-free serving environment from
tests/serving/environment.py), at several client concurrencies. Rounds alternate the order of the two models,
and odd rounds run the concurrency levels in descending order, so drift on a shared machine hits both alike; the
generation tokens/s ratio of concurrency 8 to 1 is printed per round (both measured within that round). Scoring
requests are single rows of random tokens of one length; generation requests are greedy streams of --new-tokens
tokens after a --prompt-len prompt, one gRPC stream per client thread, requests sent one after another on it.

    python benchmarks/serving.py [--model synthetic:256x8] [--seq-len 256] [--concurrency 1,2,4,8,16]
           [--requests 48] [--streams 16] [--prompt-len 32] [--new-tokens 64] [--rounds 2] [--threads 1]
           [--png benchmarks/serving_scoring.png] [--gen-png benchmarks/serving_generation.png] [--json out.json]

One ONNX Runtime thread per server by default: on 2 cores the other core runs the clients (and the other server).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests.serving helpers, from any directory

import numpy as np

from mod_export.backends.onnxrt.generation import decode_layout
from mod_export.bench.generation import DecodeSettings, decode_models
from mod_export.contract import INPUT_IDS, STEP_FILE, TRITON_SCORE_MODEL
from mod_export.exporter.generation_graphs import export_decode_forms
from mod_export.exporter.onnx_export import export_forms
from mod_export.exporter.triton import TritonSettings, write_repository
from mod_export.graph.weights import WeightStore, save_graphs
from mod_export.models.flops import ideal_speedup
from mod_export.serving.bundled import BundledServer
from mod_export.validate.artifacts import evaluation_text
from tests.serving.client import client, fan_out, generate_inputs, run_streams, send, settled, tensor
from tests.serving.environment import serving_env


def write_repositories(
    spec: str, capacity: str, settings: TritonSettings, max_batch: int, work: Path
) -> tuple[dict, object, int]:
    """{"mod": repository, "dense": repository}, the model config and the MoD model's number of routed blocks.
    The MoD model's causal predictors (the generation graphs route by them) are calibrated to the capacity's rate
    on held-out text when synthetic."""
    model, dense_twin = decode_models(spec, DecodeSettings(capacity=capacity), evaluation_text())
    out = {}
    for name, module, dense in (("mod", model, False), ("dense", dense_twin, True)):
        store = WeightStore.temporary()  # both exports' weights, each tensor once
        forms = export_forms(module, allow_dense=dense, store=store)
        decode = export_decode_forms(module, store=store, pair=False)
        if not dense:
            routed = len(decode_layout(decode.step)[1])
        root = work / name
        root.mkdir()
        save_graphs({"model.onnx": forms.portable, STEP_FILE: decode.step}, root)
        generation = {"step": STEP_FILE, "max_context": settings.context}
        out[name] = write_repository(
            root,
            model.config.vocab_size,
            max_batch,
            root / "model.onnx",
            None,
            None,
            forms.idx_outputs,
            settings,
            generation=generation,
        )
    return out, model.config, routed


def generation_level(server, prompts: list[list[int]], new_tokens: int, concurrency: int) -> dict:
    """Greedy streams of every prompt from `concurrency` client threads: tokens/s, first-token and inter-token
    latency, errors, and the mean rows per decode step the model ran (its metrics)."""
    before = settled(server)
    start = time.perf_counter()
    results = run_streams(server, [generate_inputs(p, new_tokens) for p in prompts], concurrency)
    wall = time.perf_counter() - start
    after = settled(server, before, ended=len(prompts))
    ok = [r for r in results if r["error"] is None and len(r["tokens"]) == new_tokens]
    tokens = sum(len(r["tokens"]) for r in ok)
    first = np.array([r["seconds"][0] for r in ok]) * 1e3
    gaps = np.concatenate([np.diff(r["seconds"]) for r in ok]) * 1e3
    steps = after["steps"] - before["steps"]
    return {
        "concurrency": concurrency,
        "streams": len(prompts),
        "errors": len(results) - len(ok),
        "tokens": tokens,
        "wall": wall,
        "first_ms": first.tolist(),
        "gap_ms": gaps.tolist(),
        "rows_per_step": (after["row_steps"] - before["row_steps"]) / steps if steps else 0.0,
        "routed_per_step": (after["routed_runs"] - before["routed_runs"]) / steps if steps else 0.0,
        "model_seconds": after["model_seconds"] - before["model_seconds"],
    }


def run_level(server, requests: list[np.ndarray], concurrency: int) -> tuple[list[float], float, int]:
    """(latencies in s, wall seconds, errors) of sending every request from `concurrency` threads."""

    def call(conn, i: int) -> dict:
        start = time.perf_counter()
        try:
            send(conn, [tensor(INPUT_IDS, requests[i])])
        except Exception:
            return {"seconds": None}
        return {"seconds": time.perf_counter() - start}

    start = time.perf_counter()
    records = fan_out(len(requests), concurrency, lambda: client(server), call, timeout=600)
    wall = time.perf_counter() - start
    latencies = [r["seconds"] for r in records if r["seconds"] is not None]
    return latencies, wall, len(records) - len(latencies)


def plot(results: dict, path: str, title: str, key: str = "throughput", unit: str = "requests / s") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, color in (("mod", "tab:blue"), ("dense", "tab:orange")):
        rows = results[name]
        c = [r["concurrency"] for r in rows]
        ax1.plot(c, [r[key] for r in rows], "o-", color=color, label=f"{name}")
        ax2.plot(c, [r["p50_ms"] for r in rows], "o-", color=color, label=f"{name} p50")
        ax2.plot(c, [r["p99_ms"] for r in rows], "s--", color=color, label=f"{name} p99")
    ax1.set(xscale="log", xlabel="client concurrency", ylabel=unit, title="throughput")
    latency = "inter-token latency (ms)" if key == "tokens_per_s" else "latency (ms)"
    ax2.set(xscale="log", yscale="log", xlabel="client concurrency", ylabel=latency, title="latency")
    for ax in (ax1, ax2):
        ax.set_xticks([r["concurrency"] for r in results["mod"]], [str(r["concurrency"]) for r in results["mod"]])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def scoring_rounds(servers: dict, requests: list, levels: list[int], rounds: int) -> dict:
    raw = {n: {c: {"lat": [], "wall": 0.0, "n": 0, "errors": 0} for c in levels} for n in servers}
    for s in servers.values():  # warm-up: sessions, threads, batcher
        run_level(s, requests[:16], 4)
    for round_ in range(rounds):
        for c in levels:
            for name in ("mod", "dense") if round_ % 2 == 0 else ("dense", "mod"):
                lat, wall, errors = run_level(servers[name], requests, c)
                entry = raw[name][c]
                entry["lat"] += lat
                entry["wall"] += wall
                entry["n"] += len(requests)
                entry["errors"] += errors
    return {
        n: [
            {
                "concurrency": c,
                "requests": e["n"],
                "errors": e["errors"],
                "throughput": e["n"] / e["wall"],
                "p50_ms": float(np.percentile(np.array(e["lat"]) * 1e3, 50)),
                "p99_ms": float(np.percentile(np.array(e["lat"]) * 1e3, 99)),
            }
            for c, e in per.items()
        ]
        for n, per in raw.items()
    }


def generation_rounds(servers: dict, prompts: list, new_tokens: int, levels: list[int], rounds: int) -> dict:
    raw = {n: {c: [] for c in levels} for n in servers}
    for s in servers.values():  # warm-up
        generation_level(s, prompts[:4], new_tokens, 4)
    for round_ in range(rounds):
        for c in levels if round_ % 2 == 0 else levels[::-1]:  # odd rounds descend: drift hits low and high alike
            for name in ("mod", "dense") if round_ % 2 == 0 else ("dense", "mod"):
                raw[name][c].append(generation_level(servers[name], prompts, new_tokens, c))
    out = {}
    for n, per in raw.items():
        out[n] = []
        for c, runs in per.items():
            gaps = np.concatenate([r["gap_ms"] for r in runs])
            first = np.concatenate([r["first_ms"] for r in runs])
            out[n].append(
                {
                    "concurrency": c,
                    "streams": sum(r["streams"] for r in runs),
                    "errors": sum(r["errors"] for r in runs),
                    "tokens_per_s": sum(r["tokens"] for r in runs) / sum(r["wall"] for r in runs),
                    "round_tokens_per_s": [r["tokens"] / r["wall"] for r in runs],
                    "p50_ms": float(np.percentile(gaps, 50)),
                    "p99_ms": float(np.percentile(gaps, 99)),
                    "first_p50_ms": float(np.percentile(first, 50)),
                    "first_p99_ms": float(np.percentile(first, 99)),
                    "rows_per_step": float(np.mean([r["rows_per_step"] for r in runs])),
                    "routed_per_step": float(np.mean([r["routed_per_step"] for r in runs])),
                }
            )
    return out


def paired_ratios(rows: list[dict], high: int, low: int = 1) -> list[float]:
    """tokens/s at concurrency `high` over `low`, per round: the two were measured minutes apart at most, so a
    shared machine's drift (it changes single-row step times by up to 2x here) cancels better than in the ratio
    of the totals."""
    by_c = {r["concurrency"]: r["round_tokens_per_s"] for r in rows}
    return [h / lo for h, lo in zip(by_c[high], by_c[low])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="synthetic:256x8")
    parser.add_argument("--capacity", default="1/8")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--concurrency", default="1,2,4,8,16")
    parser.add_argument("--requests", type=int, default=48, help="scoring: per concurrency level, model and round")
    parser.add_argument("--streams", type=int, default=16, help="generation: per concurrency level, model and round")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the one instance")
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--png", default="benchmarks/serving_scoring.png")
    parser.add_argument("--gen-png", default="benchmarks/serving_generation.png")
    parser.add_argument("--json")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    serving = serving_env()
    if serving.skip_reason:
        raise SystemExit(f"error: the bundled tritonserver cannot run here: {serving.skip_reason}")
    context = args.prompt_len + args.new_tokens
    settings = TritonSettings(
        instances=1, queue_delay_us=args.queue_delay_us, threads=args.threads, slots=max(levels), context=context
    )
    settings.max_seq_len = args.seq_len
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        repos, cfg, routed = write_repositories(args.model, args.capacity, settings, 16, Path(tmp))
        requests = [rng.integers(0, cfg.vocab_size, (1, args.seq_len)).astype(np.int64) for _ in range(args.requests)]
        prompts = [[int(t) for t in rng.integers(0, cfg.vocab_size, args.prompt_len)] for _ in range(args.streams)]
        servers = {
            n: BundledServer(r, serving.pytriton, serving.env, log=Path(tmp) / f"{n}.log") for n, r in repos.items()
        }
        try:
            for s in servers.values():
                s.start()
            results = scoring_rounds(servers, requests, levels, args.rounds)
            stats = {n: s.statistics(TRITON_SCORE_MODEL) for n, s in servers.items()}
            generation = generation_rounds(servers, prompts, args.new_tokens, levels, args.rounds)
        finally:
            for s in servers.values():
                s.stop()
    merged = {n: (int(st["inference_count"]), int(st["execution_count"])) for n, st in stats.items()}
    ideal = ideal_speedup(cfg, 1, args.seq_len)
    print(
        f"machine: {platform.processor() or platform.machine()}, model {args.model} capacity {args.capacity}, T={args.seq_len}"
    )
    print(f"ideal MoD speedup (FLOPs, one forward): {ideal:.2f}x; inferences/executions: {merged}")
    print("\nScoring")
    print(
        "| concurrency | MoD req/s | dense req/s | MoD/dense throughput | MoD p50 / p99 ms | dense p50 / p99 ms | errors |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for m, d in zip(results["mod"], results["dense"]):
        print(
            f"| {m['concurrency']} | {m['throughput']:.1f} | {d['throughput']:.1f} | {m['throughput'] / d['throughput']:.2f}x | "
            f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f} | {d['p50_ms']:.1f} / {d['p99_ms']:.1f} | {m['errors'] + d['errors']} |"
        )
    print(f"\nGeneration (greedy, prompt {args.prompt_len}, {args.new_tokens} new tokens per stream)")
    print(
        "| concurrency | MoD tokens/s | dense tokens/s | MoD/dense | MoD inter-token p50 / p99 ms | dense inter-token "
        f"p50 / p99 ms | MoD first token p50 / p99 ms | MoD rows per step | MoD routed blocks run per step (of {routed}) "
        "| errors |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, d in zip(generation["mod"], generation["dense"]):
        print(
            f"| {m['concurrency']} | {m['tokens_per_s']:.0f} | {d['tokens_per_s']:.0f} | "
            f"{m['tokens_per_s'] / d['tokens_per_s']:.2f}x | {m['p50_ms']:.2f} / {m['p99_ms']:.2f} | "
            f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} | {m['first_p50_ms']:.1f} / {m['first_p99_ms']:.1f} | "
            f"{m['rows_per_step']:.1f} | {m['routed_per_step']:.2f} | {m['errors'] + d['errors']} |"
        )
    if {1, 8} <= set(levels):
        print("\ngeneration tokens/s at concurrency 8 / 1, per round (target >= 3x):")
        for name in ("mod", "dense"):
            ratios = paired_ratios(generation[name], 8)
            each = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"  {name}: median {np.median(ratios):.2f}x, min {min(ratios):.2f}x ({each})")
    if args.png:
        plot(
            results,
            args.png,
            f"Triton scoring, {args.model} MoD (capacity {args.capacity}) vs dense twin, T={args.seq_len}",
        )
    if args.gen_png:
        plot(
            generation,
            args.gen_png,
            f"Triton streaming generation (in-flight batching), {args.model} MoD (capacity {args.capacity}) vs "
            f"dense twin, prompt {args.prompt_len} + {args.new_tokens} new",
            key="tokens_per_s",
            unit="tokens / s",
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"scoring": results, "generation": generation, "ideal": ideal, "merged": merged}, indent=2)
        )


if __name__ == "__main__":
    main()
