"""Time the MoD CUDA kernels (top-k selection, gather, the fused MoDTopKGather, MoDScatter with and without
the copy of x) through their C ABI, libmod_export_kernels.so (no TensorRT), against the device's copy
bandwidth measured in the same run. GPU only: without one it prints one line and exits 4.

    python benchmarks/kernels.py [--library PATH] [--shapes 8x4096x4096,1x65536x1024] [--capacity 1/8]
                                 [--dtypes float16,float32] [--warmup 10] [--repeats 50] [--no-write]
    python benchmarks/kernels.py --dry-run      # any machine: the bytes accounting per shape, nothing timed
    python benchmarks/kernels.py --decode [--dry-run]   # the decode-step kernels (MoDTakeCount, MoDCacheAppend)

Timing: CUDA events around each repetition, after a warm-up; before each repetition a buffer twice the size
of L2 is zeroed, so no operand starts in cache and the GPU is busy while the host enqueues the kernel.
Reported: median and p90 per op, the minimum bytes the op must move (each operand read or written once),
and the achieved GB/s against the device-to-device copy bandwidth (read + write counted). On a GPU the table
replaces the section of benchmarks/RESULTS.md between the kernels markers (added at the end the first time).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from mod_export.contract import PEAK_BANDWIDTH
from mod_export.models.routing import capacity_k

# The shapes of the plugin READMEs (plugins/topkGatherPlugin/README.md, plugins/scatterPlugin/README.md).
DEFAULT_SHAPES = "8x4096x4096,1x65536x1024"
DEFAULT_DTYPES = "float16,float32"
ELEMENT_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
OPS = ("select", "gather", "topk_gather", "scatter", "scatter_inplace")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
DEVICE = "cuda"  # tests/unit/test_kernel_benchmark.py runs the timing path on the CPU with fakes
BEGIN = "<!-- benchmarks/kernels.py: begin -->"
END = "<!-- benchmarks/kernels.py: end -->"
NO_GPU = (
    "error: benchmarks/kernels.py needs a CUDA GPU (torch.cuda.is_available() is False here); "
    "`--dry-run` prints the bytes accounting without one"
)


@dataclass(frozen=True)
class Shape:
    B: int
    T: int
    D: int
    num: int
    den: int

    @property
    def k(self) -> int:
        return capacity_k(self.T, self.num, self.den)

    def __str__(self) -> str:
        return f"{self.B}x{self.T}x{self.D}"


def parse_shapes(text: str, capacity: str) -> list[Shape]:
    num, den = (int(v) for v in capacity.split("/"))
    shapes = []
    for item in text.split(","):
        B, T, D = (int(v) for v in item.lower().split("x"))
        shapes.append(Shape(B, T, D, num, den))
    return shapes


def bytes_moved(op: str, shape: Shape, dtype: str) -> dict[str, int]:
    """The minimum traffic of one op, per operand (bytes): each input read once, each output written once.
    The selection reads the scores and the int32 mask (the exporter always passes one) and writes idx and
    s_sel; gather reads idx and k rows of x and writes them; scatter copies x to out (read + write) unless
    out is x, then reads idx, s_sel, x_sel, y_sel and writes k rows."""
    B, T, D, k, e = shape.B, shape.T, shape.D, shape.k, ELEMENT_BYTES[dtype]
    select = {"scores": 4 * B * T, "mask": 4 * B * T, "idx": 4 * B * k, "s_sel": 4 * B * k}
    gather = {"idx": 4 * B * k, "x rows": e * B * k * D, "x_sel": e * B * k * D}
    update = {
        "idx": 4 * B * k,
        "s_sel": 4 * B * k,
        "x_sel": e * B * k * D,
        "y_sel": e * B * k * D,
        "out rows": e * B * k * D,
    }
    if op == "select":
        return select
    if op == "gather":
        return gather
    if op == "topk_gather":  # idx is written by the selection and read back by the gather
        return {**select, "idx (read back)": gather["idx"], "x rows": gather["x rows"], "x_sel": gather["x_sel"]}
    if op == "scatter":
        return {"x (copy read)": e * B * T * D, "out (copy write)": e * B * T * D, **update}
    if op == "scatter_inplace":
        return update
    raise ValueError(f"unknown op {op}")


def dry_run(shapes: list[Shape], dtypes: list[str]) -> None:
    for shape in shapes:
        for dtype in dtypes:
            print(f"{shape} k={shape.k} {dtype}:")
            for op in OPS:
                parts = bytes_moved(op, shape, dtype)
                detail = ", ".join(f"{name} {value:,}" for name, value in parts.items())
                print(f"  {op:<16} {sum(parts.values()):>15,} bytes ({sum(parts.values()) / 1e6:.2f} MB)  [{detail}]")


# ---------------------------------------------------------------- decode-step kernels (docs/generation.md)

DECODE_OPS = ("take_count", "cache_append", "cache_append_copy")


@dataclass(frozen=True)
class DecodeShape:
    """One decode step of one block: B rows, H heads, cache capacity S, head width Dh, n rows taking the block."""

    name: str
    B: int
    H: int
    S: int
    Dh: int
    n: int

    def __str__(self) -> str:
        return f"{self.B}x{self.H}x{self.S}x{self.Dh} n={self.n}"


# Orin: batch 1, a 7B-class layer (32 heads of 128, 4096 cached); H100: batch 64 at the same width. n = B is a
# dense block (or every row taking), n = B/8 a routed block at the paper's 12.5% capacity.
DECODE_SHAPES = (
    DecodeShape("Orin, batch 1, taking", 1, 32, 4096, 128, 1),
    DecodeShape("H100, batch 64, dense", 64, 32, 4096, 128, 64),
    DecodeShape("H100, batch 64, 1/8 take", 64, 32, 4096, 128, 8),
)


def decode_bytes(op: str, shape: DecodeShape, dtype: str) -> dict[str, int]:
    """Minimum traffic of one call. take_count reads the flags and writes the rows and the count; cache_append
    reads each listed row's length and its entry and writes it into the cache (in place, the plugin's aliased
    case); cache_append_copy adds the full cache copy TensorRT makes when it does not alias (plugins/common/
    modDecode.h cacheAppendBytes is the same formula)."""
    B, H, S, Dh, n, e = shape.B, shape.H, shape.S, shape.Dh, shape.n, ELEMENT_BYTES[dtype]
    if op == "take_count":
        return {"take": B, "rows": 4 * n, "count": 4}
    append = {"rows": 4 * n, "length": 8 * n, "entry": e * n * H * Dh, "cache slots": e * n * H * Dh}
    if op == "cache_append":
        return append
    if op == "cache_append_copy":
        return {"cache (copy read)": e * B * H * S * Dh, "out (copy write)": e * B * H * S * Dh, **append}
    raise ValueError(f"unknown decode op {op}")


def roofline_us(total_bytes: int, bandwidth: float) -> float:
    """Bytes over the peak bandwidth, in microseconds: the floor a call cannot beat (launch overhead aside)."""
    return total_bytes / bandwidth * 1e6


def decode_dry_run(dtypes: list[str]) -> None:
    devices = list(PEAK_BANDWIDTH.items())
    print("roofline = bytes / datasheet peak bandwidth: " + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in devices))
    for shape in DECODE_SHAPES:
        for dtype in dtypes:
            print(f"{shape.name}: {shape} {dtype}:")
            for op in DECODE_OPS:
                parts = decode_bytes(op, shape, dtype)
                total = sum(parts.values())
                times = "  ".join(f"{roofline_us(total, bw):9.3f} us ({name.split(' (')[0]})" for name, bw in devices)
                print(f"  {op:<18} {total:>13,} bytes  {times}")


def _decode_calls(lib, take, cache, entry, length, listed, n: int, out) -> dict:
    return {
        "take_count": lambda: lib.take_count(take),
        "cache_append": lambda: lib.cache_append(cache, entry, length, listed, n, out=cache),  # in place
        "cache_append_copy": lambda: lib.cache_append(cache, entry, length, listed, n, out=out),
    }


def measure_decode(lib, dtypes: list[str], warmup: int, repeats: int) -> list[dict]:
    import torch

    props = torch.cuda.get_device_properties(0)
    flush = torch.empty(2 * max(getattr(props, "L2_cache_size", 0), 64 << 20), dtype=torch.uint8, device=DEVICE)
    rows = []
    for shape in DECODE_SHAPES:
        B, H, S, Dh, n = shape.B, shape.H, shape.S, shape.Dh, shape.n
        take = torch.zeros(B, dtype=torch.bool, device=DEVICE)
        take[torch.randperm(B, device=DEVICE)[:n]] = True
        for dtype in dtypes:
            cache = torch.randn(B, H, S, Dh, device=DEVICE).to(getattr(torch, dtype))
            out = torch.empty_like(cache)
            entry = torch.randn(B, H, 1, Dh, device=DEVICE).to(cache.dtype)
            length = torch.randint(0, S - 1, (B,), device=DEVICE)
            listed, _ = lib.take_count(take)
            calls = _decode_calls(lib, take, cache, entry, length, listed, n, out)
            for op, run in calls.items():
                times = time_op(run, flush, warmup, repeats)
                rows.append(timing_row(op, shape, dtype, times, sum(decode_bytes(op, shape, dtype).values())))
    return rows


# ---------------------------------------------------------------- timing (GPU only)


def timing_row(op: str, shape, dtype: str, times: list[float], total_bytes: int) -> dict:
    """One result row: the op's median and p90 time (ms) and the bandwidth its bytes moved at."""
    median = _percentile(times, 0.5)
    return {
        "op": op,
        "shape": str(shape),
        "dtype": dtype,
        "bytes": total_bytes,
        "median_ms": median,
        "p90_ms": _percentile(times, 0.9),
        "gbps": total_bytes / (median * 1e-3) / 1e9,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_op(run, flush, warmup: int, repeats: int) -> list[float]:
    """Per-repetition milliseconds of run() between CUDA events, each after an L2-sized flush."""
    import torch

    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def copy_bandwidth(warmup: int, repeats: int) -> tuple[float, int]:
    """(GB/s, buffer bytes) of a device-to-device tensor copy, read + write counted."""
    import torch

    free, _ = torch.cuda.mem_get_info()
    size = min(1 << 30, free // 8)
    src = torch.empty(size, dtype=torch.uint8, device=DEVICE).fill_(1)
    dst = torch.empty_like(src)
    for _ in range(warmup):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return 2 * size / (_percentile(times, 0.5) * 1e-3) / 1e9, size


def kernel_calls(raw, t, shape: Shape, code: int, stream) -> dict:
    """op -> a call of the C ABI on the tensors in t (x, scores, mask, x_sel, idx, s_sel, y_sel, out, x_in_place)."""
    B, T, D, k = shape.B, shape.T, shape.D, shape.k

    def scatter(x, out):
        args = (t.idx, t.x_sel, t.y_sel, t.s_sel)
        return raw.mod_kernels_scatter(
            x.data_ptr(), code, *(a.data_ptr() for a in args), B, T, D, k, 1, out.data_ptr(), stream
        )

    return {
        "select": lambda: raw.mod_kernels_topk_select(
            t.scores.data_ptr(), t.mask.data_ptr(), B, T, k, t.idx.data_ptr(), t.s_sel.data_ptr(), stream
        ),
        "gather": lambda: raw.mod_kernels_gather_rows(
            t.x.data_ptr(), code, t.idx.data_ptr(), B, T, D, k, t.x_sel.data_ptr(), stream
        ),
        "topk_gather": lambda: raw.mod_kernels_topk_gather(
            t.x.data_ptr(),
            code,
            t.scores.data_ptr(),
            t.mask.data_ptr(),
            B,
            T,
            D,
            k,
            t.x_sel.data_ptr(),
            t.idx.data_ptr(),
            t.s_sel.data_ptr(),
            stream,
        ),
        "scatter": lambda: scatter(t.x, t.out),
        "scatter_inplace": lambda: scatter(t.x_in_place, t.x_in_place),
    }


def measure(lib, shapes: list[Shape], dtypes: list[str], warmup: int, repeats: int) -> list[dict]:
    import torch

    from mod_export.kernel_abi import DTYPE_CODES

    props = torch.cuda.get_device_properties(0)
    flush = torch.empty(2 * max(getattr(props, "L2_cache_size", 0), 64 << 20), dtype=torch.uint8, device=DEVICE)
    stream = torch.cuda.current_stream().cuda_stream or None
    raw = lib.raw
    rows = []
    for shape in shapes:
        B, T, D, k = shape.B, shape.T, shape.D, shape.k
        for dtype in dtypes:
            torch_dtype = getattr(torch, dtype)
            code = DTYPE_CODES[dtype]
            t = SimpleNamespace()  # the tensors the calls read (kernel_calls' docstring names them)
            t.x = torch.randn(B, T, D, device=DEVICE).to(torch_dtype)
            t.scores = torch.randn(B, T, device=DEVICE)
            t.mask = torch.ones(B, T, dtype=torch.int32, device=DEVICE)
            t.x_sel = torch.empty(B, k, D, dtype=torch_dtype, device=DEVICE)
            t.idx = torch.empty(B, k, dtype=torch.int32, device=DEVICE)
            t.s_sel = torch.empty(B, k, device=DEVICE)
            calls = kernel_calls(raw, t, shape, code, stream)
            lib.check(calls["topk_gather"](), "setup")  # a real selection for gather and scatter to use
            t.y_sel = (t.x_sel.float() * 1.5).to(torch_dtype)
            t.out = torch.empty_like(t.x)
            t.x_in_place = t.x.clone()
            for op in OPS:
                status: list[int] = []
                call = calls[op]
                times = time_op(lambda call=call, status=status: status.append(call()), flush, warmup, repeats)
                lib.check(max(status), op)
                total = sum(bytes_moved(op, shape, dtype).values())
                rows.append({**timing_row(op, shape, dtype, times, total), "k": k})
            del calls, t
            torch.cuda.empty_cache()
    return rows


def results_section(rows: list[dict], copy_gbps: float, copy_bytes: int, command: str, machine: str) -> str:
    lines = [
        BEGIN,
        "## CUDA kernels against the copy bandwidth (no TensorRT)",
        "",
        f"- Date: {datetime.date.today().isoformat()}. Machine: {machine}.",
        f"- Command: `{command}`",
        f"- Device-to-device copy, measured in the same run: {copy_gbps:.0f} GB/s "
        f"({copy_bytes >> 20} MiB buffer, read + write counted). Bytes: the minimum each op moves "
        "(benchmarks/kernels.py `bytes_moved`); L2 flushed before every repetition.",
        "",
        "| op | B x T x D | k | dtype | bytes moved | median (us) | p90 (us) | GB/s | of copy bandwidth |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['shape']} | {r['k']} | {r['dtype']} | {r['bytes'] / 1e6:.2f} MB | "
            f"{r['median_ms'] * 1e3:.1f} | {r['p90_ms'] * 1e3:.1f} | {r['gbps']:.0f} | "
            f"{100 * r['gbps'] / copy_gbps:.0f}% |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the kernels section of `path` (between BEGIN and END), or append it."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def machine_line() -> str:
    import platform

    import torch

    props = torch.cuda.get_device_properties(0)
    return (
        f"{torch.cuda.get_device_name(0)} (sm_{props.major}{props.minor}, {props.total_memory >> 30} GiB), "
        f"torch {torch.__version__}, CUDA runtime {torch.version.cuda}, {platform.machine()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--library", help="libmod_export_kernels.so (default: $MOD_EXPORT_KERNEL_LIBRARY or the build-plugins folder)"
    )
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"BxTxD list (default {DEFAULT_SHAPES})")
    parser.add_argument("--capacity", default="1/8", help="num/den (default 1/8)")
    parser.add_argument("--dtypes", default=DEFAULT_DTYPES, help=f"of x (default {DEFAULT_DTYPES})")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="print the bytes accounting; needs no GPU")
    parser.add_argument("--decode", action="store_true", help="the decode-step kernels (Orin and H100 shapes)")
    args = parser.parse_args(argv)
    shapes = parse_shapes(args.shapes, args.capacity)
    dtypes = args.dtypes.split(",")
    for dtype in dtypes:
        if dtype not in ELEMENT_BYTES:
            parser.error(f"unknown dtype {dtype} (float32, float16, bfloat16)")
    if args.dry_run:
        (decode_dry_run(dtypes) if args.decode else dry_run(shapes, dtypes))
        return 0

    import torch

    if not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 4
    from mod_export.errors import ModExportError
    from mod_export.kernel_abi import KernelLibrary
    from mod_export.plugin_build import kernel_library_path

    try:
        lib = KernelLibrary(args.library or kernel_library_path())
        copy_gbps, copy_bytes = copy_bandwidth(args.warmup, args.repeats)
        if args.decode:
            print(f"device-to-device copy: {copy_gbps:.0f} GB/s")
            for r in measure_decode(lib, dtypes, args.warmup, args.repeats):
                print(
                    f"{r['op']:<18} {r['shape']:>24} {r['dtype']:<8} {r['bytes'] / 1e6:9.3f} MB "
                    f"{r['median_ms'] * 1e3:9.1f} us  {r['gbps']:6.0f} GB/s"
                )
            return 0
        rows = measure(lib, shapes, dtypes, args.warmup, args.repeats)
    except ModExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"device-to-device copy: {copy_gbps:.0f} GB/s")
    for r in rows:
        print(
            f"{r['op']:<16} {r['shape']:>14} k={r['k']:<6} {r['dtype']:<8} {r['bytes'] / 1e6:9.2f} MB "
            f"{r['median_ms'] * 1e3:9.1f} us  {r['gbps']:6.0f} GB/s  {100 * r['gbps'] / copy_gbps:4.0f}% of copy"
        )
    if not args.no_write:
        command = "python benchmarks/kernels.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(args.results, results_section(rows, copy_gbps, copy_bytes, command.strip(), machine_line()))
        print(f"updated {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
