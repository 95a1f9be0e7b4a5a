"""Fixtures of the serving tests: the torch-free serving environment (tests/serving/environment.py), a Triton
repository exported from the session's trained model, and one real tritonserver on loopback free ports, stopped at
the end of the session whatever happens. Server tests skip with one reason where the bundled server cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest

from mod_export.backends.trt.builder import EngineSettings, ShapeRange
from mod_export.exporter.triton import TritonSettings

MAX_SEQ = 256  # the export's --seq-len maximum: the scoring model refuses longer requests
MAX_BATCH = 16
GEN_SLOTS, GEN_CONTEXT = 16, 96  # the generation model: 16 requests in flight, prompt + new tokens <= 96


@pytest.fixture(scope="session")
def serving():
    from tests.serving.environment import serving_env

    return serving_env()


@pytest.fixture(scope="session")
def triton_export(trained, tmp_path_factory) -> Path:
    """`--target triton` of the trained model (no TensorRT here: ONNX Runtime and scoring models)."""
    from mod_export.pipeline import OnnxJob, run_onnx_job

    _, _, ckpt = trained
    out = tmp_path_factory.mktemp("triton") / "out"
    engine = EngineSettings(batch=ShapeRange(1, 4, MAX_BATCH), seq=ShapeRange(1, 64, MAX_SEQ), show_progress=False)
    # 2 ms of queue delay lets concurrent requests meet in one batch; 1 thread per instance on 2 cores.
    triton = TritonSettings(instances=1, queue_delay_us=2000, threads=1, slots=GEN_SLOTS, context=GEN_CONTEXT)
    run_onnx_job(OnnxJob(Path(ckpt), out, validate=False, target="triton", engine=engine, triton=triton))
    return out


@pytest.fixture(scope="session")
def server(serving, triton_export, tmp_path_factory):
    """A running tritonserver serving triton_export's repository (the session's one server)."""
    from mod_export.serving.bundled import BundledServer

    if serving.skip_reason:
        pytest.skip(f"the bundled tritonserver cannot run here: {serving.skip_reason}")
    log = tmp_path_factory.mktemp("tritonserver") / "server.log"
    instance = BundledServer(triton_export / "model_repository", serving.pytriton, serving.env, log=log)
    instance.start(timeout=120)
    try:
        yield instance
    finally:
        instance.stop()
        assert instance.process.poll() is not None, "tritonserver still running after stop()"
