"""In-flight batching for streaming generation: requests join the running batch between decode steps, each on its
own slot of the per-row MoD cache (mod_export.backends.onnxrt.generation_slots), and leave it when they finish, hit a stop
token, or are cancelled. Pure numpy over a SlotDecoder; Triton's generation model drives it from one thread.

One loop iteration: drop cancelled requests (their slots are freed; each request is polled at most every
`poll_interval` seconds, a poll being a call to the server, made on the outbox's thread after one of the request's
tokens when there is an outbox), admit waiting requests while slots are free (prompts of one length share one
prefill run, whose next-token logits give each its first token at once), then one decode step over every busy
row. Per request the tokens follow mod_export.generation.loop.stream exactly (the same sampling, a generator seeded
by (seed, row 0)), so a request's tokens are those of Session.generate of that prompt alone: prompts of different
lengths are not padded into one prefill, since padding changes the attention's rounding.

Sending: with an Outbox, tokens are handed to sender threads that call each Job.emit in order while the next
decode step runs (ONNX Runtime releases the GIL), so sending overlaps the model; a send that fails marks its job,
which the next iteration drops. Without one, emit() runs inline."""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mod_export.backends.onnxrt.generation_slots import SlotDecoder
from mod_export.generation.sampling import Sampling, sample

logger = logging.getLogger(__name__)

TOKEN, CANCELLATION, POLL = "a token", "a cancellation", "a cancellation poll"  # kinds of outbox calls


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
    failed: str | None = None  # set (by an outbox thread) when a send to the client failed
    cancel_seen: bool = False  # set (by an outbox thread) when its poll found the request cancelled
    polled: float = 0.0  # when cancelled() was last called (perf_counter seconds)
    sender: int = -1  # the outbox thread that sends this job's calls (-1: none chosen yet)


@dataclass
class Counters:
    steps: int = 0  # decode steps run
    row_steps: int = 0  # busy rows summed over steps (row_steps / steps: the mean batch)
    admitted: int = 0
    joined: int = 0  # admitted while other requests were generating: in-flight joins
    finished: int = 0
    cancelled: int = 0
    tokens: int = 0
    prefills: int = 0  # prefill runs (one per prompt length among the prompts admitted together)
    model_seconds: float = 0.0  # in prefill and decode steps
    send_seconds: float = 0.0  # in emit() (sampling excluded), inline or on the outbox's thread
    poll_seconds: float = 0.0  # in cancelled() on the loop's thread
    outbox_poll_seconds: float = 0.0  # in cancelled() on the outbox's threads


class Outbox:
    """Sender threads: the calls handed in for one job run in order on one thread (a job's stream stays in order),
    off the decode loop; different jobs' sends overlap (each is a round trip to the server). A call that raises
    marks its job failed (the scheduler drops it at its next iteration); `seconds` sums the time in the calls, per
    kind of call (the `what` they were handed in with)."""

    def __init__(self, threads: int = 1):
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(max(1, threads))]
        self.seconds: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # calls handed in and not yet run (or dropped)
        self._deal = itertools.count()
        self._threads = [
            threading.Thread(target=self._run, args=(q,), name=f"mod-export-outbox-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()

    def put(self, job: Job, call: Callable[[], None], what: str) -> None:
        """Queue a call for the job's thread (jobs are dealt to the threads in turn, at their first call).
        Called from one thread only (the scheduler's loop)."""
        if job.sender < 0:
            job.sender = next(self._deal) % len(self._queues)
        with self._lock:
            self._pending += 1
        self._queues[job.sender].put((job, call, what))

    def wait_idle(self, timeout: float = 10) -> bool:
        """Wait until every call handed in so far has run; False if the timeout passed first. (A caller that steps
        the scheduler itself uses it to run the loop and the senders in lockstep, as the unit tests do.)"""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self, calls: queue.SimpleQueue) -> None:
        while True:
            item = calls.get()
            if item is None:
                return
            job, call, what = item
            start = time.perf_counter()
            if job.failed is None:  # else the client is gone: drop the rest of its stream
                try:
                    call()
                except Exception as exc:
                    logger.info("%s could not be sent (client gone?): %s", what, exc)
                    job.failed = f"the stream could not be sent: {exc}"
            with self._idle:
                self.seconds[what] += time.perf_counter() - start
                self._pending -= 1
                self._idle.notify_all()

    def close(self, timeout: float = 10) -> None:
        """Send what is queued, then stop the threads."""
        for calls in self._queues:
            calls.put(None)
        for thread in self._threads:
            thread.join(timeout)


class Scheduler:
    def __init__(
        self,
        decoder: SlotDecoder,
        on_change: Callable[[Scheduler], None] | None = None,
        outbox: Outbox | None = None,
        poll_interval: float = 0.0,
        step_delay: float = 0.0,
    ):
        """outbox: send tokens from its thread (None: inline). poll_interval: seconds between two cancellation
        polls of one request (0: every iteration). step_delay: seconds to wait after each decode step, a debugging
        knob that makes the model as slow as a bigger one (tests use it so that a cancel always lands before a
        request ends, whatever the host's speed); 0 in production."""
        self.decoder = decoder
        self.outbox = outbox
        self.poll_interval = poll_interval
        self.step_delay = step_delay
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

        def tell() -> None:
            job.on_cancel(reason)

        if self.outbox is not None:
            self.outbox.put(job, tell, CANCELLATION)
            return
        try:
            tell()
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
        index = job.produced - 1
        job.last = token
        if self.outbox is not None:
            self.outbox.put(job, lambda: job.emit(token, index, final), TOKEN)
            if not final and self._poll_due(job, time.perf_counter()):  # after its token, on the same thread
                self.outbox.put(job, lambda: self._poll_on_outbox(job), POLL)
        else:
            start = time.perf_counter()
            try:
                job.emit(token, index, final)
            except Exception:
                logger.info("a stream could not be sent to (client gone?): freeing slot %d", job.slot)
                self._finish(job, "the stream could not be sent")
                return
            finally:
                self.counters.send_seconds += time.perf_counter() - start
        if final:
            self._finish(job)

    def _poll_due(self, job: Job, now: float) -> bool:
        """Whether to ask the server now whether the job was cancelled (at most every poll_interval seconds)."""
        if now - job.polled < self.poll_interval:
            return False
        job.polled = now
        return True

    @staticmethod
    def _poll_on_outbox(job: Job) -> None:
        if job.cancelled():
            job.cancel_seen = True  # the loop drops it at its next iteration

    def _gone(self, job: Job, now: float) -> str | None:
        """Why the job must be dropped now (its client is gone or cancelled it), else None. With an outbox, a
        running job is polled on the outbox's thread after its tokens (each poll is a round trip to the server,
        kept off the decode loop); a waiting one, and every job without an outbox, is polled here."""
        if job.failed is not None:
            return job.failed
        if job.cancel_seen:
            return "cancelled"
        if self.outbox is not None and job.slot >= 0:
            return None
        if not self._poll_due(job, now):
            return None
        return "cancelled" if job.cancelled() else None

    def _admit(self) -> None:
        """Admit waiting jobs while slots are free: one prefill run per prompt length."""
        jobs: list[Job] = []
        with self._cond:
            while self.waiting and len(jobs) < self.decoder.free_slots:
                jobs.append(self.waiting.popleft())
        now = time.perf_counter()
        live = []
        for job in jobs:
            reason = self._gone(job, now)
            if reason is not None:
                self._drop(job, reason)
            else:
                live.append(job)
        joined = bool(self.running)
        groups: dict[int, list[Job]] = {}
        for job in live:
            groups.setdefault(len(job.prompt), []).append(job)
        for group in groups.values():
            start = time.perf_counter()
            try:
                admitted = self.decoder.admit_many([job.prompt for job in group])
            except Exception as exc:  # fails these requests, never the loop (their slots were not taken)
                logger.exception("prefill failed: ending %d request(s)", len(group))
                for job in group:
                    self._drop(job, f"prefill failed: {type(exc).__name__}: {exc}")
                continue
            finally:
                self.counters.model_seconds += time.perf_counter() - start
            self.counters.prefills += 1
            for job, (slot, logits) in zip(group, admitted):
                job.slot, job.generator = slot, job.sampling.generators(1)[0]
                self.running[slot] = job
                self.counters.admitted += 1
                self.counters.joined += joined
                self._emit(job, logits)

    def run_once(self) -> bool:
        """One iteration; False when there was nothing to do."""
        start = time.perf_counter()
        for job in list(self.running.values()):
            reason = self._gone(job, start)
            if reason is not None:
                logger.info("request %s: freeing slot %d", reason, job.slot)
                self._finish(job, reason)
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
            if self.step_delay > 0:
                time.sleep(self.step_delay)
        if self.outbox is not None:
            seconds = self.outbox.seconds
            self.counters.send_seconds = seconds[TOKEN] + seconds[CANCELLATION]
            self.counters.outbox_poll_seconds = seconds[POLL]
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
        if self.outbox is not None:
            self.outbox.close(timeout)
