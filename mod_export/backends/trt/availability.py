"""Is TensorRT usable here? Lazy import of the bindings and a driver-level GPU check, each failing with
one clear MissingDependencyError (exit code 4) instead of a traceback."""

from __future__ import annotations

import ctypes

from mod_export.errors import MissingDependencyError


def import_tensorrt():
    try:
        import tensorrt as trt  # noqa: PLC0415 - optional dependency, imported lazily
    except Exception as exc:  # ImportError, or OSError when libnvinfer is missing behind the bindings
        raise MissingDependencyError(
            f"TensorRT is not available ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'import failed'}); "
            "install it with `pip install 'mod-export[trt]'` (x86-64) or JetPack's python3-libnvinfer (Jetson)"
        ) from None
    return trt


def cuda_device_count() -> int:
    """Number of CUDA devices seen by the driver (0 when there is no driver)."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        return count.value if lib.cuDeviceGetCount(ctypes.byref(count)) == 0 else 0
    return 0


def require_gpu() -> None:
    if cuda_device_count() == 0:
        raise MissingDependencyError(
            "no NVIDIA GPU found (the CUDA driver reports no device); TensorRT engines need one"
        )


def tensorrt_version() -> str | None:
    try:
        return import_tensorrt().__version__
    except MissingDependencyError:
        return None


def unavailable() -> str | None:
    """Why TensorRT engines cannot run here (no TensorRT, no GPU), or None."""
    try:
        import_tensorrt()
        require_gpu()
    except MissingDependencyError as exc:
        return str(exc)
    return None
