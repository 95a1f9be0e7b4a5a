"""Fixtures of the serving tests: the torch-free serving environment (tests/serving/environment.py), a Triton
repository exported from the session's trained model, and one real tritonserver on loopback free ports, stopped at
the end of the session whatever happens. Server tests skip with one reason where the bundled server cannot run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mod_export.backends.trt.builder import EngineSettings, ShapeRange
from mod_export.exporter.triton import TritonSettings
from tests.serving.processes import group_alive

MAX_SEQ = 256  # the export's --seq-len maximum: the scoring model refuses longer requests
MAX_BATCH = 16
GEN_SLOTS, GEN_CONTEXT = 16, 96  # the generation model: 16 requests in flight, prompt + new tokens <= 96
SLOW_MODEL = "mod_export_generate_slow"  # the same generation model, waiting SLOW_STEP_MS after each decode step
TEXT_MODEL = "mod_export_generate_text"  # the generation model of a model with a tokenizer.json
SLOW_STEP_MS = 50  # so a request of GEN_CONTEXT - 3 new tokens runs >= 4.6 s: a cancel always lands before its end


@pytest.fixture(scope="session")
def serving():
    from tests.serving.environment import serving_env

    return serving_env()


@pytest.fixture(scope="session")
def triton_export(trained, tmp_path_factory) -> Path:
    """`--target triton` of the trained model (no TensorRT here: ONNX Runtime and scoring models)."""
    from mod_export.pipeline import ExportJob, ExportOptions, run_export_job

    _, _, ckpt = trained
    out = tmp_path_factory.mktemp("triton") / "out"
    engine = EngineSettings(batch=ShapeRange(1, 4, MAX_BATCH), seq=ShapeRange(1, 64, MAX_SEQ), show_progress=False)
    # 2 ms of queue delay lets concurrent requests meet in one batch; 1 thread per instance on 2 cores.
    triton = TritonSettings(instances=1, queue_delay_us=2000, threads=1, slots=GEN_SLOTS, context=GEN_CONTEXT)
    run_export_job(
        ExportJob(Path(ckpt), out, ExportOptions(validate=False, target="triton", engine=engine, triton=triton))
    )
    return out


@pytest.fixture(scope="session")
def slow_repository(triton_export, tmp_path_factory) -> Path:
    """A second repository with SLOW_MODEL: the export's generation model, config renamed, with the
    debug_step_delay_ms parameter (mod_export.serving.inflight.Scheduler's step_delay). Cancellation tests use it:
    the server cannot finish a long request before the client's cancel arrives, however fast the host."""
    from mod_export.contract import TRITON_GENERATE_MODEL, TRITON_STEP_DELAY
    from mod_export.exporter.triton import generate_config

    repo = tmp_path_factory.mktemp("slow") / "model_repository"
    shutil.copytree(triton_export / "model_repository" / TRITON_GENERATE_MODEL, repo / SLOW_MODEL)
    settings = TritonSettings(threads=1, slots=GEN_SLOTS, context=GEN_CONTEXT, step_delay_ms=SLOW_STEP_MS)
    config = generate_config(settings)
    assert f'"{TRITON_STEP_DELAY}"' in config
    (repo / SLOW_MODEL / "config.pbtxt").write_text(
        config.replace(f'name: "{TRITON_GENERATE_MODEL}"', f'name: "{SLOW_MODEL}"', 1)
    )
    return repo


@pytest.fixture(scope="session")
def text_repository(corpus, tmp_path_factory) -> Path:
    """A third repository with TEXT_MODEL: the generation model of a Llama MoD model folder that brings its
    tokenizer.json (tests/tokenizer_model.py), exported with --target triton."""
    from mod_export.contract import TRITON_GENERATE_MODEL
    from mod_export.pipeline import ExportJob, ExportOptions, run_export_job
    from tests.tokenizer_model import model_folder, train_tokenizer

    where = tmp_path_factory.mktemp("text-model")
    folder = model_folder(where, train_tokenizer(corpus, where))
    triton = TritonSettings(threads=1, slots=4, context=GEN_CONTEXT)
    options = ExportOptions(validate=False, target="triton", triton=triton)
    run_export_job(ExportJob(folder, where / "out", options))
    repo = where / "model_repository"
    shutil.copytree(where / "out" / "model_repository" / TRITON_GENERATE_MODEL, repo / TEXT_MODEL)
    config = (repo / TEXT_MODEL / "config.pbtxt").read_text()
    (repo / TEXT_MODEL / "config.pbtxt").write_text(
        config.replace(f'name: "{TRITON_GENERATE_MODEL}"', f'name: "{TEXT_MODEL}"', 1)
    )
    return repo


@pytest.fixture(scope="session")
def server(serving, triton_export, slow_repository, text_repository, tmp_path_factory):
    """A running tritonserver serving triton_export's repository, the slow generation model and the text model
    (the session's one server)."""
    from mod_export.serving.bundled import BundledServer

    if serving.skip_reason:
        pytest.skip(f"the bundled tritonserver cannot run here: {serving.skip_reason}")
    log = tmp_path_factory.mktemp("tritonserver") / "server.log"
    repositories = [triton_export / "model_repository", slow_repository, text_repository]
    instance = BundledServer(repositories, serving.pytriton, serving.env, log=log)
    instance.start(timeout=120)
    try:
        yield instance
    finally:
        instance.stop()
        assert instance.process.poll() is not None, "tritonserver still running after stop()"
        assert not group_alive(instance.process.pid), "a Python-backend stub outlived tritonserver"
