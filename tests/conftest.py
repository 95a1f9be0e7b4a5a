"""Shared fixtures: one small MoD model trained on real text (stdlib sources), exported once per session."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

# Set before torch starts its OpenMP runtime here, and inherited by the xdist workers and the CLI subprocesses.
# Two pytest-xdist workers on two cores: one thread each; a plain run keeps two.
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")
# Idle OpenMP threads sleep instead of spinning: two workers share two cores, and one worker's threads spinning
# between parallel regions took the core the other needed (the suite took 522 s with spinning, 384 s without, on
# a fresh clone of 87c740e; training a seed fixture took 4x as long as alone).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402 - after the OpenMP settings
import torch  # noqa: E402

from tests.helpers import built_once  # noqa: E402

TRACE_CACHE_ENV = "MOD_EXPORT_TRACE_CACHE"  # mod_export.exporter.trace_cache.ENV_VAR (a test must not import it here)


def pytest_configure(config):
    """One trace cache for the whole run (docs/trace-cache.md): the same model exported by many tests
    is traced once; the xdist workers and the CLI subprocesses share it. tests/unit/test_trace_cache.py proves
    that a reused graph is the graph a fresh trace gives. MOD_EXPORT_TEST_TRACE_CACHE=0 runs without it."""
    if os.environ.get("MOD_EXPORT_TEST_TRACE_CACHE", "1") == "0":
        os.environ.pop(TRACE_CACHE_ENV, None)
        return
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "trace_cache" in workerinput:
        os.environ[TRACE_CACHE_ENV] = workerinput["trace_cache"]
        return
    config.mod_export_trace_cache = tempfile.mkdtemp(prefix="mod-export-trace-cache-")
    os.environ[TRACE_CACHE_ENV] = config.mod_export_trace_cache


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist: each worker gets the controller's trace cache."""
    folder = getattr(node.config, "mod_export_trace_cache", None)
    if folder is not None:
        node.workerinput["trace_cache"] = folder


def pytest_unconfigure(config):
    folder = getattr(config, "mod_export_trace_cache", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def work_unit(nodeid: str) -> str:
    """The unit one xdist worker runs whole: its test file (module fixtures are built once), and all of
    tests/serving/ as one unit (one serving environment and one tritonserver per run)."""
    path = nodeid.split("::", 1)[0]
    return "tests/serving/" if path.startswith("tests/serving/") else path


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n 2 --dist loadfile` (README) hands out work_unit()s. Done here, not with xdist_group marks: pytest 9.2
    no longer reads the node ids that `--dist loadgroup` rewrites, so marked groups were split across workers."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # units go out in the order of pytest_collection_modifyitems
    return WorkUnitScheduling(config, log)


# Units handed out first (each worker starts with two, then takes the next when it is done), longest first: the two
# longest need no shared trained model, so one worker starts on them while the other trains it for the units that
# need it. The rest follow by number of tests (xdist's own order). Only the order: nothing is skipped or merged.
FIRST_UNITS = (
    "tests/unit/test_model_sources.py",  # trains its own models
    "tests/unit/test_precision.py",  # the first to need `trained`/`exported`: its worker builds them
    "tests/unit/test_seeds.py",  # trains three seeds of its own
    "tests/unit/test_export.py",
    "tests/unit/test_bench.py",
    "tests/unit/test_trace_cache.py",
)


def _order_work_units(items: list) -> None:
    """Sort items by work unit (FIRST_UNITS, then the others with the most tests first); stable within a unit.
    Every worker computes the same order from the same collection."""
    counts: dict[str, int] = {}
    for item in items:
        counts[work_unit(item.nodeid)] = counts.get(work_unit(item.nodeid), 0) + 1

    def rank(item) -> tuple:
        unit = work_unit(item.nodeid)
        first = FIRST_UNITS.index(unit) if unit in FIRST_UNITS else len(FIRST_UNITS)
        return (first, -counts[unit], unit)

    items.sort(key=rank)


def pytest_collection_modifyitems(config, items):
    """Work units in the order the workers should take them (_order_work_units). Device tests skip with one
    clear reason each: `gpu` needs CUDA (a GPU PyTorch can use), `tensorrt` needs TensorRT as well. Kernel tests
    (tests/gpu/test_kernels.py) are `gpu` only, so a GPU machine without TensorRT runs them."""
    if hasattr(config, "workerinput"):  # an xdist worker: its collection is what the scheduler hands out
        _order_work_units(items)
    wanted = [item for item in items if "gpu" in item.keywords or "tensorrt" in item.keywords]
    if not wanted:
        return
    have_gpu = torch.cuda.is_available()
    have_trt = None
    for item in wanted:
        if not have_gpu:
            item.add_marker(
                pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA (torch.cuda.is_available() is False)")
            )
            continue
        if "tensorrt" not in item.keywords:
            continue
        if have_trt is None:
            try:
                import tensorrt  # noqa: F401  (probe only)

                have_trt = True
            except Exception:
                have_trt = False
        if not have_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT (the tensorrt module is not importable here)"))


@pytest.fixture(scope="session")
def corpus():
    from mod_export.data.corpus import load_stdlib_corpus

    return load_stdlib_corpus()


@pytest.fixture(scope="session")
def trained(corpus, tmp_path_factory):
    """(model, metrics, checkpoint path): the example model, briefly trained on standard-library text, once per
    test run (tests/helpers.built_once: shared by the xdist workers, each loading its own copy).

    MOD_EXPORT_TEST_SEED (default 0) trains another model: the suite must pass whatever model training produces on
    a machine, and running it with other seeds is how that is checked (docs/verification.md)."""
    from mod_export.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from mod_export.training.train import TrainSettings, example_config, train_example

    seed = int(os.environ.get("MOD_EXPORT_TEST_SEED", "0"))

    def build(folder: Path) -> None:
        settings = TrainSettings(steps=120, batch=8, seq_len=128, config=example_config(), eval_windows=16, seed=seed)
        model, metrics = train_example(settings, corpus=corpus, show_progress=False)
        folder.mkdir(parents=True)
        save_checkpoint(model, folder / "model.pt", metrics)

    path = built_once(tmp_path_factory, f"trained-seed{seed}", build) / "model.pt"
    return load_checkpoint(path), read_checkpoint(path)["metrics"], path


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """(report, out dir) of `--target onnx` on the trained model, validation included (once per test run)."""
    from mod_export.pipeline import ExportJob, run_export_job

    def build(folder: Path) -> None:
        report = run_export_job(ExportJob(Path(trained[2]), folder / "out"))
        (folder / "returned-report.json").write_text(json.dumps(report, default=str))

    copy = built_once(tmp_path_factory, "exported", build)
    return json.loads((copy / "returned-report.json").read_text()), copy / "out"


@pytest.fixture(scope="session")
def routing_model(trained, corpus):
    """The trained model with each causal predictor's bias shifted so that about 20% of held-out tokens take its
    block: decode then really takes and skips blocks (a briefly trained predictor rarely says "take")."""
    import copy

    import numpy as np

    from mod_export.data.corpus import fixed_windows, held_out_split
    from mod_export.models.causal import CausalRecord, causal_forward, routed_layers

    model = copy.deepcopy(trained[0]).eval()
    windows = torch.from_numpy(fixed_windows(held_out_split(corpus.held_out).calibration, 16, 128))
    with torch.no_grad():
        for layer in routed_layers(model):  # block by block: a shift changes the inputs of later blocks
            record = CausalRecord()
            causal_forward(model, windows, record=record)
            threshold = float(np.quantile(record.decision[layer].numpy(), 0.8))
            model.blocks[layer].predictor.net[-1].bias -= threshold
    return model
