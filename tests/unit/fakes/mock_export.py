"""The export job on the mock TensorRT (tests/unit/fakes/mock_tensorrt.py, installed by the tests' mock_tensorrt
fixture): a stand-in plugin library file and one CUDA device, no GPU."""

from __future__ import annotations

from pathlib import Path


def export_on_mock_tensorrt(monkeypatch, ckpt: Path, out: Path, library: Path, **options) -> dict:
    """run_export_job(ckpt -> out) with validation off and engines built without a progress bar; `options` are
    ExportOptions fields (target, decode, engine, ...). Returns the report."""
    from mod_export.backends.trt.builder import EngineSettings
    from mod_export.pipeline import ExportJob, ExportOptions, run_export_job

    if not library.is_file():
        library.write_bytes(b"\x7fELF mock")
    monkeypatch.setattr("mod_export.backends.trt.availability.cuda_device_count", lambda: 1)
    options.setdefault("engine", EngineSettings(show_progress=False))
    return run_export_job(ExportJob(ckpt, out, ExportOptions(validate=False, plugin_library=library, **options)))
