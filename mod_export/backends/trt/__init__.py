"""TensorRT: availability checks, the engine builder, the engine runner, generation engines and the runtime model
(imports TensorRT itself only when used)."""

from mod_export.backends.trt.availability import unavailable
from mod_export.backends.trt.model import TrtModel as open_model
from mod_export.backends.trt.runner import EngineRunner as runner

__all__ = ["open_model", "runner", "unavailable"]
