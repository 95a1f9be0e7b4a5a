"""Session: one inference API over every runtime backend (mod_export.runtime's docstring says what it checks and
how it behaves under threads). A thin facade: the backend's runtime model (chosen once, from the registry) runs,
mod_export.runtime.checks checks, mod_export.runtime.generation generates."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import numpy as np

from mod_export.backends import registry
from mod_export.backends.model import RuntimeModel
from mod_export.contract import ATTENTION_MASK, INPUT_IDS
from mod_export.errors import UsageError
from mod_export.generation.loop import Event, Generation
from mod_export.generation.text import ByteCodec, export_codec
from mod_export.generation.tokenizer import TokenizerCodec
from mod_export.runtime.checks import check_options, numpy_inputs, same_kind, torch_inputs
from mod_export.runtime.generation import Generator


class Session:
    def __init__(
        self,
        source: str | os.PathLike,
        backend: str = "auto",
        form: str = "portable",
        providers: list[str] | None = None,
        cuda_graphs: bool = False,
        threads: int | None = None,
        skip_integrity: bool = False,
    ):
        """source: an export DIR, an .onnx file or an .engine file. backend: "auto" or a runtime backend of the
        registry (mod_export.backends.registry). form: which ONNX file of a DIR ("portable" = model.onnx,
        "plugin" = model.plugin.onnx, run through its reference functions)."""
        self._closed = True  # until built: a half-built Session is never used
        path = check_options(source, backend, form, providers, cuda_graphs, threads, skip_integrity)
        spec = registry.choose(path, backend)
        self.backend = spec.name
        self._model: RuntimeModel = spec.api().open_model(
            path,
            form=form,
            providers=providers,
            threads=threads,
            cuda_graphs=cuda_graphs,
            skip_integrity=skip_integrity,
        )
        self.vocab = self._model.vocab
        self._source, self._skip_integrity = path, skip_integrity
        self.providers = getattr(self._model, "providers", None)  # ONNX Runtime's execution providers
        self._generator = Generator(self._model, path, skip_integrity)
        self._closed = False

    @property
    def max_context(self) -> int | None:
        """The export's longest prompt + new tokens (known once the generation graphs are loaded)."""
        return self._generator.max_context

    @functools.cached_property
    def codec(self) -> ByteCodec | TokenizerCodec | None:
        """The model's text codec (encode text to token ids, decode generated ids incrementally; loaded on first
        use): its tokenizer's, a byte-level model's, or None for token ids only (mod_export.generation.text)."""
        return export_codec(self._source, self._model.manifest, self.vocab, self._skip_integrity)

    def _open(self) -> None:
        if self._closed:
            raise UsageError("this Session is closed: create a new Session to run the model again")

    # ------------------------------------------------------------ running

    def check_inputs(self, input_ids, attention_mask=None) -> tuple[np.ndarray, np.ndarray]:
        """numpy inputs checked as run() checks them (InputError otherwise), as contiguous int64 [B,T] arrays;
        a mask of ones when attention_mask is None. A server checks each request with it before merging them."""
        self._open()
        return numpy_inputs(input_ids, attention_mask, self.vocab)

    def run(self, input_ids, attention_mask=None):
        """input_ids [B,T] integer token ids (numpy or torch), attention_mask [B,T] (1 token, 0 padding) or None."""
        self._open()
        if same_kind(input_ids, attention_mask):
            return self._model.run_torch(*torch_inputs(input_ids, attention_mask, self.vocab))
        ids, mask = numpy_inputs(input_ids, attention_mask, self.vocab)
        return self._model.run({INPUT_IDS: ids, ATTENTION_MASK: mask})

    def run_with_routing(self, input_ids, attention_mask=None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(logits [B,T,V], per routed layer the selected positions idx [B,k] int32) from this session (ONNX
        Runtime backend, numpy in and out)."""
        self._open()
        same_kind(input_ids, attention_mask)
        ids, mask = numpy_inputs(input_ids, attention_mask, self.vocab)
        return self._model.run_with_routing({INPUT_IDS: ids, ATTENTION_MASK: mask})

    # ------------------------------------------------------------ generation (docs/generation.md)

    def generation_stepper(self):
        """The generation graphs' stepper (for in-flight batching, Triton). Its sessions are shared by every
        generation of this Session; on ONNX Runtime stepper.fork() has a cache of its own."""
        self._open()
        return self._generator.graphs()

    def stream(
        self, prompts, max_new_tokens=64, temperature=0.0, top_k=0, top_p=1.0, seed=0, stop_tokens=()
    ) -> Iterator[Event]:
        """Generate, one Event (the new token of every row) per step, as they come (mod_export.generation.loop).
        Arguments as generate(); checked at once (InputError), the model runs as the events are taken."""
        self._open()
        return self._generator.stream(prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens)

    def generate(
        self, prompts, max_new_tokens=64, temperature=0.0, top_k=0, top_p=1.0, seed=0, stop_tokens=()
    ) -> Generation:
        """Generate for one prompt or a batch of prompts (token ids); causal routing with the MoD-aware cache.
        Returns the new tokens per row, per-step timings and the take rate of each routed layer."""
        self._open()
        return self._generator.generate(prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens)

    def take_rates(self, row: int = 0) -> dict[int, float]:
        """After a generation (generate, or stream run to its end) in this thread: per routed layer, the fraction
        of the row's tokens (prompt and generated) that took it (entered its cache)."""
        self._open()
        return self._generator.take_rates(row)

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Release the backend (also done when the Session is garbage-collected or leaves a `with` block). Final:
        every later call raises UsageError; closing again does nothing."""
        self._closed = True
        model = getattr(self, "_model", None)
        if model is not None:
            model.close()
            self._generator = None

    def __enter__(self) -> Session:
        self._open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
