"""`mod-export bench` and the FLOP model: runs end to end on a tiny model; the timing numbers themselves
are measured by the benchmark (benchmarks/RESULTS.md), never asserted here."""

from __future__ import annotations

import json

import pytest

from mod_export.bench.models import synthetic_config
from mod_export.bench.timing import measure_interleaved
from mod_export.errors import ModExportError
from mod_export.models.config import MoDConfig
from mod_export.models.flops import block_flops, forward_flops, ideal_speedup
from tests.helpers import run_cli


def test_flops_count_attention_quadratic_term_and_routing():
    cfg = MoDConfig(d_model=512, n_heads=8, n_layers=8, d_mlp=2048, capacity="1/8")
    assert (
        block_flops(2048, 512, 2048) - block_flops(1024, 512, 2048)
        > 2 * (block_flops(1024, 512, 2048) - block_flops(512, 512, 2048)) * 0.99
    )
    dense = forward_flops(cfg, 1, 1024, routing_enabled=False)
    mod = forward_flops(cfg, 1, 1024)
    assert dense["routing"] == 0 and mod["routing"] > 0
    assert dense["blocks"] == 8 * block_flops(1024, 512, 2048)
    assert mod["blocks"] == 4 * block_flops(1024, 512, 2048) + 4 * block_flops(128, 512, 2048)
    assert 1.7 < ideal_speedup(cfg, 1, 1024) < 2.0
    assert ideal_speedup(cfg, 1, 4096) > ideal_speedup(cfg, 1, 256)  # the quadratic term favours MoD at long T
    assert ideal_speedup(cfg.replace(capacity="1/2"), 1, 1024) < ideal_speedup(cfg, 1, 1024)


def test_interleaved_measurement_runs_every_candidate_each_round():
    calls = []
    stats = measure_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=7, warmup=1)
    assert calls.count("a") == calls.count("b") == 8
    assert {s.name for s in stats.values()} == {"a", "b"} and all(len(s.samples_ms) == 7 for s in stats.values())
    assert all(s.median <= s.p95 <= s.p99 for s in stats.values())


def test_synthetic_spec_parsing():
    cfg = synthetic_config("synthetic:512x8")
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_mlp) == (512, 8, 8, 2048)
    with pytest.raises(ModExportError, match="synthetic:WIDTHxLAYERS"):
        synthetic_config("synthetic:big")


def test_bench_cli_end_to_end_lists_unavailable_backends(tmp_path):
    out = tmp_path / "bench"
    proc = run_cli(
        "bench",
        "synthetic:64x2",
        "--seq-lens",
        "32,48",
        "--capacities",
        "1/8,1/2",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--backends",
        "torch,onnxruntime,onnxruntime-plugin,tensorrt",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "results.json").read_text())
    assert len(data["results"]) == 4
    assert "tensorrt" in data["not_run"] and "not run: tensorrt" in proc.stdout
    for row in data["results"]:
        assert set(row["backends"]) == {"torch", "onnxruntime", "onnxruntime-plugin"}
        assert 0 <= row["ort_profile"]["routing_ops_share"] < 1
        assert row["parity"]["passed"] and set(row["parity"]) == {"onnxruntime", "onnxruntime-plugin", "passed"}
        assert set(row["router_health"]["layers"]) == {"0"}  # synthetic:64x2 routes block 1
        for r in row["backends"].values():
            assert r["mod"]["median_ms"] > 0 and r["achieved_over_ideal"] > 0
            # paired = median over rounds of that round's dense/MoD ratio; same sample count as the medians
            assert r["paired_over_ideal"] > 0 and r["mod"]["repeats"] == r["dense"]["repeats"] == 2
    assert data["settings"]["spinning"] is False
    assert (
        data["thread_policy"]["omp_wait_policy"] == "PASSIVE"
        and not data["thread_policy"]["torch_loaded_before_policy"]
    )
    assert (out / "speedup_vs_seq.png").stat().st_size > 1000 and (out / "latency_percentiles.png").is_file()
    assert data["device"]["cores"] and data["device"]["versions"]["onnxruntime"]
    assert "router health, capacity 1/8" in proc.stdout and "parity: forced err, flips, errors" in proc.stdout


def test_bench_rejects_bad_arguments():
    for args in (["--capacities", "0.125"], ["--seq-lens", "0"], ["--backends", "tflite"]):
        proc = run_cli("bench", "synthetic:64x2", *args)
        assert proc.returncode == 1 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_decode_bench_end_to_end(tmp_path):
    out = tmp_path / "decode"
    proc = run_cli(
        "bench",
        "synthetic:64x2",
        "--decode",
        "--batch",
        "1,2",
        "--prompt-lens",
        "8",
        "--new-tokens",
        "6",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "decode.json").read_text())
    assert [(r["batch"], r["prompt"]) for r in data["results"]] == [(1, 8), (2, 8)]
    first = data["results"][0]
    assert set(first["candidates"]) == {"onnxruntime/mod", "onnxruntime/dense", "torch/mod", "torch/dense"}
    assert set(data["results"][1]["candidates"]) == {"onnxruntime/mod", "onnxruntime/dense"}  # torch at batch 1 only
    for row in data["results"]:
        assert row["ideal_speedup"] >= 1.0 and 0 < row["kv_ratio"] <= 1.0
        assert all(c["steps"] == 5 and c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"] for c in row["candidates"].values())
        assert set(row["take_rates"]) == {"1"} or set(row["take_rates"]) == {1}
    assert data["machine"]["bandwidth_gbps"] > 0 and (out / "decode.png").stat().st_size > 1000
    assert "ONNX Runtime over PyTorch eager (MoD)" in proc.stdout


def test_generation_roofline_favours_mod_less_as_the_batch_grows():
    from mod_export.models.generation_roofline import Machine, kv_bytes_per_token, step_time

    cfg = MoDConfig(d_model=512, n_heads=8, n_layers=8, d_mlp=2048)
    machine = Machine(bandwidth=20e9, gemm_rate=100e9)
    take = {layer: 0.125 for layer in cfg.routed}
    speedups = [
        step_time(cfg, b, 256, take, machine, False) / step_time(cfg, b, 256, take, machine) for b in (1, 8, 32)
    ]
    assert 1.6 < speedups[0] < 2.0 and speedups[0] > speedups[1] > speedups[2] >= 1.0
    assert kv_bytes_per_token(cfg, take) / kv_bytes_per_token(cfg, take, False) == pytest.approx((4 + 4 * 0.125) / 8)
