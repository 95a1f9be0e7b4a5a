"""Refuse, before allocating, a model whose parameters cannot fit in this machine's available memory."""

from __future__ import annotations

import os

from mod_export.errors import ConfigError

BYTES_PER_PARAMETER = 4  # float32


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
