"""What the benchmark ran on: CPU facts always; GPU, driver, clocks, TensorRT version and, on Jetson,
the power mode (nvpmodel) and one tegrastats sample when those tools exist. The GPU/Jetson branches have
never run (no GPU on the development machines); each tool is optional and failures are reported as text."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from mod_export.backends.trt.availability import tensorrt_version
from mod_export.versions import library_versions


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({type(exc).__name__})"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": library_versions(),
    }
    gpu = _run(
        [
            "nvidia-smi",
            "--query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.limit",
            "--format=csv,noheader",
        ]
    )
    info["gpu"] = gpu or "none (nvidia-smi not found)"
    info["tensorrt"] = tensorrt_version()
    if os.path.exists("/etc/nv_tegra_release"):  # Jetson
        info["jetson_release"] = open("/etc/nv_tegra_release").readline().strip()
        info["nvpmodel"] = _run(["nvpmodel", "-q"])
        info["tegrastats"] = _run(["timeout", "1.5", "tegrastats", "--interval", "500"], timeout=3.0)
    return info
