"""The Triton repository against a real tritonserver (the nvidia-pytriton wheel's binary, Python backend), on
loopback free ports, in a torch-free serving environment with numpy < 2; and the runtime in that environment."""

from __future__ import annotations

import json
import subprocess
import textwrap
import threading

import numpy as np

from mod_export.contract import TRITON_GENERATE_MODEL, TRITON_ONNX_MODEL, TRITON_SCORE_MODEL
from mod_export.runtime import Session
from tests.serving.client import client, score
from tests.serving.conftest import MAX_BATCH, MAX_SEQ, SLOW_MODEL, TEXT_MODEL
from tests.unit.test_trt_and_runtime import check_triton_config

MISSING_BACKEND = "unable to find backend library"  # the wheel ships the Python backend only

TORCH_FREE_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    import numpy as np
    assert importlib.util.find_spec("torch") is None, "torch is installed in the serving environment"
    from mod_export.errors import InputError, MissingDependencyError
    from mod_export.runtime import Session
    import mod_export
    data = np.load(sys.argv[2])
    result = {"numpy": np.__version__, "max_abs_diff": {}, "idx_equal": {}}
    for form in ("portable", "plugin"):
        session = Session(sys.argv[1], form=form)
        logits, idx = session.run_with_routing(data["ids"], data["mask"])
        result["max_abs_diff"][form] = float(np.abs(logits - data[form]).max())
        result["idx_equal"][form] = all(np.array_equal(a, data[f"{form}_idx{i}"]) for i, a in enumerate(idx))
    session = Session(sys.argv[1])
    prompts = json.loads(str(data["prompts"]))
    result["greedy"] = session.generate(prompts, max_new_tokens=16).tokens
    result["sampled"] = session.generate(prompts[0], max_new_tokens=16, temperature=0.9, top_k=40, seed=3).tokens
    result["streamed"] = [int(e.tokens[0]) for e in session.stream(prompts[0], max_new_tokens=8)]
    try:
        session.run(np.full((1, 4), 10**6, np.int64))
    except InputError as exc:
        result["bad_input"] = str(exc)
    try:
        mod_export.load_checkpoint("model.pt")
    except MissingDependencyError as exc:
        result["load_checkpoint"] = str(exc)
    result["torch_loaded"] = "torch" in sys.modules
    open(sys.argv[3], "w").write(json.dumps(result))
    """
)


def test_runtime_runs_without_torch(serving, exported, tmp_path):
    """A fresh venv with the mod-export-runtime wheel and its dependencies only: no torch, numpy < 2; both forms
    (the plugin form through its reference functions) give this process's logits and routing, and generate() /
    stream() give this process's tokens (greedy and sampled)."""
    _, out = exported
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 256, (3, 77)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, :20] = 0
    prompts = [[int(t) for t in rng.integers(0, 256, n)] for n in (5, 23, 12)]
    expected = {"ids": ids, "mask": mask, "prompts": np.array(json.dumps(prompts))}
    for form in ("portable", "plugin"):
        logits, idx = Session(out, form=form).run_with_routing(ids, mask)
        expected[form] = logits
        expected.update({f"{form}_idx{i}": a for i, a in enumerate(idx)})
    local = Session(out)
    greedy = local.generate(prompts, max_new_tokens=16).tokens
    sampled = local.generate(prompts[0], max_new_tokens=16, temperature=0.9, top_k=40, seed=3).tokens
    np.savez(tmp_path / "expected.npz", **expected)
    proc = subprocess.run(
        [
            str(serving.python),
            "-c",
            TORCH_FREE_SCRIPT,
            str(out),
            str(tmp_path / "expected.npz"),
            str(tmp_path / "got.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "got.json").read_text())
    assert result["numpy"].startswith("1."), result  # the serving pin; this process has numpy 2
    assert result["max_abs_diff"] == {"portable": 0.0, "plugin": 0.0}, result  # same ONNX Runtime: bit-identical
    assert result["idx_equal"] == {"portable": True, "plugin": True}
    assert result["greedy"] == greedy and result["sampled"] == sampled, result  # generate() token for token
    assert result["streamed"] == greedy[0][:8]
    assert "token ids in [0, 256)" in result["bad_input"]
    assert "needs the exporter" in result["load_checkpoint"]
    assert result["torch_loaded"] is False


def test_every_loadable_model_is_ready(server, triton_export):
    index = {m["name"]: m for m in server.models()}
    exported = {TRITON_ONNX_MODEL, TRITON_SCORE_MODEL, TRITON_GENERATE_MODEL}  # no engine without TensorRT
    assert set(index) == exported | {SLOW_MODEL, TEXT_MODEL}  # and the tests' two generation models (conftest)
    for name in (TRITON_SCORE_MODEL, TRITON_GENERATE_MODEL, SLOW_MODEL, TEXT_MODEL):  # Python-backend models load
        assert index[name]["state"] == "READY" and server.model_ready(name), index[name]
    for model in index.values():  # anything not READY is so only for a backend the wheel does not ship
        assert model["state"] == "READY" or MISSING_BACKEND in model.get("reason", ""), model
    repo = triton_export / "model_repository"
    check_triton_config(
        repo / TRITON_ONNX_MODEL / "config.pbtxt", triton_export / "model.onnx", MAX_BATCH, backend="onnxruntime"
    )
    check_triton_config(
        repo / TRITON_SCORE_MODEL / "config.pbtxt", triton_export / "model.onnx", MAX_BATCH, backend="python"
    )
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    generate = text_format.Parse((repo / TRITON_GENERATE_MODEL / "config.pbtxt").read_text(), mc.ModelConfig())
    assert generate.model_transaction_policy.decoupled and generate.backend == "python"


def test_scoring_equals_session_run(server, triton_export):
    """Requests of several shapes, with and without a mask: the served logits are Session.run's, bit for bit."""
    local = Session(triton_export / "model_repository" / TRITON_SCORE_MODEL / "1", threads=1)
    rng = np.random.default_rng(11)
    conn = client(server)
    worst = 0.0
    for rows, length, padded in ((1, 64, 0), (3, 64, 10), (2, 100, 0), (1, 1, 0), (1, MAX_SEQ, 5), (MAX_BATCH, 8, 3)):
        ids = rng.integers(0, 256, (rows, length)).astype(np.int64)
        mask = np.ones_like(ids)
        mask[0, :padded] = 0
        for sent_mask in (mask, None):
            got = score(conn, ids, sent_mask)
            want = local.run(ids, sent_mask)
            assert got.shape == want.shape == (rows, length, 256)
            worst = max(worst, float(np.abs(got - want).max()))
    assert worst == 0.0, f"max |served - Session.run| = {worst}"


def test_batches_are_merged_and_equal_alone(server, triton_export):
    """8 threads x 6 requests of one length: Triton's statistics show fewer executions than inferences, and every
    response equals Session.run of that request alone (merged rows are independent)."""
    local = Session(triton_export / "model_repository" / TRITON_SCORE_MODEL / "1", threads=1)
    rng = np.random.default_rng(5)
    requests = [rng.integers(0, 256, (1, 48)).astype(np.int64) for _ in range(48)]
    before = server.statistics(TRITON_SCORE_MODEL)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        conn = client(server)  # one client per thread
        try:
            for i in range(offset, len(requests), 8):
                results[i] = score(conn, requests[i])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == len(requests), errors[:1]
    after = server.statistics(TRITON_SCORE_MODEL)
    inferences = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert inferences == len(requests) and executions < inferences, (inferences, executions)
    assert any(int(b["batch_size"]) > 1 for b in after["batch_stats"]), after["batch_stats"]
    worst = max(float(np.abs(results[i] - local.run(r)).max()) for i, r in enumerate(requests))
    assert worst <= 1e-6, f"max |merged - alone| = {worst}"
