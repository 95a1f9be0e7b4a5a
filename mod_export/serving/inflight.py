"""In-flight batching for streaming generation: requests join the running batch between decode steps, each on its
own slot of the per-row MoD cache (mod_export.backends.onnxrt.slots), and leave it when they finish, hit a stop
token, or are cancelled. Pure numpy over a SlotDecoder; Triton's generation model drives it from one thread.

One loop iteration: drop cancelled requests (their slots are freed), admit waiting requests while slots are free
(a one-row prefill each, whose next-token logits give its first token at once), then one decode step over every
busy row. Per request the tokens follow mod_export.decoding.loop.stream exactly (the same sampling, a generator
seeded by (seed, row 0)), so a request's tokens are those of Session.generate of that prompt alone."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mod_export.backends.onnxrt.slots import SlotDecoder
from mod_export.decoding.sampling import Sampling, sample

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One generation request. emit(token, index, final) sends a token; a raise from it cancels the request.
    cancelled() is polled once per loop iteration."""

    prompt: list[int]
    max_new_tokens: int
    emit: Callable[[int, int, bool], None]
    sampling: Sampling = field(default_factory=Sampling)
    stop_tokens: tuple[int, ...] = ()
    cancelled: Callable[[], bool] = lambda: False
    on_cancel: Callable[[str], None] = lambda reason: None  # the request was dropped unfinished, and why
    slot: int = -1
    produced: int = 0
    last: int = 0
    generator: np.random.Generator | None = None


@dataclass
class Counters:
    steps: int = 0  # decode steps run
    row_steps: int = 0  # busy rows summed over steps (row_steps / steps: the mean batch)
    admitted: int = 0
    joined: int = 0  # admitted while other requests were generating: in-flight joins
    finished: int = 0
    cancelled: int = 0
    tokens: int = 0
    model_seconds: float = 0.0  # in prefill and decode steps
    send_seconds: float = 0.0  # in emit() (sampling excluded)
    poll_seconds: float = 0.0  # in cancelled()


class Scheduler:
    def __init__(self, decoder: SlotDecoder, on_change: Callable[[Scheduler], None] | None = None):
        self.decoder = decoder
        self.running: dict[int, Job] = {}  # slot -> job
        self.waiting: collections.deque[Job] = collections.deque()
        self.counters = Counters()
        self._on_change = on_change or (lambda _: None)
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    @property
    def busy_rows(self) -> int:
        return len(self.running)

    # ------------------------------------------------------------ requests in

    def submit(self, job: Job) -> None:
        with self._cond:
            self.waiting.append(job)
            self._cond.notify()

    # ------------------------------------------------------------ one iteration

    def _drop(self, job: Job, reason: str) -> None:
        self.counters.cancelled += 1
        try:
            job.on_cancel(reason)
        except Exception:  # the client is gone: nothing to tell it
            logger.debug("on_cancel failed", exc_info=True)

    def _finish(self, job: Job, cancelled: str | None = None) -> None:
        """Free the job's slot; `cancelled`: why it ended unfinished (None: it finished)."""
        self.decoder.free(job.slot)
        del self.running[job.slot]
        if cancelled is not None:
            self._drop(job, cancelled)
        else:
            self.counters.finished += 1

    def _emit(self, job: Job, logits: np.ndarray) -> None:
        """Sample the job's next token from logits [V], send it, and free its slot when it is done."""
        token = int(sample(logits[None], job.sampling, [job.generator])[0])
        job.produced += 1
        self.counters.tokens += 1
        final = token in job.stop_tokens or job.produced >= job.max_new_tokens
        start = time.perf_counter()
        try:
            job.emit(token, job.produced - 1, final)
            self.counters.send_seconds += time.perf_counter() - start
        except Exception:
            logger.info("a stream could not be sent to (client gone?): freeing slot %d", job.slot)
            self._finish(job, "the stream could not be sent")
            return
        job.last = token
        if final:
            self._finish(job)

    def _admit(self) -> None:
        while self.decoder.free_slots:
            with self._cond:
                if not self.waiting:
                    return
                job = self.waiting.popleft()
            if job.cancelled():
                self._drop(job, "cancelled")
                continue
            joined = bool(self.running)
            start = time.perf_counter()
            job.slot, logits = self.decoder.admit(job.prompt)
            self.counters.model_seconds += time.perf_counter() - start
            job.generator = job.sampling.generators(1)[0]
            self.running[job.slot] = job
            self.counters.admitted += 1
            self.counters.joined += joined
            self._emit(job, logits)

    def run_once(self) -> bool:
        """One iteration; False when there was nothing to do."""
        start = time.perf_counter()
        for job in list(self.running.values()):
            if job.cancelled():
                logger.info("request cancelled: freeing slot %d", job.slot)
                self._finish(job, "cancelled")
        self.counters.poll_seconds += time.perf_counter() - start
        self._admit()
        if self.running:
            tokens = np.zeros(self.decoder.slots, np.int64)
            for slot, job in self.running.items():
                tokens[slot] = job.last
            start = time.perf_counter()
            logits = self.decoder.step(tokens)  # [n,V]
            self.counters.model_seconds += time.perf_counter() - start
            self.counters.steps += 1
            self.counters.row_steps += len(self.running)
            for slot, job in list(self.running.items()):
                self._emit(job, logits[slot])
        self._on_change(self)
        return bool(self.running or self.waiting)

    # ------------------------------------------------------------ the loop thread

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self.waiting and not self.running:
                    self._cond.wait()
                if self._stop:
                    return
            try:
                self.run_once()
            except Exception as exc:  # a failed step fails the requests in it, never the loop
                logger.exception("generation step failed: ending %d request(s)", len(self.running))
                for job in list(self.running.values()):
                    self._finish(job, f"generation failed: {type(exc).__name__}: {exc}")

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._loop, name="mod-export-inflight", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
