"""Bench outputs: a Markdown table and PNG plots (speedup vs sequence length with the ideal line, and
latency percentiles)."""

from __future__ import annotations

import importlib.util
import logging
from fractions import Fraction
from pathlib import Path

from mod_export.contract import BENCH_FORMAT
from mod_export.models.config import parse_capacity
from mod_export.output import StagedDir, Target
from mod_export.parity.health import format_health

logger = logging.getLogger(__name__)


def markdown(data: dict) -> str:
    lines = [
        "| capacity | B x T | backend | MoD median / p95 / p99 (ms) | dense median / p95 / p99 (ms) | "
        "speedup | ideal | achieved/ideal | paired achieved/ideal | MoD tok/s | routing ops | routers | "
        "parity: forced err, flips, errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in data["results"]:
        prof = row.get("ort_profile", {})
        for backend, r in row["backends"].items():
            ms = lambda d: f"{d['median_ms']:.1f} / {d['p95_ms']:.1f} / {d['p99_ms']:.1f}"  # noqa: E731
            share = (
                (f"{100 * prof['routing_ops_share']:.2f}%", f"{100 * prof['routers_share']:.2f}%")
                if prof and backend == "onnxruntime"
                else ("", "")
            )
            check = row.get("parity", {}).get(backend)
            parity = (
                f"{check['forced_max_abs_err']:.1e}, {check['near_tie_flips']}, {check['routing_errors']}"
                if check
                else ""
            )
            lines.append(
                f"| {row['capacity']} | {row['batch']}x{row['seq']} | {backend} | {ms(r['mod'])} | {ms(r['dense'])} | "
                f"{r['achieved_speedup']:.2f}x | {row['ideal_speedup']:.2f}x | {r['achieved_over_ideal']:.2f} | "
                f"{r['paired_over_ideal']:.2f} | "
                f"{r['mod_tokens_per_s']:.0f} | {share[0]} | {share[1]} | {parity} |"
            )
    health = {row["capacity"]: row["router_health"] for row in data["results"] if "router_health" in row}
    for capacity, h in health.items():
        lines.append(f"\nrouter health, capacity {capacity} (held-out text):\n" + format_health(h))
    for backend, reason in data.get("not_run", {}).items():
        lines.append(f"\nnot run: {backend}: {reason}")
    return "\n".join(lines)


def plotting_available() -> bool:
    """Whether matplotlib is installed; without it, one warning, and the results are written without plots."""
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    logger.warning("matplotlib is not installed: no PNG plots (pip install 'mod-export[plot]' for them)")
    return False


def write_outputs(data: dict, target: Target, with_plots: bool = True) -> list[Path]:
    """results.json, results.md and the PNG plots as one folder (mod_export.output: written in one piece,
    replacing only earlier bench results); returns the files written."""
    with target.staged() as stage:
        stage.put_json("results.json", {"format": BENCH_FORMAT, **data})
        stage.put_text("results.md", markdown(data) + "\n")
        names = ["results.json", "results.md", *(plots(data, stage) if with_plots else [])]
    return [target.given / name for name in names]


def write_decode_outputs(data: dict, target: Target, with_plots: bool = True) -> list[Path]:
    """decode.json, decode.md and decode.png, the same way."""
    with target.staged() as stage:
        stage.put_json("decode.json", {"format": BENCH_FORMAT, **data})
        stage.put_text("decode.md", decode_markdown(data) + "\n")
        names = ["decode.json", "decode.md", *(decode_plots(data, stage) if with_plots else [])]
    return [target.given / name for name in names]


def _save(fig, stage: StagedDir, name: str) -> str:
    stage.write_with(name, lambda path: fig.savefig(path, dpi=110))
    return name


def plots(data: dict, stage: StagedDir) -> list[str]:
    import matplotlib  # noqa: PLC0415 - optional (plot extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after the backend is chosen

    written = []
    rows = data["results"]
    backends = sorted({b for r in rows for b in r["backends"]})
    capacities = sorted({r["capacity"] for r in rows}, key=lambda c: Fraction(*parse_capacity(c)))  # "1/8" < "1/4"
    fig, axes = plt.subplots(1, len(capacities), figsize=(5 * len(capacities), 4), squeeze=False)
    for ax, cap in zip(axes[0], capacities):
        sub = sorted(
            (r for r in rows if r["capacity"] == cap and r["batch"] == rows[0]["batch"]), key=lambda r: r["seq"]
        )
        seqs = [r["seq"] for r in sub]
        ax.plot(seqs, [r["ideal_speedup"] for r in sub], "k--", label="ideal (FLOPs)")
        for b in backends:
            ax.plot(seqs, [r["backends"][b]["achieved_speedup"] for r in sub], "o-", label=b)
        ax.set_xscale("log", base=2)
        ax.set_title(f"capacity {cap}, batch {rows[0]['batch']}")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("MoD speedup over dense twin")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.legend(fontsize=8)
    fig.suptitle(f"{data['model']}: MoD vs dense, median latency ratio")
    fig.tight_layout()
    written.append(_save(fig, stage, "speedup_vs_seq.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    labels, medians, p95, p99 = [], [], [], []
    for r in rows:
        for b, v in r["backends"].items():
            for kind in ("mod", "dense"):
                labels.append(f"{b}\n{kind} {r['capacity']} T={r['seq']}")
                medians.append(v[kind]["median_ms"])
                p95.append(v[kind]["p95_ms"])
                p99.append(v[kind]["p99_ms"])
    x = range(len(labels))
    ax.bar(x, p99, color="tab:red", alpha=0.3, label="p99")
    ax.bar(x, p95, color="tab:orange", alpha=0.5, label="p95")
    ax.bar(x, medians, color="tab:blue", label="median")
    ax.set_xticks(list(x), labels, rotation=90, fontsize=6)
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, stage, "latency_percentiles.png"))
    plt.close(fig)
    return written


def decode_markdown(data: dict) -> str:
    m = data["machine"]
    lines = [
        f"machine: copy bandwidth {m['bandwidth_gbps']:.1f} GB/s, decode-shaped GEMM {m['gemm_gflops']:.0f} GFLOP/s",
        "",
        "| B | prompt | candidate | per-token p50 / p95 / p99 (ms) | tokens/s | MoD/dense | ideal | achieved/ideal | "
        "take rate per routed block | KV bytes/token MoD/dense |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in data["results"]:
        take = ", ".join(f"{k}: {100 * v:.1f}%" for k, v in row["take_rates"].items())
        for name, c in row["candidates"].items():
            backend, kind = name.split("/")
            cells = ["", "", "", "", ""]
            if kind == "mod":
                cells = [
                    f"{row[f'{backend}_speedup']:.2f}x",
                    f"{row['ideal_speedup']:.2f}x",
                    f"{row[f'{backend}_achieved_over_ideal']:.2f}",
                    take,
                    f"{row['kv_ratio']:.3f}",
                ]
            latency = f"{c['p50_ms']:.2f} / {c['p95_ms']:.2f} / {c['p99_ms']:.2f}"
            lines.append(
                f"| {row['batch']} | {row['prompt']} | {name} | {latency} | {c['tokens_per_s']:.0f} | "
                + " | ".join(cells)
                + " |"
            )
        if "onnxruntime_over_torch_mod" in row:
            ratio = row["onnxruntime_over_torch_mod"]
            lines.append(
                f"| {row['batch']} | {row['prompt']} | ONNX Runtime over PyTorch eager (MoD) | | {ratio:.2f}x | | | | | |"
            )
    return "\n".join(lines)


def decode_plots(data: dict, stage: StagedDir) -> list[str]:
    """Per-token latency percentiles per candidate, and MoD/dense speedup against batch with the roofline ideal."""
    import matplotlib  # noqa: PLC0415 - optional (plot extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after the backend is chosen

    rows = data["results"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    labels = [f"B={r['batch']} P={r['prompt']}\n{n}" for r in rows for n in r["candidates"]]
    for q, colour in (("p99_ms", "tab:red"), ("p95_ms", "tab:orange"), ("p50_ms", "tab:blue")):
        ax1.bar(range(len(labels)), [c[q] for r in rows for c in r["candidates"].values()], color=colour, label=q[:-3])
    ax1.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax1.set_yscale("log")
    ax1.set_ylabel("per-token decode latency (ms)")
    ax1.legend(fontsize=8)
    for prompt in sorted({r["prompt"] for r in rows}):
        sub = [r for r in rows if r["prompt"] == prompt]
        batches = [r["batch"] for r in sub]
        ax2.plot(batches, [r["ideal_speedup"] for r in sub], "k--", label=f"ideal (roofline), prompt {prompt}")
        ax2.plot(batches, [r["onnxruntime_speedup"] for r in sub], "o-", label=f"ONNX Runtime, prompt {prompt}")
    ax2.set_xscale("log", base=2)
    ax2.axhline(1.0, color="grey", lw=0.5)
    ax2.set_xlabel("batch")
    ax2.set_ylabel("MoD decode speedup over the dense twin")
    ax2.legend(fontsize=7)
    fig.suptitle(f"{data['model']}: decode, MoD vs dense")
    fig.tight_layout()
    name = _save(fig, stage, "decode.png")
    plt.close(fig)
    return [name]
