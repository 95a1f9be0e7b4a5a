"""ONNX Runtime: sessions of either ONNX form, the runner, generation steppers and the runtime model (torch-free)."""

from mod_export.backends.onnxrt.model import OrtModel as open_model
from mod_export.backends.onnxrt.runner import onnxrt_runner as runner

__all__ = ["open_model", "runner", "unavailable"]


def unavailable() -> str | None:
    """ONNX Runtime is a dependency of mod-export (and of mod-export-runtime): it always runs."""
    return None
