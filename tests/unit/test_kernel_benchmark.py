"""benchmarks/kernels.py without a GPU: the bytes accounting against hand-computed values, the dry run, the
RESULTS.md section writer, and the one-line exit 4 where there is no GPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("kernels_benchmark", ROOT / "benchmarks" / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def totals(bench, shape, dtype):
    return {op: sum(bench.bytes_moved(op, shape, dtype).values()) for op in bench.OPS}


def test_bytes_of_the_readme_shape_by_hand(bench):
    B, T, D, k = 8, 4096, 4096, 512
    shape = bench.Shape(B, T, D, 1, 8)
    assert shape.k == k
    fp16 = totals(bench, shape, "float16")
    assert fp16["select"] == 4 * B * T * 2 + 4 * B * k * 2 == 294_912  # scores + mask read, idx + s_sel written
    assert fp16["gather"] == 4 * B * k + 2 * (2 * B * k * D) == 67_125_248  # idx, k rows read and written
    assert fp16["topk_gather"] == 294_912 + 67_125_248
    assert fp16["scatter"] == 2 * (2 * B * T * D) + 8 * B * k + 3 * (2 * B * k * D) == 637_566_976
    assert fp16["scatter_inplace"] == 8 * B * k + 3 * (2 * B * k * D) == 100_696_064
    fp32 = totals(bench, shape, "float32")
    assert fp32["gather"] == 4 * B * k + 2 * (4 * B * k * D) == 134_234_112
    assert fp32["scatter"] == 1_275_101_184
    assert fp32["select"] == fp16["select"], "scores, mask, idx and s_sel do not depend on x's dtype"


def test_bytes_of_a_small_odd_shape_by_hand(bench):
    shape = bench.Shape(2, 10, 3, 1, 4)  # k = ceil(10/4) = 3
    assert shape.k == 3
    assert totals(bench, shape, "bfloat16") == {
        "select": 160 + 48,  # scores + mask 4*2*10*2, idx + s_sel 4*2*3*2
        "gather": 24 + 36 + 36,  # idx 4*2*3, rows read 2*2*3*3, rows written 2*2*3*3
        "topk_gather": 208 + 24 + 72,
        "scatter": 240 + 48 + 108,  # copy 2*(2*2*10*3), idx + s_sel 8*2*3, x_sel + y_sel + rows 3*36
        "scatter_inplace": 48 + 108,
    }


def test_the_readmes_show_the_benchmarked_shapes_and_their_bytes(bench):
    topk = (ROOT / "plugins" / "topkGatherPlugin" / "README.md").read_text()
    scatter = (ROOT / "plugins" / "scatterPlugin" / "README.md").read_text()
    for shape in bench.parse_shapes(bench.DEFAULT_SHAPES, "1/8"):
        title = f"B={shape.B}, T={shape.T}, D={shape.D}, k={shape.k}"
        assert title in topk and title in scatter, title
        for dtype in ("float16", "float32"):
            t = totals(bench, shape, dtype)
            assert f"**{t['topk_gather'] / 1e6:.1f} MB**" in topk, (title, dtype)
            assert f"**{t['scatter'] / 1e6:.1f} MB**" in scatter, (title, dtype)


def test_dry_run_prints_every_op_and_needs_no_gpu(bench, capsys):
    assert bench.main(["--dry-run", "--shapes", "2x10x3", "--capacity", "1/4", "--dtypes", "bfloat16"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2x10x3 k=3 bfloat16:"
    assert [line.split()[0] for line in out[1:]] == list(bench.OPS)
    assert "396 bytes" in out[4] and "scatter" in out[4]


def test_without_a_gpu_one_line_and_exit_4(bench, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    results = tmp_path / "RESULTS.md"
    assert bench.main(["--results", str(results)]) == 4
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "needs a CUDA GPU" in captured.err
    assert not results.exists()


def test_the_results_section_is_replaced_not_duplicated(bench, tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nearlier text\n")
    row = {
        "op": "gather",
        "shape": "8x4096x4096",
        "k": 512,
        "dtype": "float16",
        "bytes": 67_125_248,
        "median_ms": 0.025,
        "p90_ms": 0.026,
        "gbps": 67_125_248 / 0.025e-3 / 1e9,
    }
    bench.write_section(path, bench.results_section([row], 4000.0, 1 << 30, "python benchmarks/kernels.py", "GPU X"))
    first = path.read_text()
    assert first.startswith("# Benchmark results\n\nearlier text\n\n" + bench.BEGIN)
    assert "| gather | 8x4096x4096 | 512 | float16 | 67.13 MB | 25.0 | 26.0 | 2685 | 67% |" in first
    path.write_text(first + "\nlater text\n")
    bench.write_section(path, bench.results_section([row], 2000.0, 1 << 30, "cmd", "GPU Y"))
    second = path.read_text()
    assert second.count(bench.BEGIN) == 1 and second.count(bench.END) == 1
    assert "GPU Y" in second and "GPU X" not in second and "134%" in second
    assert second.startswith("# Benchmark results\n\nearlier text\n\n") and second.endswith("\nlater text\n")


class FakeEvent:
    def __init__(self, enable_timing=False):
        self.t = 0.0

    def record(self):
        import time

        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return max((end.t - self.t) * 1e3, 1e-6)


class FakeKernels:
    """Stands in for KernelLibrary: every C call succeeds and does nothing."""

    def __init__(self, path):
        self.calls = []
        outer = self

        class Raw:
            def __getattr__(self, name):
                return lambda *args: outer.calls.append(name) or 0

        self.raw = Raw()

    def check(self, status, what):
        assert status == 0, what


def test_the_timing_path_runs_end_to_end_with_fakes(bench, capsys, monkeypatch, tmp_path):
    """The GPU-only code (events, flush, the C calls, the table and RESULTS.md) on the CPU: CUDA events,
    device queries and the library replaced by fakes, tensors on the CPU. Catches mistakes before a GPU."""
    import mod_export.kernel_abi

    monkeypatch.setattr(bench, "DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (1 << 26, 1 << 30))
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda i: type("P", (), {"L2_cache_size": 1 << 20, "major": 9, "minor": 0, "total_memory": 1 << 37})(),
    )
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: type("S", (), {"cuda_stream": 0})())
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    fakes = []
    monkeypatch.setattr(
        mod_export.kernel_abi, "KernelLibrary", lambda path: fakes.append(FakeKernels(path)) or fakes[-1]
    )
    results = tmp_path / "RESULTS.md"
    argv = [
        "--library",
        "fake.so",
        "--shapes",
        "2x64x16",
        "--dtypes",
        "float16,bfloat16",
        "--warmup",
        "1",
        "--repeats",
        "3",
        "--results",
        str(results),
    ]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("device-to-device copy:") and out[-1] == f"updated {results}"
    assert len(out) == 2 + len(bench.OPS) * 2
    calls = set(fakes[0].calls)
    assert {
        "mod_kernels_topk_select",
        "mod_kernels_gather_rows",
        "mod_kernels_topk_gather",
        "mod_kernels_scatter",
    } <= calls
    text = results.read_text()
    assert "Fake GPU (sm_90" in text and "--shapes 2x64x16" in text
    assert text.count("| 2x64x16 | 8 |") == len(bench.OPS) * 2


def test_decode_kernel_bytes_and_rooflines_by_hand(bench, capsys):
    orin, dense, routed = bench.DECODE_SHAPES
    assert (orin.B, orin.H, orin.S, orin.Dh, orin.n) == (1, 32, 4096, 128, 1)
    fp16 = {op: sum(bench.decode_bytes(op, orin, "float16").values()) for op in bench.DECODE_OPS}
    assert fp16["take_count"] == 1 + 4 + 4
    assert fp16["cache_append"] == 12 + 2 * (2 * 32 * 128) == 16_396  # entry read + slot written, rows + length
    assert fp16["cache_append_copy"] - fp16["cache_append"] == 2 * (2 * 32 * 4096 * 128) == 67_108_864
    h100 = sum(bench.decode_bytes("cache_append", routed, "float16").values())
    assert h100 == 8 * 12 + 8 * 2 * (2 * 32 * 128)
    assert sum(bench.decode_bytes("cache_append", dense, "float32").values()) == 64 * 12 + 64 * 2 * (4 * 32 * 128)
    # roofline: bytes / peak bandwidth; the copy dominates by three orders of magnitude at Orin's 204.8 GB/s
    assert bench.roofline_us(fp16["cache_append_copy"], 204.8e9) == pytest.approx(327.76, abs=0.01)
    assert bench.roofline_us(fp16["cache_append"], 204.8e9) == pytest.approx(0.0801, abs=1e-4)
    assert bench.main(["--decode", "--dry-run", "--dtypes", "float16"]) == 0
    out = capsys.readouterr().out
    assert "Jetson AGX Orin 64GB (LPDDR5) 204.8 GB/s" in out and "H100 SXM5 (HBM3) 3350.0 GB/s" in out
    assert out.count("cache_append_copy") == 3
