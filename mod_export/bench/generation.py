"""`mod-export bench MODEL --decode`: generation speed, MoD against its dense twin on the same runtime, and ONNX
Runtime against PyTorch eager-with-cache, side by side: every candidate is a stepper (mod_export.generation.loop)
fed the same tokens (teacher-forced), and the decode steps of all candidates are interleaved in a shuffled order
per step. Reports per-token p50/p95/p99, tokens/s, KV-cache bytes per token, and achieved against the roofline
ideal of mod_export.models.generation_roofline with this machine's measured bandwidth and GEMM rate."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from mod_export.backends.onnxrt.generation import OrtStepper
from mod_export.bench.models import SYNTHETIC, load_model
from mod_export.data.corpus import fixed_windows
from mod_export.exporter.generation_graphs import export_decode_forms
from mod_export.generation.loop import left_pad
from mod_export.models.causal import CausalRecord, causal_forward, routed_layers
from mod_export.models.generation import TorchStepper
from mod_export.models.generation_roofline import Machine, kv_bytes_per_token, step_time
from mod_export.progress import progress
from mod_export.validate.artifacts import evaluation_text

logger = logging.getLogger(__name__)

CALIBRATION_WINDOWS = (16, 512)  # (count, tokens) of held-out text that set a synthetic model's take rate


@dataclass
class DecodeSettings:
    batch: tuple[int, ...] = (1, 8, 32)
    prompt_lens: tuple[int, ...] = (128, 1024)
    new_tokens: int = 128
    capacity: str = "1/8"
    threads: int = 2
    torch_batches: tuple[int, ...] = (1,)  # PyTorch eager-with-cache is timed at these batch sizes only (slow)


def measure_machine(threads: int) -> dict:
    """Copy bandwidth (256 MiB, read + write) and a decode-shaped float32 GEMM rate ([32,512] x [512,2048])."""
    torch.set_num_threads(threads)
    src = np.ones(1 << 26, np.float32)
    dst = np.empty_like(src)
    copies = []
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(dst, src)
        copies.append(time.perf_counter() - start)
    a, b = torch.randn(32, 512), torch.randn(512, 2048)
    gemms = []
    for _ in range(50):
        start = time.perf_counter()
        torch.matmul(a, b)
        gemms.append(time.perf_counter() - start)
    return {
        "bandwidth_gbps": 2 * src.nbytes / float(np.median(copies)) / 1e9,
        "gemm_gflops": 2 * 32 * 512 * 2048 / float(np.median(gemms)) / 1e9,
    }


def calibrate_predictors(model, windows: torch.Tensor, rate: float) -> None:
    """Shift each causal predictor's bias so that `rate` of the windows' tokens take its block (synthetic weights
    would otherwise take about half of them)."""
    with torch.no_grad():
        for layer in routed_layers(model):
            record = CausalRecord()
            causal_forward(model, windows, record=record)
            model.blocks[layer].predictor.net[-1].bias -= float(np.quantile(record.decision[layer].numpy(), 1 - rate))


def decode_models(spec: str, settings: DecodeSettings, vocab_text: np.ndarray):
    """(MoD model, dense twin) for decoding: a synthetic spec gets causal predictors set to the capacity's rate."""
    model = load_model(spec, settings.capacity, causal_predictor=spec.startswith(SYNTHETIC))
    if spec.startswith(SYNTHETIC):
        num, den = model.config.capacity_fraction
        count, length = CALIBRATION_WINDOWS
        windows = fixed_windows(vocab_text, count, length).astype(np.int64) % model.config.vocab_size  # [16,512]
        windows = torch.from_numpy(windows)
        calibrate_predictors(model, windows, num / den)
    return model, model.dense_twin()


def _stats(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {
        "p50_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "steps": len(ms),
    }


def run_decode_bench(spec: str, settings: DecodeSettings, show_progress: bool = True) -> dict:
    torch.set_num_threads(settings.threads)
    text = evaluation_text()
    model, dense = decode_models(spec, settings, text)
    logger.info("exporting the decode graphs of the MoD model and of its dense twin ...")
    forms = {"mod": export_decode_forms(model, pair=False), "dense": export_decode_forms(dense, pair=False)}
    machine = measure_machine(settings.threads)
    rates = Machine(machine["bandwidth_gbps"] * 1e9, machine["gemm_gflops"] * 1e9)
    results = []
    configs = [(b, p) for p in settings.prompt_lens for b in settings.batch]
    rng = np.random.default_rng(0)
    for batch, prompt_len in progress(configs, desc="decode bench", enabled=show_progress):
        starts = rng.integers(0, len(text) - prompt_len - settings.new_tokens - 1, batch)
        rows = np.stack([text[s : s + prompt_len + settings.new_tokens] for s in starts]).astype(np.int64)
        rows %= model.config.vocab_size
        candidates = {
            "onnxruntime/mod": OrtStepper(forms["mod"].step, threads=settings.threads),
            "onnxruntime/dense": OrtStepper(forms["dense"].step, threads=settings.threads),
        }
        if batch in settings.torch_batches:
            candidates["torch/mod"], candidates["torch/dense"] = TorchStepper(model), TorchStepper(dense)
        row = _measure_steps(candidates, rows, prompt_len, settings, rng)
        _add_ideal_and_ratios(row, model.config, batch, prompt_len, settings, rates)
        logger.info(
            "decode B=%d prompt=%d: MoD/dense %.2fx (ideal %.2fx), take %s",
            batch,
            prompt_len,
            row.get("onnxruntime_speedup", 0),
            row["ideal_speedup"],
            ", ".join(f"{k}:{100 * v:.0f}%" for k, v in row["take_rates"].items()),
        )
        results.append(row)
    return {"model": spec, "settings": vars(settings), "machine": machine, "results": results}


def _measure_steps(candidates: dict, rows: np.ndarray, prompt_len: int, settings: DecodeSettings, rng) -> dict:
    """Prefill each candidate on the prompts rows[:, :prompt_len], then feed the same tokens rows[:, prompt_len:]
    to all, one step each in a random order per step. Returns the row: prefill times, per-step statistics and
    the MoD model's take rates."""
    batch = len(rows)
    ids, mask = left_pad([r[:prompt_len].tolist() for r in rows])
    fed = rows[:, prompt_len:]
    capacity = prompt_len + settings.new_tokens + 1
    prefill_s = {}
    for name, stepper in candidates.items():
        start = time.perf_counter()
        stepper.prefill(ids, mask, capacity)
        prefill_s[name] = time.perf_counter() - start
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    active = np.ones(batch, bool)
    names = list(candidates)
    for t in range(settings.new_tokens - 1):
        for i in rng.permutation(len(names)):
            start = time.perf_counter()
            candidates[names[i]].step(fed[:, t], active)
            seconds[names[i]].append(time.perf_counter() - start)
    mod_stepper = candidates["onnxruntime/mod"]
    fed_tokens = int(mask.sum()) + batch * (settings.new_tokens - 1)
    take = {layer: int(mod_stepper.lengths[layer].sum()) / fed_tokens for layer in mod_stepper.routed_layers}
    row = {
        "batch": batch,
        "prompt": prompt_len,
        "new_tokens": settings.new_tokens,
        "take_rates": take,
        "prefill_s": prefill_s,
        "candidates": {},
    }
    for name, values in seconds.items():
        stats = _stats(values)
        stats["tokens_per_s"] = batch / (stats["p50_ms"] / 1000)
        row["candidates"][name] = stats
    return row


def _add_ideal_and_ratios(row: dict, cfg, batch: int, prompt_len: int, settings: DecodeSettings, rates) -> None:
    """The roofline's step times at the measured take rates, and the ratios: MoD over dense per backend, achieved
    over ideal, ONNX Runtime over PyTorch."""
    take = row["take_rates"]
    context = prompt_len + settings.new_tokens / 2
    ideal = {kind: step_time(cfg, batch, context, take, rates, routing=kind == "mod") for kind in ("mod", "dense")}
    row["ideal_step_ms"] = {k: 1000 * v for k, v in ideal.items()}
    row["ideal_speedup"] = ideal["dense"] / ideal["mod"]
    row["kv_bytes_per_token"] = {"mod": kv_bytes_per_token(cfg, take), "dense": kv_bytes_per_token(cfg, take, False)}
    row["kv_ratio"] = row["kv_bytes_per_token"]["mod"] / row["kv_bytes_per_token"]["dense"]
    for backend in ("onnxruntime", "torch"):
        if f"{backend}/mod" in row["candidates"]:
            mod, den = row["candidates"][f"{backend}/mod"], row["candidates"][f"{backend}/dense"]
            row[f"{backend}_speedup"] = den["p50_ms"] / mod["p50_ms"]
            row[f"{backend}_achieved_over_ideal"] = row[f"{backend}_speedup"] / row["ideal_speedup"]
    if "torch/mod" in row["candidates"]:
        row["onnxruntime_over_torch_mod"] = (
            row["candidates"]["onnxruntime/mod"]["tokens_per_s"] / row["candidates"]["torch/mod"]["tokens_per_s"]
        )
