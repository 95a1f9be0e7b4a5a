"""One backend registry (mod_export/backends/registry.py): every reader takes its names and choices from it, and a
backend added as docs/architecture.md shows (its own package plus one BackendSpec) is picked up by the Session,
the bench's candidates and availability check, and the CLI's choices without any other edit."""

from __future__ import annotations

import numpy as np
import pytest

from mod_export.backends import registry
from mod_export.bench import runner as bench_runner
from mod_export.cli.main import main as cli_main
from mod_export.contract import PORTABLE_FILE, TARGETS
from mod_export.errors import UsageError
from mod_export.runtime import Session
from tests.unit.fakes import single_thread_backend

NEW = registry.BackendSpec(
    single_thread_backend.NAME,
    "tests.unit.fakes.single_thread_backend",
    "onnx",
    ("onnx",),
    True,
    PORTABLE_FILE,
    (".onnx",),
)


@pytest.fixture()
def with_new_backend(monkeypatch):
    monkeypatch.setitem(registry.BACKENDS, NEW.name, NEW)
    return NEW


def test_one_name_per_backend_and_every_target_served():
    assert list(registry.BACKENDS) == ["torch", "onnxruntime", "tensorrt"]
    assert registry.runtime_names() == ("auto", "onnxruntime", "tensorrt")
    assert bench_runner.candidates() == ("torch", "onnxruntime", "onnxruntime-plugin", "tensorrt")
    for target in TARGETS:
        assert registry.names_for_target(target), f"no backend runs what --target {target} writes"
    with pytest.raises(UsageError, match="backend must be one of torch, onnxruntime, tensorrt"):
        registry.get("pytorch")


def test_a_new_backend_is_one_package_and_one_registry_line(with_new_backend, exported, capsys):
    _, out = exported
    ids = np.random.default_rng(0).integers(0, 256, (2, 37)).astype(np.int64)  # a length never exported at
    with Session(out, backend="onnxruntime") as reference, Session(out, backend=NEW.name) as session:
        assert session.backend == NEW.name and session._model.threads == 1
        np.testing.assert_allclose(session.run(ids), reference.run(ids), rtol=0, atol=1e-5)
        assert session.generate([1, 2, 3], max_new_tokens=4).tokens == reference.generate([1, 2, 3], 4).tokens
    assert NEW.name in registry.runtime_names()
    assert {NEW.name, NEW.name + "-plugin"} <= set(bench_runner.candidates())
    assert bench_runner.check_backends((NEW.name, NEW.name + "-plugin")) == {}
    with pytest.raises(SystemExit):
        cli_main(["generate", "--help"])
    assert NEW.name in capsys.readouterr().out  # the CLI's --backend choices come from the registry


def test_a_runtime_backend_must_be_a_runtime_one(exported):
    _, out = exported
    with pytest.raises(UsageError, match="backend must be one of"):
        Session(out, backend="torch")
