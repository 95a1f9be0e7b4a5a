"""Refuse, before allocating, work that cannot fit in this machine's available memory: a model whose
parameters do not fit, and an export whose predicted peak does not."""

from __future__ import annotations

import os

from mod_export.errors import ConfigError, MissingDependencyError

BYTES_PER_PARAMETER = 4  # float32
# An export's peak RSS as base + factor x float32 weight bytes, fitted with margin to benchmarks/scale.py runs of
# Llama-style MoD models (benchmarks/RESULTS.md, "Real-size export"): with validation 8.5-8.6 GB at 2.64 GB of
# weights and 12.3 GB at 4.41 GB (about 3 GB + 2.1x, since the validation sessions share one map of the
# weights); without, 1.0 GB at 0.23 GB and 6.2 GB at 2.64 GB (about 0.5 GB + 2.1x). Validation adds PyTorch
# and ONNX Runtime runs of every graph, one after another.
EXPORT_BASE_BYTES = {True: 3 << 30, False: 1 << 30}  # validate -> bytes
EXPORT_PEAK_FACTOR = {True: 2.5, False: 2.5}  # validate -> x float32 weight bytes


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else physical memory; None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None


def check_parameter_memory(parameters: int, what: str = "the model") -> None:
    need = parameters * BYTES_PER_PARAMETER
    have = available_memory_bytes()
    if have is not None and need > have:
        raise ConfigError(
            f"{what} has {parameters:,} parameters, about {need / 2**30:.1f} GiB in float32, but only "
            f"{have / 2**30:.1f} GiB of memory is available here"
        )


def predicted_export_peak(parameters: int, validate: bool) -> int:
    return int(EXPORT_BASE_BYTES[validate] + EXPORT_PEAK_FACTOR[validate] * parameters * BYTES_PER_PARAMETER)


def check_export_memory(parameters: int, validate: bool, what: str = "the model", loaded: bool = True) -> None:
    """Refuse (exit 4) an export whose predicted peak exceeds the available memory, before any slow work.
    loaded: the model's float32 weights are already in this process (not counted again)."""
    resident = parameters * BYTES_PER_PARAMETER if loaded else 0
    need, have = predicted_export_peak(parameters, validate), available_memory_bytes()
    if have is None or need - resident <= have:
        return
    have += resident  # state both figures for the whole job
    hint = ""
    if validate and predicted_export_peak(parameters, False) <= have:  # the same basis as `need`
        hint = f"; --no-validate needs about {predicted_export_peak(parameters, False) / 2**30:.1f} GiB"
    raise MissingDependencyError(
        f"exporting {what} ({parameters:,} parameters) needs about {need / 2**30:.1f} GiB of memory, but "
        f"{have / 2**30:.1f} GiB is available{hint} (--no-memory-check starts anyway)"
    )
