"""Streaming generation through the real tritonserver (the decoupled Python-backend model): greedy and sampled
streams equal Session.generate token for token while requests join one another's batch (in-flight batching, seen in
the model's metrics), bad requests get one clear error each, and a client that goes away mid-stream frees its row."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mod_export.contract import TRITON_GENERATE_MODEL
from mod_export.runtime import Session
from tests.serving.client import Streamer, fan_out, generate_inputs, stream_tokens, tensor
from tests.serving.conftest import GEN_CONTEXT

PREFIX = "mod_export_generate_"


def gauges(server) -> dict[str, float]:
    """The generation model's metrics by short name (busy_rows, steps, row_steps, joined, cancelled, ...)."""
    return {k.split("{")[0][len(PREFIX) :]: v for k, v in server.metrics(PREFIX).items()}


def idle(server, timeout: float = 30) -> dict[str, float]:
    """The metrics once no row is busy and nothing waits (the model publishes just after a final response)."""
    deadline = time.monotonic() + timeout
    while True:
        now = gauges(server)
        if (now["busy_rows"] == 0 and now["waiting"] == 0) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


@pytest.fixture(scope="module")
def local(triton_export):
    return Session(triton_export / "model_repository" / TRITON_GENERATE_MODEL / "1", threads=1)


def run_streams(server, jobs: list[list], concurrency: int, **kwargs) -> list[dict]:
    """Stream every job's inputs from `concurrency` threads (one client and stream each); results in job order."""

    def call(streamer: Streamer, i: int) -> dict:
        try:
            return streamer.run(jobs[i], **kwargs)
        except Exception as exc:  # reported by the caller, with the job
            return {"tokens": [], "error": f"{type(exc).__name__}: {exc}", "seconds": []}

    return fan_out(len(jobs), concurrency, lambda: Streamer(server), call, close=Streamer.close)


def test_greedy_and_sampled_streams_equal_session_generate_in_flight(server, local):
    rng = np.random.default_rng(23)
    prompts = [[int(t) for t in rng.integers(0, 256, int(n))] for n in rng.integers(1, 30, 12)]
    new = [int(n) for n in rng.integers(8, 48, 12)]
    sampled = {i: {"temperature": 0.8, "top_k": 50, "seed": 100 + i} for i in range(0, 12, 3)}
    jobs = [generate_inputs(p, n, **sampled.get(i, {})) for i, (p, n) in enumerate(zip(prompts, new))]
    before = idle(server)
    results = run_streams(server, jobs, concurrency=6)
    after = idle(server)
    for i, (prompt, n, result) in enumerate(zip(prompts, new, results)):
        assert result["error"] is None, (i, result["error"])
        want = local.generate(prompt, max_new_tokens=n, **sampled.get(i, {})).tokens[0]
        assert result["tokens"] == want, f"request {i}: served {result['tokens']} != Session.generate {want}"
    steps = after["steps"] - before["steps"]
    rows = after["row_steps"] - before["row_steps"]
    assert after["joined"] > before["joined"], "no request joined a running batch"
    assert rows / steps > 1.5, f"mean rows per decode step {rows / steps:.2f}: requests were not batched"
    assert after["busy_rows"] == 0, after  # every finished request gave its row back


def test_bad_generation_requests_get_one_clear_error_each(server):
    ok = generate_inputs([1, 2, 3], 4)
    bad = {
        "out of vocabulary": (generate_inputs([1, 999], 4), "token ids in [0, 256)"),
        "too long": (generate_inputs(list(range(90)), 10), f"exceeds this model's context of {GEN_CONTEXT}"),
        "missing input": ([tensor("max_new_tokens", np.array([4], np.int32))], "input_ids"),
        "wrong dtype": ([tensor("input_ids", np.array([1, 2], np.float32))], "INT64"),
        "bad sampling": (generate_inputs([1, 2], 4, top_p=1.5), "top_p must be in (0, 1]"),
    }
    for kind, (inputs, fragment) in bad.items():
        result = stream_tokens(server, inputs)
        assert result["error"] is not None and fragment in result["error"], (kind, result)
        assert "Traceback" not in result["error"], (kind, result["error"])
    assert server.model_ready(TRITON_GENERATE_MODEL)
    assert stream_tokens(server, ok)["tokens"] and stream_tokens(server, ok)["error"] is None


def test_a_client_that_goes_away_mid_stream_frees_its_row(server):
    before = idle(server)
    result = stream_tokens(server, generate_inputs([5, 6, 7], GEN_CONTEXT - 3), cancel_after=3)
    assert len(result["tokens"]) == 3 and result["error"] is None
    now = idle(server)
    assert now["cancelled"] == before["cancelled"] + 1 and now["busy_rows"] == 0, (before, now)
    assert now["finished"] == before["finished"], "the cancelled request ran to its end"
    assert server.model_ready(TRITON_GENERATE_MODEL)
