"""A backend added the way docs/architecture.md says: this package, and one BackendSpec in the registry (the test
adds it with monkeypatch). It is ONNX Runtime held to one intra-op thread: real sessions, a different backend name
and its own runtime model, so every reader of the registry has something real to run."""

from mod_export.backends.onnxrt.model import OrtModel
from mod_export.backends.onnxrt.runner import onnxrt_runner

NAME = "onnxruntime-1t"


def unavailable() -> str | None:
    return None


def runner(proto, name, extra_outputs=None, **session_options):
    return onnxrt_runner(proto, name, extra_outputs, **{**session_options, "threads": 1})


class SingleThreadModel(OrtModel):
    name = NAME

    def __init__(self, path, **options):
        super().__init__(path, **{**options, "threads": 1})


open_model = SingleThreadModel
