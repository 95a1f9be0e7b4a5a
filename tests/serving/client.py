"""gRPC client helpers for the serving tests and benchmarks (tritonclient.grpc, one client per thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from mod_export.contract import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    PROMPT_TEXT,
    TEXT_PIECE,
    TOKEN_ID,
    TRITON_GENERATE_MODEL,
    TRITON_SCORE_MODEL,
)


def client(server):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")


def tensor(name: str, array: np.ndarray, datatype: str | None = None):
    import tritonclient.grpc as grpcclient

    datatype = (
        datatype
        or {np.dtype(np.int64): "INT64", np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32"}[array.dtype]
    )
    value = grpcclient.InferInput(name, list(array.shape), datatype)
    value.set_data_from_numpy(array)
    return value


def score(conn, ids: np.ndarray, mask: np.ndarray | None = None, model: str = TRITON_SCORE_MODEL) -> np.ndarray:
    """logits [b, T, V] of one request (raises tritonclient's InferenceServerException on an error response)."""
    inputs = [tensor(INPUT_IDS, ids)] + ([tensor(ATTENTION_MASK, mask)] if mask is not None else [])
    return send(conn, inputs, model)


def send(conn, inputs: list, model: str = TRITON_SCORE_MODEL) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    reply = conn.infer(model, inputs, outputs=[grpcclient.InferRequestedOutput(LOGITS)], client_timeout=60)
    return reply.as_numpy(LOGITS)


def generate_inputs(prompt, max_new_tokens: int, **options) -> list:
    """The generation model's inputs: input_ids [P] int64 and the optional per-request parameters."""
    types = {"temperature": np.float32, "top_k": np.int32, "top_p": np.float32, "seed": np.int64}
    inputs = [
        tensor(INPUT_IDS, np.asarray(prompt, np.int64)),
        tensor("max_new_tokens", np.array([max_new_tokens], np.int32)),
    ]
    for name, value in options.items():
        inputs.append(tensor(name, np.array([value], types[name])))
    return inputs


def text_inputs(prompt: str, max_new_tokens: int) -> list:
    """The generation model's inputs with the prompt as text (prompt [1] string) instead of input_ids."""
    return [
        tensor(PROMPT_TEXT, np.array([prompt.encode("utf-8")], np.object_), "BYTES"),
        tensor("max_new_tokens", np.array([max_new_tokens], np.int32)),
    ]


class Streamer:
    """One gRPC client with one open stream, for generation requests sent one after another (one per thread:
    tritonclient clients are not thread-safe)."""

    def __init__(self, server):
        import queue

        import tritonclient.grpc as grpcclient

        self.server, self._queue_type = server, queue.Queue
        self.conn = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")
        self._open()

    def _open(self) -> None:
        self.replies = self._queue_type()
        self.conn.start_stream(callback=lambda result, error: self.replies.put((result, error)))

    def run(
        self, inputs: list, timeout: float = 60, cancel_after: int | None = None, model: str = TRITON_GENERATE_MODEL
    ) -> dict:
        """One request: {"tokens", "text" (the text piece of each), "error", "seconds" (per token, from the send)}. cancel_after=N: close the
        stream, cancelling the request, after N tokens (a client that goes away); a new stream is opened."""
        out = {"tokens": [], "text": [], "error": None, "seconds": []}
        start = time.perf_counter()
        self.conn.async_stream_infer(model, inputs, enable_empty_final_response=True)
        while True:
            result, error = self.replies.get(timeout=timeout)
            if error is not None:
                out["error"] = str(error)
                return out
            token = result.as_numpy(TOKEN_ID)
            if token is not None:
                out["tokens"].append(int(token[0]))
                out["seconds"].append(time.perf_counter() - start)
                out["text"].append(result.as_numpy(TEXT_PIECE)[0].decode("utf-8"))
            if cancel_after is not None and len(out["tokens"]) >= cancel_after:
                self.cancel()
                return out
            if result.get_response().parameters["triton_final_response"].bool_param:
                return out

    def cancel(self) -> None:
        """Close the stream, cancelling whatever it still runs (a client that goes away), and open a new one."""
        self.conn.stop_stream(cancel_requests=True)
        self._open()

    def close(self) -> None:
        self.conn.stop_stream()
        self.conn.close()


def stream_tokens(
    server, inputs: list, timeout: float = 60, cancel_after: int | None = None, model: str = TRITON_GENERATE_MODEL
) -> dict:
    """One generation request on a client of its own (Streamer.run)."""
    streamer = Streamer(server)
    try:
        return streamer.run(inputs, timeout, cancel_after, model)
    finally:
        streamer.close()


def fan_out(
    count: int,
    concurrency: int,
    connect: Callable,
    call: Callable,
    close: Callable = lambda conn: None,
    timeout: float = 300,
) -> list:
    """call(conn, i) for every i in range(count), from `concurrency` threads that take the next index as they
    finish one; each thread has its own conn = connect() (tritonclient clients are not thread-safe), closed with
    close(conn) at the end. Returns the results in index order (a call must return something other than None).
    The threads start together: every one connects, then all wait at a barrier before the first call, so the
    first `concurrency` requests are in flight at once however slowly a loaded host starts threads."""
    results: list = [None] * count
    cursor = iter(range(count))
    lock = threading.Lock()
    ready = threading.Barrier(concurrency, timeout=timeout)

    def worker() -> None:
        try:
            conn = connect()
        except BaseException:
            ready.abort()  # the others stop waiting; the missing results fail the assertion below
            raise
        try:
            ready.wait()
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                results[i] = call(conn, i)
        finally:
            close(conn)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert all(r is not None for r in results), "a client thread did not finish"
    return results


def run_streams(server, jobs: list[list], concurrency: int, **kwargs) -> list[dict]:
    """Stream every job's inputs from `concurrency` threads (one client and stream each); results in job order."""

    def call(streamer: Streamer, i: int) -> dict:
        try:
            return streamer.run(jobs[i], **kwargs)
        except Exception as exc:  # reported by the caller, with the job
            return {"tokens": [], "error": f"{type(exc).__name__}: {exc}", "seconds": []}

    return fan_out(len(jobs), concurrency, lambda: Streamer(server), call, close=Streamer.close)


GAUGE_PREFIX = "mod_export_generate_"


def gauges(server, model: str = TRITON_GENERATE_MODEL) -> dict[str, float]:
    """A generation model's metrics by short name (busy_rows, steps, row_steps, joined, cancelled, ...)."""
    label = f'model="{model}"'
    metrics = server.metrics(GAUGE_PREFIX).items()
    return {k.split("{")[0][len(GAUGE_PREFIX) :]: v for k, v in metrics if label in k}


def settled(
    server, before: dict | None = None, ended: int = 0, model: str = TRITON_GENERATE_MODEL, timeout: float = 60
) -> dict[str, float]:
    """The metrics once `ended` more requests than in `before` have finished or been cancelled, no row is busy and
    nothing waits. The model publishes after a loop iteration, later than the client sees its last token, so a
    reader waits for the change it expects: idleness alone is also the state before a request was counted.
    Returns the last metrics read when the timeout passes first (the caller's assertion then says what is off)."""
    done = 0 if before is None else before.get("finished", 0) + before.get("cancelled", 0)
    deadline = time.monotonic() + timeout
    while True:
        now = gauges(server, model)
        quiet = now.get("busy_rows", 0) == 0 and now.get("waiting", 0) == 0
        if quiet and now.get("finished", 0) + now.get("cancelled", 0) >= done + ended:
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.05)
