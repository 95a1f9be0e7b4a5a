"""Load and fault test against the real tritonserver: concurrency 1, 4, 8 and 16 with a fixed number of requests
each, 10% of them bad (wrong dtype, ids outside the vocabulary, longer than the model allows, a missing input).
Every bad request gets an error response with a clear message, every good one its exact logits, the model stays
READY; p50 / p99 and throughput per level are printed. The same for streaming generation, where one client per
level also goes away mid-stream and its row must come back."""

from __future__ import annotations

import time

import numpy as np

from mod_export.contract import ATTENTION_MASK, INPUT_IDS, TRITON_GENERATE_MODEL, TRITON_SCORE_MODEL
from mod_export.runtime import Session
from tests.serving.client import client, fan_out, generate_inputs, run_streams, send, settled, tensor
from tests.serving.conftest import GEN_CONTEXT, MAX_SEQ, SLOW_MODEL

LEVELS = (1, 4, 8, 16)
PER_LEVEL = 100  # requests per concurrency level; every 10th is bad
LENGTH = 64
BAD = {  # kind -> (inputs builder, fragment the error message must hold)
    "wrong dtype": (lambda ids: [tensor(INPUT_IDS, ids.astype(np.float32))], "expects 'INT64'"),
    "out of vocabulary": (lambda ids: [tensor(INPUT_IDS, ids + 1000)], "token ids in [0, 256)"),
    "too long": (
        lambda ids: [tensor(INPUT_IDS, np.resize(ids, (1, MAX_SEQ + 1)))],
        f"more than this model's limit of {MAX_SEQ}",
    ),
    "missing input": (lambda ids: [tensor(ATTENTION_MASK, np.ones_like(ids))], INPUT_IDS),
}


def run_level(server, requests: list, concurrency: int) -> list[dict]:
    """Send every request from `concurrency` threads (one client each); returns one record per request."""

    def call(conn, i: int) -> dict:
        start = time.perf_counter()
        try:
            logits, error = send(conn, requests[i]["inputs"]), None
        except Exception as exc:  # tritonclient's InferenceServerException carries the server's message
            logits, error = None, str(exc)
        return {"seconds": time.perf_counter() - start, "logits": logits, "error": error}

    return fan_out(len(requests), concurrency, lambda: client(server), call)


def test_load_and_faults(server, triton_export, capsys):
    local = Session(triton_export / "model_repository" / TRITON_SCORE_MODEL / "1", threads=1)
    rng = np.random.default_rng(19)
    kinds = list(BAD)
    lines = ["concurrency | requests | good | bad | errors on good | p50 ms | p99 ms | requests/s"]
    before = server.statistics(TRITON_SCORE_MODEL)
    for concurrency in LEVELS:
        requests = []
        for i in range(PER_LEVEL):
            ids = rng.integers(0, 256, (1, LENGTH)).astype(np.int64)
            if i % 10 == 9:
                kind = kinds[(i // 10) % len(kinds)]
                requests.append({"kind": kind, "inputs": BAD[kind][0](ids), "fragment": BAD[kind][1]})
            else:
                requests.append({"kind": None, "inputs": [tensor(INPUT_IDS, ids)], "want": local.run(ids)})
        start = time.perf_counter()
        records = run_level(server, requests, concurrency)
        wall = time.perf_counter() - start
        good = [(q, r) for q, r in zip(requests, records) if q["kind"] is None]
        bad = [(q, r) for q, r in zip(requests, records) if q["kind"] is not None]
        failed = [r["error"] for _, r in good if r["error"] is not None]
        assert not failed, f"concurrency {concurrency}: good requests failed: {failed[:3]}"
        worst = max(float(np.abs(r["logits"] - q["want"]).max()) for q, r in good)
        assert worst <= 1e-6, f"concurrency {concurrency}: a good response differs from Session.run by {worst}"
        for q, r in bad:
            assert r["error"] is not None, f"{q['kind']} request was answered"
            assert q["fragment"] in r["error"] and "Traceback" not in r["error"], (q["kind"], r["error"])
        assert len(bad) == PER_LEVEL // 10 and {q["kind"] for q, _ in bad} == set(kinds)
        assert server.model_ready(TRITON_SCORE_MODEL), f"the model is not READY after concurrency {concurrency}"
        ms = np.array([r["seconds"] for _, r in good]) * 1e3
        lines.append(
            f"{concurrency} | {PER_LEVEL} | {len(good)} | {len(bad)} | 0 | {np.percentile(ms, 50):.2f} | "
            f"{np.percentile(ms, 99):.2f} | {PER_LEVEL / wall:.0f}"
        )
    after = server.statistics(TRITON_SCORE_MODEL)
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    inferences = int(after["inference_count"]) - int(before.get("inference_count", 0))
    assert executions < inferences, (executions, inferences)  # batches merged under load
    lines.append(f"{inferences} inferences reached the model in {executions} executions")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


GEN_PER_LEVEL, GEN_NEW, GEN_PROMPT = 20, 24, 16  # streams per level (every 10th bad), new tokens, prompt length
GEN_BAD = {  # kind -> (inputs, fragment of the error)
    "wrong dtype": ([tensor(INPUT_IDS, np.arange(1, 9, dtype=np.float32))], "INT64"),
    "out of vocabulary": (generate_inputs([3, 4, 256], GEN_NEW), "token ids in [0, 256)"),
    "too long": (generate_inputs(list(range(1, GEN_CONTEXT)), GEN_NEW), f"context of {GEN_CONTEXT}"),
    "missing input": ([tensor("max_new_tokens", np.array([GEN_NEW], np.int32))], INPUT_IDS),
}


def test_generation_load_faults_and_disconnects(server, triton_export, capsys):
    local = Session(triton_export / "model_repository" / TRITON_GENERATE_MODEL / "1", threads=1)
    rng = np.random.default_rng(29)
    kinds = list(GEN_BAD)
    lines = [
        "concurrency | streams | bad | tokens | first token p50 / p99 ms | token gap p50 / p99 ms | tokens/s | rows/step"
    ]
    rates, rows = {}, {}  # tokens/s, and the mean rows per decode step, per level
    for concurrency in LEVELS:
        jobs, meta = [], []
        for i in range(GEN_PER_LEVEL):
            if i % 10 == 9:
                kind = kinds[(concurrency + i // 10) % len(kinds)]
                jobs.append(GEN_BAD[kind][0])
                meta.append((kind, None))
            else:
                prompt = [int(t) for t in rng.integers(0, 256, GEN_PROMPT)]
                jobs.append(generate_inputs(prompt, GEN_NEW))
                meta.append((None, prompt))
        before, slow_before = settled(server), settled(server, model=SLOW_MODEL)
        start = time.perf_counter()
        results = run_streams(server, jobs, concurrency)
        wall = time.perf_counter() - start
        # a client that goes away, on the slow model: the cancel lands before the end, whatever the host's speed
        slow_job = [generate_inputs([9, 8, 7], GEN_CONTEXT - 3)]
        gone = run_streams(server, slow_job, 1, cancel_after=2, model=SLOW_MODEL)[0]
        good_streams = sum(kind is None for kind, _ in meta)
        after = settled(server, before, ended=good_streams)
        slow_after = settled(server, slow_before, ended=1, model=SLOW_MODEL)
        good = [(prompt, r) for (kind, prompt), r in zip(meta, results) if kind is None]
        for _, r in good:
            assert r["error"] is None, f"concurrency {concurrency}: a good stream failed: {r['error']}"
        for (kind, _), r in zip(meta, results):
            if kind is not None:
                assert r["error"] is not None and GEN_BAD[kind][1] in r["error"], (kind, r)
                assert "Traceback" not in r["error"], r["error"]
        for prompt, r in good[:3]:  # spot checks; test_generation_server checks every token of mixed requests
            assert r["tokens"] == local.generate(prompt, max_new_tokens=GEN_NEW).tokens[0]
        assert len(gone["tokens"]) == 2 and after["busy_rows"] == 0 and slow_after["busy_rows"] == 0, (after, gone)
        assert slow_after["cancelled"] == slow_before["cancelled"] + 1, (slow_before, slow_after)
        assert server.model_ready(TRITON_GENERATE_MODEL), f"not READY after concurrency {concurrency}"
        tokens = sum(len(r["tokens"]) for _, r in good)
        first = np.array([r["seconds"][0] for _, r in good]) * 1e3
        gaps = np.concatenate([np.diff(r["seconds"]) for _, r in good]) * 1e3
        rates[concurrency] = tokens / wall
        rows[concurrency] = (after["row_steps"] - before["row_steps"]) / max(after["steps"] - before["steps"], 1)
        lines.append(
            f"{concurrency} | {GEN_PER_LEVEL} | {GEN_PER_LEVEL // 10} | {tokens} | {np.percentile(first, 50):.1f} / "
            f"{np.percentile(first, 99):.1f} | {np.percentile(gaps, 50):.2f} / {np.percentile(gaps, 99):.2f} | "
            f"{rates[concurrency]:.0f} | {rows[concurrency]:.1f}"
        )
    lines.append(f"tokens/s at concurrency 8 / concurrency 1: {rates[8] / rates[1]:.2f}x (not asserted: a timing)")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    # The batching itself, not its speed (a timed assertion fails on a loaded machine; benchmarks/serving.py
    # measures throughput). How many rows share a step on the fast model depends on the host's speed (a quiet host
    # finished streams before others joined: 1.87 rows at concurrency 8), so the check runs on the slow model
    # (50 ms per decode step), where eight streams sent together (fan_out's barrier) overlap by construction: each
    # runs 48 steps, >= 2.4 s, while all eight sends leave within milliseconds of each other.
    slow_before = settled(server, model=SLOW_MODEL)
    batch = run_streams(server, [generate_inputs([5 + i, 6, 7], 48) for i in range(8)], 8, model=SLOW_MODEL)
    slow_after = settled(server, slow_before, ended=8, model=SLOW_MODEL)
    assert all(r["error"] is None and len(r["tokens"]) == 48 for r in batch), batch
    slow_rows = (slow_after["row_steps"] - slow_before["row_steps"]) / max(
        slow_after["steps"] - slow_before["steps"], 1
    )
    assert rows[1] <= 1.5 and slow_rows > 2.0, (rows, slow_rows)
