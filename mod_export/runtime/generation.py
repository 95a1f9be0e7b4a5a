"""Generation for a Session: its arguments checked, the export's generation graphs loaded once from the backend's
runtime model, and each call run on a stepper of its own (ONNX Runtime: a fork with its own cache over the shared
sessions) or in turn (a backend with serial_generation, TensorRT). docs/generation.md says what the graphs are."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from mod_export.backends.model import RuntimeModel
from mod_export.errors import InputError, UsageError
from mod_export.generation.arguments import integer, prompt_ids, prompt_rows, token_ids
from mod_export.generation.loop import Event, Generation, generate, stream
from mod_export.generation.sampling import Sampling


class Generator:
    def __init__(self, model: RuntimeModel, source: Path, skip_integrity: bool):
        self.model, self.source, self.skip_integrity = model, source, skip_integrity
        self.max_context: int | None = None  # the export's longest prompt + new tokens, once the graphs are loaded
        self._graphs = None  # the stepper over the generation graphs, loaded on first use
        self._load_lock = threading.Lock()  # one load, whatever the threads
        self._turns = threading.Lock() if model.serial_generation else None
        self._local = threading.local()  # this thread's last generation, for take_rates()

    def graphs(self):
        """The stepper over the export's generation graphs, loaded once."""
        with self._load_lock:
            if self._graphs is None:
                self._graphs = self._load()
            return self._graphs

    def _load(self):
        directory = self.source if self.source.is_dir() else self.source.parent
        manifest = self.model.manifest
        if manifest is None:
            raise InputError(
                f"{self.source} has no manifest.json beside it: generation needs an export directory (its "
                "manifest names the generation graphs)"
            )
        info = manifest.get("generation")
        if not info or not ({"step", "prefill"} & set(info)):
            raise InputError(
                f"{directory} was exported without the generation graphs (re-export it without --no-decode)"
            )
        self.max_context = int(info.get("max_context") or 0) or None
        return self.model.stepper(directory, info, self.max_context, self.skip_integrity)

    def _prepare(self, prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens) -> tuple:
        """Every argument checked (InputError), then this call's stepper."""
        vocab = self.model.vocab
        sampling = Sampling(temperature, top_k, top_p, seed)
        max_new = integer("max_new_tokens", max_new_tokens, 1)
        stops = tuple(token_ids("stop_tokens", stop_tokens, vocab))
        rows = [prompt_ids(row, vocab) for row in prompt_rows(prompts)]
        graphs = self.graphs()
        longest = max(len(r) for r in rows)
        if self.max_context is not None and longest + max_new > self.max_context:
            raise InputError(
                f"prompt ({longest} tokens) + max_new_tokens ({max_new}) exceeds the export's "
                f"max context of {self.max_context} (re-export with a larger --max-context)"
            )
        stepper = graphs if self._turns is not None else graphs.fork()
        self._local.last = (stepper, len(rows))
        return stepper, rows, max_new, sampling, stops

    def _turn(self):
        return self._turns if self._turns is not None else contextlib.nullcontext()

    def stream(self, *args) -> Iterator[Event]:
        """(prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens): checked now, run as taken."""
        return self._events(*self._prepare(*args))

    def _events(self, stepper, rows, max_new, sampling, stops) -> Iterator[Event]:
        with self._turn():
            yield from stream(stepper, rows, max_new, sampling, stops)

    def generate(self, *args) -> Generation:
        stepper, rows, max_new, sampling, stops = self._prepare(*args)
        with self._turn():
            return generate(stepper, rows, max_new, sampling, stops)

    def take_rates(self, row) -> dict[int, float]:
        last = getattr(self._local, "last", None)
        if last is None:
            raise UsageError("take_rates() reports on a generation: call generate() or stream() first, in this thread")
        stepper, rows = last
        if integer("row", row, 0) >= rows:
            raise InputError(f"row must be in [0, {rows}) for the last generation's {rows} prompts, got {row}")
        return stepper.take_rates(int(row))
