"""The serving code without a server: the scoring model's execute() with a stand-in for Triton's
triton_python_backend_utils, request merging, the repository's relocatability, the --force rule for Python's
bytecode cache, and the torch-free runtime's import graph and distribution."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mod_export.backends.onnxrt.generation import OrtStepper
from mod_export.backends.onnxrt.generation_slots import SlotDecoder
from mod_export.contract import TRITON_GENERATE_MODEL, TRITON_SCORE_MODEL, TRITON_STEP_DELAY
from mod_export.errors import InputError
from mod_export.exporter.artifacts import why_not_ours
from mod_export.exporter.generation_graphs import export_decode_forms
from mod_export.exporter.triton import TritonSettings, score_config, score_model_py, write_repository
from mod_export.generation.sampling import Sampling
from mod_export.runtime import Session
from mod_export.serving.batching import Request, merge
from mod_export.serving.generation import GenerationModel
from mod_export.serving.inflight import Job, Outbox, Scheduler
from mod_export.serving.scoring import ScoringModel
from tests.helpers import split_predictors

ROOT = Path(__file__).resolve().parents[2]


class FakeTensor:
    def __init__(self, name, array):
        self.name, self.array = name, np.asarray(array)

    def as_numpy(self):
        return self.array


class FakeError:
    INVALID_ARG, INTERNAL = "invalid", "internal"

    def __init__(self, message, code=None):
        self.message, self.code = message, code


class FakeResponse:
    def __init__(self, output_tensors=(), error=None):
        self.outputs, self.error = list(output_tensors), error


class FakeRequest:
    def __init__(self, **inputs):
        self.inputs = inputs
        self.sender = FakeSender()

    def get_response_sender(self):
        return self.sender


class FakeSender:
    """A decoupled request's response sender: records (response, flags); cancelled on demand."""

    def __init__(self):
        self.sent, self.cancel, self.done = [], False, threading.Event()

    def send(self, response=None, flags=0):
        self.sent.append((response, flags))
        if flags == FakePbUtils.TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self.done.set()

    def is_cancelled(self):
        return self.cancel

    def tokens(self) -> list[int]:
        return [int(r.outputs[0].array[0]) for r, _ in self.sent if r is not None and r.outputs]


class FakePbUtils:
    """What ScoringModel and GenerationModel use of triton_python_backend_utils."""

    Tensor, TritonError, InferenceResponse = FakeTensor, FakeError, FakeResponse
    TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return FakeTensor(name, request.inputs[name]) if name in request.inputs else None


class CountingSession:
    """Session.run with a call counter (the model must call it once per merged group)."""

    def __init__(self, session):
        self.session, self.calls = session, []

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, ids, mask=None):
        self.calls.append(ids.shape)
        return self.session.run(ids, mask)


@pytest.fixture(scope="module")
def repository(exported, tmp_path_factory):
    """A Triton repository written from the session's export (no TensorRT), then moved elsewhere."""
    _, out = exported
    root = tmp_path_factory.mktemp("repo")
    settings = TritonSettings(instances=2, queue_delay_us=1500, threads=1, max_seq_len=128, slots=4, context=64)
    manifest = json.loads((out / "manifest.json").read_text())
    idx, generation = manifest["routing_idx_tensors"], manifest["generation"]
    write_repository(
        root, 256, 8, out / "model.onnx", None, None, idx_names=idx, settings=settings, generation=generation
    )
    moved = tmp_path_factory.mktemp("copied") / "model_repository"
    shutil.move(root / "model_repository", moved)  # relative paths only: the copy serves as the original
    shutil.move(root / "TRITON.md", moved.parent / "TRITON.md")
    return moved


def scoring_model(repository: Path) -> ScoringModel:
    model = type("TritonPythonModel", (ScoringModel,), {"pb_utils": FakePbUtils, "exported_with": "0.1.0"})()
    config = (repository / TRITON_SCORE_MODEL / "config.pbtxt").read_text()
    parameters = {
        key: {"string_value": value}
        for key, value in (("form", "portable"), ("max_seq_len", "128"), ("intra_op_threads", "1"))
        if f'"{key}"' in config
    }
    args = {
        "model_config": json.dumps({"name": TRITON_SCORE_MODEL, "parameters": parameters}),
        "model_repository": str(repository / TRITON_SCORE_MODEL),
        "model_version": "1",
    }
    model.initialize(args)
    model.session = CountingSession(model.session)
    return model


def test_one_runtime_call_per_batch_and_bad_requests_answered_alone(repository):
    model = scoring_model(repository)
    rng = np.random.default_rng(0)
    a, b, c = (rng.integers(0, 256, (rows, 40)).astype(np.int64) for rows in (1, 3, 2))
    mask = np.ones_like(b)
    mask[1, :7] = 0
    requests = [
        FakeRequest(input_ids=a),
        FakeRequest(input_ids=a + 1000),  # outside the vocabulary
        FakeRequest(input_ids=b, attention_mask=mask),
        FakeRequest(attention_mask=np.ones_like(a)),  # no input_ids
        FakeRequest(input_ids=np.zeros((1, 129), np.int64)),  # longer than max_seq_len 128
        FakeRequest(input_ids=c),
    ]
    responses = model.execute(requests)
    assert model.session.calls == [(6, 40)]  # the three good requests, one call
    errors = {i: r.error.message for i, r in enumerate(responses) if r.error is not None}
    assert set(errors) == {1, 3, 4}
    assert "token ids in [0, 256)" in errors[1] and "missing required input input_ids" in errors[3]
    assert "more than this model's limit of 128" in errors[4]
    assert all(r.error.code == FakeError.INVALID_ARG for r in responses if r.error is not None)
    alone = Session(repository / TRITON_SCORE_MODEL / "1", threads=1)
    for i, (ids, m) in {0: (a, None), 2: (b, mask), 5: (c, None)}.items():
        (logits,) = responses[i].outputs
        assert logits.name == "logits" and logits.array.dtype == np.float32
        assert np.abs(logits.array - alone.run(ids, m)).max() <= 1e-6


def test_mixed_lengths_cost_one_call_per_length_never_per_request(repository):
    """Triton merges equal lengths only (ragged batching off); a batch that mixes them anyway is never padded,
    since padding changes MoD's k = ceil(T x capacity) and so the routing of the shorter request."""
    model = scoring_model(repository)
    requests = [FakeRequest(input_ids=np.full((1, n), 3, np.int64)) for n in (10, 20, 10, 20, 10)]
    responses = model.execute(requests)
    assert model.session.calls == [(3, 10), (2, 20)]
    assert [r.outputs[0].array.shape for r in responses] == [(1, n, 256) for n in (10, 20, 10, 20, 10)]


def test_merge_keeps_order_and_splits_back():
    reqs = [
        Request(i, np.full((rows, t), i, np.int64), np.ones((rows, t), np.int64))
        for i, (rows, t) in enumerate([(2, 5), (1, 7), (3, 5)])
    ]
    groups = merge(reqs)
    assert [g.input_ids.shape for g in groups] == [(5, 5), (1, 7)]
    parts = groups[0].split(np.arange(5 * 5 * 2).reshape(5, 5, 2))
    assert [(p, a.shape[0]) for p, a in parts] == [(0, 2), (2, 3)] and parts[1][1][0, 0, 0] == 20


def test_repository_layout_and_configs(repository):
    folder = repository / TRITON_SCORE_MODEL
    assert sorted(p.name for p in (folder / "1").iterdir()) == [
        "manifest.json",
        "model.onnx",
        "model.onnx.data",
        "model.py",
    ]
    generate = sorted(p.name for p in (repository / TRITON_GENERATE_MODEL / "1").iterdir())
    assert generate == [
        "manifest.json",
        "model.onnx",
        "model.onnx.data",  # once for both graphs
        "model.py",
        "model.step.onnx",
    ]
    gen_config = (repository / TRITON_GENERATE_MODEL / "config.pbtxt").read_text()
    assert "decoupled: true" in gen_config and '"max_slots" value: { string_value: "4" }' in gen_config
    config = (folder / "config.pbtxt").read_text()
    assert (
        "count: 2" in config and "max_queue_delay_microseconds: 1500" in config and "allow_ragged_batch" not in config
    )
    assert '"max_seq_len" value: { string_value: "128" }' in config
    assert "class TritonPythonModel(ScoringModel)" in score_model_py()
    assert str(repository.parent) not in config + (folder / "1" / "model.py").read_text()  # no absolute paths
    notes = (repository.parent / "TRITON.md").read_text()
    for needle in (
        "nvcr.io/nvidia/tritonserver",
        "JetPack",
        "nvidia-pytriton",
        "mod-export-runtime",
        "streaming generation (Python backend, decoupled)",
    ):
        assert needle in notes, needle
    assert score_config(256, 4, TritonSettings()).count("instance_group") == 1


def test_force_accepts_pythons_bytecode_of_a_listed_module_only(tmp_path):
    out = tmp_path / "out"
    (out / "m" / "__pycache__").mkdir(parents=True)
    (out / "m" / "model.py").write_text("x = 1\n")
    files = {"m/model.py": {"sha256": "-", "bytes": 6}}
    (out / "manifest.json").write_text(json.dumps({"format": "mod_export.manifest/1", "files": files}))
    (out / "m" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"pyc")
    assert why_not_ours(out) is None
    (out / "m" / "__pycache__" / "other.cpython-311.pyc").write_bytes(b"pyc")
    assert "other.cpython-311.pyc" in why_not_ours(out)


def runtime_closure() -> set[str]:
    import grimp

    from mod_export.backends.registry import BACKENDS

    graph = grimp.build_graph("mod_export")
    roots = {m for m in graph.modules if m == "mod_export.runtime" or m.startswith("mod_export.serving")}
    roots |= {spec.module for spec in BACKENDS.values() if spec.runtime}  # loaded by name (the registry)
    modules = set(roots)
    for root in roots:
        modules |= graph.find_upstream_modules(root)
    packages = {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 1)}
    return {f"{m}.__init__" if m in packages or m == "mod_export" else m for m in modules | packages}


def test_runtime_distribution_holds_exactly_the_runtime_import_closure():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    config = tomllib.loads((ROOT / "deploy" / "runtime" / "pyproject.toml").read_text())
    assert set(config["tool"]["setuptools"]["py-modules"]) == runtime_closure()
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.startswith("torch") for d in config["project"]["dependencies"])
    assert set(config["project"]["dependencies"]) <= set(main)  # the same pins as the full distribution


def test_importing_the_runtime_and_scoring_model_loads_no_torch():
    code = "import sys, mod_export.runtime, mod_export.serving.scoring, mod_export.serving.bundled; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_scheduler_joins_running_batches_and_matches_generate_alone(exported):
    """Requests submitted between decode steps join the running batch on free cache rows; each one's tokens are
    Session.generate's of that prompt alone (greedy and seeded sampling); a cancelled one frees its row."""
    _, out = exported
    session = Session(out, threads=1)
    rng = np.random.default_rng(3)
    prompts = [[int(t) for t in rng.integers(0, 256, int(n))] for n in rng.integers(1, 20, 6)]
    samplings = [Sampling(), Sampling(0.7, 30, 0.9, 5)] * 3
    got: dict[int, list[int]] = {i: [] for i in range(6)}
    scheduler = Scheduler(SlotDecoder(session.generation_stepper(), 3, 48))
    cancel = {"now": False}
    scheduler.submit(Job([1, 2, 3], 40, lambda *a: None, cancelled=lambda: cancel["now"]))
    for i, (prompt, sampling) in enumerate(zip(prompts, samplings)):
        scheduler.submit(Job(prompt, 12 + i, lambda t, k, f, i=i: got[i].append(t), sampling))
        scheduler.run_once()  # one step between arrivals: later requests join a running batch
        if i == 1:
            cancel["now"] = True
    while scheduler.run_once():
        pass
    for i, (prompt, sampling) in enumerate(zip(prompts, samplings)):
        want = session.generate(
            prompt, 12 + i, sampling.temperature, sampling.top_k, sampling.top_p, sampling.seed
        ).tokens[0]
        assert got[i] == want, i
    c = scheduler.counters
    assert c.joined >= 4 and c.cancelled == 1 and c.finished == 6 and c.row_steps > c.steps
    assert scheduler.busy_rows == 0 and not scheduler.decoder.busy.any()


def test_prompts_admitted_together_share_a_prefill_per_length_and_match_generate_alone(exported):
    """Waiting requests are admitted in one prefill run per prompt length (equal lengths: bitwise the rows of each
    prompt alone); every request's tokens are Session.generate's of its prompt alone, with tokens sent from the
    outbox's thread."""
    _, out = exported
    session = Session(out, threads=1)
    rng = np.random.default_rng(11)
    lengths = [7, 7, 7, 3, 7, 3, 12]  # three lengths: three prefill runs for seven requests
    prompts = [[int(t) for t in rng.integers(0, 256, n)] for n in lengths]
    got: dict[int, list[int]] = {i: [] for i in range(len(prompts))}
    outbox = Outbox()
    scheduler = Scheduler(SlotDecoder(session.generation_stepper(), 8, 48), outbox=outbox)
    for i, prompt in enumerate(prompts):
        scheduler.submit(Job(prompt, 10, lambda t, k, f, i=i: got[i].append(t)))
    while scheduler.run_once():
        pass
    outbox.close()
    assert scheduler.counters.prefills == 3 and scheduler.counters.admitted == 7
    for i, prompt in enumerate(prompts):
        assert got[i] == session.generate(prompt, 10).tokens[0], i
    assert scheduler.counters.send_seconds > 0 and not scheduler.decoder.busy.any()


def test_equal_length_prompts_prefill_exactly_as_alone_and_padding_stays_within_rounding(exported):
    _, out = exported
    stepper = Session(out, threads=1).generation_stepper()
    rng = np.random.default_rng(5)
    same = [[int(t) for t in rng.integers(0, 256, 9)] for _ in range(3)]
    mixed = [[int(t) for t in rng.integers(0, 256, n)] for n in (2, 9, 5)]
    for prompts, tolerance in ((same, 0.0), (mixed, 1e-5)):
        together, alone = SlotDecoder(stepper, 4, 32), SlotDecoder(stepper, 4, 32)
        for (slot, logits), prompt in zip(together.admit_many(prompts), prompts):
            (own, want) = alone.admit(prompt)
            assert slot == own and np.abs(logits - want).max() <= tolerance
            for layer in range(stepper.layers):
                n = int(alone.lengths[layer][own])
                assert int(together.lengths[layer][slot]) == n
                diff = together.keys[layer][slot, :, :n] - alone.keys[layer][own, :, :n]  # [H,n,Dh]
                assert diff.size == 0 or np.abs(diff).max() <= tolerance
    with pytest.raises(InputError, match="free slots"):
        SlotDecoder(stepper, 2, 32).admit_many(same)


@pytest.fixture(scope="module")
def split_routing(trained):
    """(stepper, token rows [2,26], routing pattern): the step graph of the trained model with its predictors shifted
    so that row 0's 20 teacher-forced tokens (positions 6..25) take every routed block for a known, mixed pattern
    (tests.helpers.split_predictors): the condition this module's routing-count test needs, built, not hoped for."""
    model = copy.deepcopy(trained[0]).eval()
    rows = torch.from_numpy(np.random.default_rng(8).integers(0, 256, (2, 26)))
    pattern = split_predictors(model, rows[:1], slice(6, 26))
    forms = export_decode_forms(model, pair=False)
    return OrtStepper(forms.step, threads=1), rows.numpy(), pattern


def test_routed_block_runs_count_the_steps_where_some_busy_row_took_the_block(split_routing):
    """SlotDecoder.routed_runs (the metric of how much of the MoD skipping a batch keeps): one busy row runs a
    routed block exactly when it takes it (its cache length there grows by one); two rows run it when either does."""
    stepper, seqs, pattern = split_routing
    layers = stepper.routed_layers
    assert layers and all(0 < p.sum() < len(p) for p in pattern.values()), pattern
    for rows in (1, 2):
        decoder = SlotDecoder(stepper, 3, 40)
        slots = [decoder.admit([int(t) for t in seqs[r, :6]])[0] for r in range(rows)]
        start = {layer: decoder.lengths[layer][slots].copy() for layer in layers}
        tokens = np.zeros(3, np.int64)
        for j in range(20):  # teacher forcing: the tokens the pattern was built on
            tokens[slots] = seqs[:rows, 6 + j]
            decoder.step(tokens)
        grown = {layer: decoder.lengths[layer][slots] - start[layer] for layer in layers}
        for layer in layers:  # row 0 took each block exactly where the pattern says, alone or batched
            assert int(grown[layer][0]) == int(pattern[layer].sum()), (rows, layer, grown[layer], pattern[layer])
        if rows == 1:
            assert decoder.routed_runs == sum(int(p.sum()) for p in pattern.values())
        else:
            assert max(int(g.max()) for g in grown.values()) <= decoder.routed_runs
            assert decoder.routed_runs <= sum(int(g.sum()) for g in grown.values())
        assert 0 < decoder.routed_runs < 20 * len(layers)  # some blocks skipped, some ran
        # every output of the step graph is bound to a buffer of the decoder's (P = 1 known): a step allocates none
        assert set(decoder._outputs) == set(stepper.output_names)


def test_a_send_that_fails_on_the_outbox_thread_frees_the_row_and_stops_the_stream(exported):
    _, out = exported
    session = Session(out, threads=1)
    sent, told = [], []

    def emit(token, index, final):
        if index == 2:
            raise ConnectionError("client gone")
        sent.append(index)

    outbox = Outbox()
    scheduler = Scheduler(SlotDecoder(session.generation_stepper(), 2, 48), outbox=outbox)
    scheduler.submit(Job([1, 2, 3], 40, emit, on_cancel=told.append))
    deadline = time.monotonic() + 30
    while scheduler.run_once() and time.monotonic() < deadline:
        assert outbox.wait_idle()  # lockstep: the sends of this iteration ran before the next (however fast either)
    outbox.close()
    assert sent == [0, 1] and scheduler.busy_rows == 0 and scheduler.counters.cancelled == 1
    assert scheduler.counters.tokens < 40  # the stream stopped early: the failed send freed its row


def test_outbox_deals_jobs_to_every_thread_and_keeps_each_jobs_calls_in_order():
    """Jobs are dealt to the sender threads in turn (all of them on one thread would serialise every send), and a
    job's calls run on one thread, in the order handed in."""
    outbox = Outbox(3)
    jobs = [Job([1], 5, lambda *a: None) for _ in range(6)]
    seen: dict[int, list[tuple[str, int]]] = {i: [] for i in range(len(jobs))}
    for k in range(5):
        for i, job in enumerate(jobs):
            outbox.put(job, lambda i=i, k=k: seen[i].append((threading.current_thread().name, k)), "a token")
    outbox.close()
    assert sorted(job.sender for job in jobs) == [0, 0, 1, 1, 2, 2]
    for i, calls in seen.items():
        assert [k for _, k in calls] == list(range(5)), i
        assert len({name for name, _ in calls}) == 1, calls
    assert len({calls[0][0] for calls in seen.values()}) == 3
    assert outbox.seconds["a token"] > 0


def test_with_an_outbox_running_requests_are_polled_on_its_thread_and_a_cancel_frees_the_row(exported):
    """Cancellation polls of running requests (each a round trip to the server) run on the outbox's thread after
    their tokens, not on the decode loop; a cancel seen there frees the row and tells the client once."""
    _, out = exported
    session = Session(out, threads=1)
    polled_on, told = [], []
    state = {"cancel": False}

    def cancelled():
        polled_on.append(threading.current_thread().name)
        return state["cancel"]

    def emit(token, index, final):
        if index == 3:
            state["cancel"] = True

    outbox = Outbox(2)
    scheduler = Scheduler(SlotDecoder(session.generation_stepper(), 2, 48), outbox=outbox, poll_interval=0.0)
    scheduler.submit(Job([1, 2, 3], 40, emit, cancelled=cancelled, on_cancel=told.append))
    deadline = time.monotonic() + 30
    while scheduler.run_once() and time.monotonic() < deadline:
        assert outbox.wait_idle()  # lockstep: each token's poll ran before the next iteration
    outbox.close()
    assert told == ["cancelled"] and scheduler.counters.cancelled == 1 and scheduler.busy_rows == 0
    assert scheduler.counters.tokens < 40 and not scheduler.decoder.busy.any()
    on_loop = [name for name in polled_on if not name.startswith("mod-export-outbox")]
    assert len(on_loop) == 1, polled_on  # the one poll at admission; every later one on the outbox's thread
    assert len(polled_on) >= 4 and scheduler.counters.outbox_poll_seconds > 0


def test_generation_model_streams_checks_and_cancels(repository):
    """GenerationModel with a stand-in for triton_python_backend_utils: execute() queues and returns at once, the
    loop thread streams every token with the final flag on the last, bad requests get one error each, and a
    cancelled request stops early and frees its row."""
    model = type("TritonPythonModel", (GenerationModel,), {"pb_utils": FakePbUtils})()
    config = (repository / TRITON_GENERATE_MODEL / "config.pbtxt").read_text()
    assert '"max_context" value: { string_value: "64" }' in config  # what Triton passes on as parameters:
    parameters = {"max_context": {"string_value": "64"}, "max_slots": {"string_value": "4"}}
    parameters[TRITON_STEP_DELAY] = {"string_value": "20"}  # 60 tokens take >= 1.2 s: the cancel lands first
    args = {
        "model_config": json.dumps({"name": TRITON_GENERATE_MODEL, "parameters": parameters}),
        "model_repository": str(repository / TRITON_GENERATE_MODEL),
        "model_version": "1",
    }
    model.initialize(args)
    try:
        alone = Session(repository / TRITON_GENERATE_MODEL / "1", threads=1)
        good = FakeRequest(input_ids=np.array([5, 6, 7, 8], np.int64), max_new_tokens=np.array([9], np.int32))
        sampled = FakeRequest(
            input_ids=np.array([9, 1], np.int64),
            max_new_tokens=np.array([7], np.int32),
            temperature=np.array([0.8], np.float32),
            seed=np.array([4], np.int64),
        )
        long = FakeRequest(input_ids=np.array([3], np.int64), max_new_tokens=np.array([60], np.int32))
        bad = {
            "token ids in [0, 256)": FakeRequest(input_ids=np.array([1, 300], np.int64)),
            "exceeds this model's context of 64": FakeRequest(input_ids=np.arange(60), max_new_tokens=np.array([8])),
            "give the prompt as input_ids": FakeRequest(max_new_tokens=np.array([3], np.int32)),
            "top_k must be an integer >= 0": FakeRequest(
                input_ids=np.array([1], np.int64), max_new_tokens=np.array([3], np.int32), top_k=np.array([-1])
            ),
        }
        assert model.execute([good, sampled, long, *bad.values()]) is None
        for fragment, request in bad.items():
            ((response, flags),) = request.sender.sent
            assert fragment in response.error.message and flags == 1, (fragment, response.error.message)
            assert response.error.code == "invalid"
        long.sender.cancel = True
        for request in (good, sampled, long):
            assert request.sender.done.wait(30)
        assert good.sender.tokens() == alone.generate([5, 6, 7, 8], 9).tokens[0]
        assert sampled.sender.tokens() == alone.generate([9, 1], 7, temperature=0.8, seed=4).tokens[0]
        assert [f for _, f in good.sender.sent] == [0] * 8 + [1]  # the final flag on the last token
        last, _ = long.sender.sent[-1]
        assert len(long.sender.tokens()) < 60 and last.error is not None and "cancelled" in last.error.message
        deadline = time.monotonic() + 10
        while model.scheduler.busy_rows and time.monotonic() < deadline:
            time.sleep(0.01)
        assert model.scheduler.busy_rows == 0 and model.scheduler.counters.cancelled == 1
    finally:
        model.finalize()


STRAGGLER = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"
)


def test_stopping_the_server_kills_what_outlived_it_in_its_session():
    """A tritonserver's Python-backend stubs live in its session. Stubs that ignore SIGTERM and outlive the server
    (seen once: three stubs left running after a test run) must not survive stop_session. The stand-in server here
    starts such a straggler and exits on SIGTERM, as the server does."""
    from mod_export.serving.bundled import stop_session
    from tests.serving.processes import group_alive, group_members

    leader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {STRAGGLER!r}]); time.sleep(120)",
        ],
        start_new_session=True,
        stdout=subprocess.PIPE,  # the straggler inherits it and says when its SIGTERM handler is set
        text=True,
    )
    assert leader.stdout.readline().strip() == "ready"
    assert len(group_members(leader.pid)) == 2
    stop_session(leader, timeout=10)
    assert leader.poll() is not None
    assert not group_alive(leader.pid), group_members(leader.pid)
    leader.stdout.close()
