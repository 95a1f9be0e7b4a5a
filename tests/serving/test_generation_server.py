"""Streaming generation through the real tritonserver (the decoupled Python-backend model): greedy and sampled
streams equal Session.generate token for token while requests join one another's batch (in-flight batching, seen in
the model's metrics), bad requests get one clear error each, and a client that goes away mid-stream frees its row."""

from __future__ import annotations

import numpy as np
import pytest

from mod_export.contract import TRITON_GENERATE_MODEL
from mod_export.runtime import Session
from tests.serving.client import (
    Streamer,
    generate_inputs,
    run_streams,
    settled,
    stream_tokens,
    tensor,
    text_inputs,
)
from tests.serving.conftest import GEN_CONTEXT, SLOW_MODEL, TEXT_MODEL


@pytest.fixture(scope="module")
def local(triton_export):
    return Session(triton_export / "model_repository" / TRITON_GENERATE_MODEL / "1", threads=1)


def test_greedy_and_sampled_streams_equal_session_generate_in_flight(server, local):
    """On the slow model (SLOW_STEP_MS per decode step, the same graphs as `local`): six clients' requests are
    running at once by construction, whatever the host's speed, so they must share decode steps."""
    rng = np.random.default_rng(23)
    prompts = [[int(t) for t in rng.integers(0, 256, int(n))] for n in rng.integers(1, 30, 12)]
    new = [int(n) for n in rng.integers(8, 48, 12)]
    sampled = {i: {"temperature": 0.8, "top_k": 50, "seed": 100 + i} for i in range(0, 12, 3)}
    jobs = [generate_inputs(p, n, **sampled.get(i, {})) for i, (p, n) in enumerate(zip(prompts, new))]
    before = settled(server, model=SLOW_MODEL)
    results = run_streams(server, jobs, concurrency=6, model=SLOW_MODEL)
    after = settled(server, before, ended=len(jobs), model=SLOW_MODEL)
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
    """On the slow model (SLOW_STEP_MS per decode step) the request cannot end before the cancel lands."""
    before = settled(server, model=SLOW_MODEL)
    result = stream_tokens(server, generate_inputs([5, 6, 7], GEN_CONTEXT - 3), cancel_after=3, model=SLOW_MODEL)
    assert len(result["tokens"]) == 3 and result["error"] is None
    now = settled(server, before, ended=1, model=SLOW_MODEL)
    assert now["cancelled"] == before["cancelled"] + 1 and now["busy_rows"] == 0, (before, now)
    assert now["finished"] == before["finished"], "the cancelled request ran to its end"
    assert now["tokens"] - before["tokens"] < GEN_CONTEXT - 3, (before, now)
    assert server.model_ready(SLOW_MODEL)


def test_a_cancel_that_arrives_after_the_end_counts_the_request_as_finished(server):
    """A client that cancels after its final response: the request finished (not cancelled) and no row leaked."""
    before = settled(server)
    streamer = Streamer(server)
    try:
        result = streamer.run(generate_inputs([5, 6, 7], 4))
        streamer.cancel()  # the stream is closed with cancellation, after the end
    finally:
        streamer.close()
    assert len(result["tokens"]) == 4 and result["error"] is None
    now = settled(server, before, ended=1)
    assert now["finished"] == before["finished"] + 1 and now["cancelled"] == before["cancelled"], (before, now)
    assert now["busy_rows"] == 0 and now["waiting"] == 0, now
    assert stream_tokens(server, generate_inputs([1, 2], 3))["tokens"], "the model serves the next request"


def test_text_in_and_out_through_the_byte_level_codec(server, local):
    """The prompt as text and a text piece per token: the served tokens are Session.generate's for the encoded
    prompt, and the pieces join into the text the codec decodes after the prompt (a character split over bytes
    comes whole)."""
    prompt = "def héllo(ϖ):"
    result = stream_tokens(server, text_inputs(prompt, 24))
    assert result["error"] is None, result["error"]
    ids = local.codec.encode(prompt)
    want = local.generate(ids, max_new_tokens=24).tokens[0]
    assert result["tokens"] == want
    whole, head = local.codec.decode(ids + want), local.codec.decode(ids)
    assert whole.startswith(head) and "".join(result["text"]) == whole[len(head) :]  # the text after the prompt


def test_a_model_with_a_tokenizer_takes_and_returns_text(server, text_repository):
    """The model folder's tokenizer.json travelled into the Triton repository: the text model encodes the prompt
    with it and streams text decoded with it, equal to Session over the same model folder."""
    prompt = "def héllo(wörld):"
    result = stream_tokens(server, text_inputs(prompt, 12), model=TEXT_MODEL)
    assert result["error"] is None, result["error"]
    with Session(text_repository / TEXT_MODEL / "1", threads=1) as text_model:
        ids = text_model.codec.encode(prompt)
        want = text_model.generate(ids, max_new_tokens=12).tokens[0]
        assert result["tokens"] == want
        whole, head = text_model.codec.decode(ids + want), text_model.codec.decode(ids)
        assert whole.startswith(head) and "".join(result["text"]) == whole[len(head) :]
    both = [*generate_inputs([1, 2], 4), *text_inputs("x", 4)[:1]]
    refused = {  # (inputs, model, what the one error says)
        "both prompts": (both, TEXT_MODEL, "one of the two"),
        "no text at all": (text_inputs("", 4), TRITON_GENERATE_MODEL, "is empty"),  # the tokenizer adds a BOS
    }
    for kind, (inputs, model, fragment) in refused.items():
        error = stream_tokens(server, inputs, model=model)["error"]
        assert error is not None and fragment in error, (kind, error)
