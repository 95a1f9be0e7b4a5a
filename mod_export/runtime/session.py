"""Session: one inference API over every backend (mod_export.runtime's docstring says what it checks and how it
behaves under threads)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from mod_export.backends.onnxrt.decoder import OrtStepper
from mod_export.backends.onnxrt.runner import idx_outputs, onnxrt_runner
from mod_export.backends.onnxrt.session import available_providers
from mod_export.backends.trt.availability import import_tensorrt, require_gpu
from mod_export.backends.trt.runner import EngineRunner
from mod_export.contract import ATTENTION_MASK, ENGINE_FILE, INPUT_IDS, LIBRARY_NAME, LOGITS, PLUGIN_FILE, PORTABLE_FILE
from mod_export.decoding.arguments import integer, prompt_ids, prompt_rows, token_ids
from mod_export.decoding.loop import Event, Generation, generate, stream
from mod_export.decoding.sampling import Sampling
from mod_export.decoding.text import ByteCodec, codec_for
from mod_export.errors import ExportError, InputError, MissingDependencyError, UsageError
from mod_export.graph.queries import idx_tensor_names
from mod_export.runtime.checks import (
    caller_torch,
    check_ids,
    check_integrity,
    check_mask,
    check_options,
    numpy_inputs,
    same_kind,
)


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
        """source: an export DIR, an .onnx file or an .engine file. form: which ONNX file of a DIR
        ("portable" = model.onnx, "plugin" = model.plugin.onnx, run through its reference functions)."""
        self._closed = True  # until built: a half-built Session is never used
        path = check_options(source, backend, form, providers, cuda_graphs, threads, skip_integrity)
        engine = path if path.suffix in (".engine", ".plan") else path / ENGINE_FILE
        if backend == "auto":
            backend = "tensorrt" if engine.is_file() and self._tensorrt_usable() else "onnxruntime"
        self.backend = backend
        self._lock = threading.Lock() if backend == "tensorrt" else None
        self._source, self._threads, self._skip_integrity = path, threads, skip_integrity
        self._stepper = None  # the generation graphs, loaded on first use
        self._load_lock = threading.Lock()  # one load of the generation graphs, whatever the threads
        self._generation_lock = threading.Lock()  # TensorRT: one generation at a time (one set of contexts)
        self._local = threading.local()  # this thread's last generation, for take_rates()
        self.max_context: int | None = None
        if backend == "tensorrt":
            self._open_engine(path, engine, cuda_graphs, skip_integrity)
        else:
            self._open_onnx(path, form, providers, threads, skip_integrity)
        self._closed = False

    def _open_engine(self, path: Path, engine: Path, cuda_graphs: bool, skip_integrity: bool) -> None:
        if not engine.is_file():
            raise InputError(f"no TensorRT engine at {engine} (export with --target trt)")
        library = engine.parent / LIBRARY_NAME
        names = [engine.name] + ([library.name] if library.is_file() else [])
        self._manifest = check_integrity(path, names, skip_integrity)
        self.vocab = None
        self._idx_names = list((self._manifest or {}).get("routing_idx_tensors") or [])
        # numpy runs: Polygraphy's TrtRunner (no torch); torch CUDA tensors: the zero-copy runner, which
        # also captures CUDA graphs (cuda_graphs=True applies to torch input).
        self._runner = EngineRunner(
            engine, library if library.is_file() else None, self._idx_names, cuda_graphs=cuda_graphs
        )
        self._runner.activate()

    def _open_onnx(self, path: Path, form: str, providers, threads, skip_integrity: bool) -> None:
        onnx_file = path if path.suffix == ".onnx" else path / (PLUGIN_FILE if form == "plugin" else PORTABLE_FILE)
        if not onnx_file.is_file():
            raise InputError(f"no ONNX file at {onnx_file}")
        manifest = check_integrity(path, [onnx_file.name], skip_integrity)
        self.providers = list(providers or available_providers())
        try:
            proto = onnx.load(str(onnx_file))
        except Exception as exc:  # protobuf's DecodeError and friends for a damaged file
            raise ExportError(f"{onnx_file} is not a readable ONNX file ({type(exc).__name__})") from None
        # Every routed layer's selection idx[B,k] is also an output: small, computed anyway, and it lets
        # run_with_routing() report what this very session decided (the logits are unaffected).
        names = idx_tensor_names(proto) or list((manifest or {}).get("routing_idx_tensors") or [])
        produced = {o for n in proto.graph.node for o in n.output}
        self._idx_names = [n for n in names if n in produced]
        logits = next((o for o in proto.graph.output if o.name == LOGITS), None)
        last = logits.type.tensor_type.shape.dim[-1] if logits is not None else None
        self.vocab = int(last.dim_value) if last is not None and last.HasField("dim_value") else None
        self._runner = onnxrt_runner(
            proto, "onnxruntime", idx_outputs(self._idx_names), providers=self.providers, threads=threads
        )
        self._runner.activate()
        self._ort = self._runner.sess
        self._manifest = manifest

    @staticmethod
    def _tensorrt_usable() -> bool:
        try:
            import_tensorrt()
            require_gpu()
            return True
        except MissingDependencyError:
            return False

    def _open(self) -> None:
        if self._closed:
            raise UsageError("this Session is closed: create a new Session to run the model again")

    @property
    def codec(self) -> ByteCodec | None:
        """The model's text codec (encode text to token ids, decode generated ids incrementally): a byte-level
        model's (vocabulary 256), or None for a model that takes token ids only (mod_export.decoding.text)."""
        return codec_for(self.vocab)

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
            return self._run_torch(input_ids, attention_mask)
        ids, mask = numpy_inputs(input_ids, attention_mask, self.vocab)
        feed = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        if self.backend == "tensorrt":
            with self._lock:  # one execution context: TensorRT runs are serialised
                return self._runner.infer(feed, check_inputs=False)[LOGITS]
        return self._runner.infer(feed, check_inputs=False)[LOGITS]

    def run_with_routing(self, input_ids, attention_mask=None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(logits [B,T,V], per routed layer the selected positions idx [B,k] int32) from this session (ONNX
        Runtime backend, numpy in and out)."""
        self._open()
        if self.backend != "onnxruntime":
            raise UsageError("run_with_routing is available on the ONNX Runtime backend")
        if not self._idx_names:
            raise InputError(
                "this ONNX file does not say where its routing decisions are (open the export directory, "
                "whose manifest.json names them)"
            )
        same_kind(input_ids, attention_mask)
        ids, mask = numpy_inputs(input_ids, attention_mask, self.vocab)
        out = self._runner.infer({INPUT_IDS: ids, ATTENTION_MASK: mask}, check_inputs=False)
        return out[LOGITS], [out[f"idx:{layer}"] for layer in range(len(self._idx_names))]

    # ------------------------------------------------------------ generation (docs/generation.md)

    def generation_stepper(self) -> OrtStepper:
        """The prefill/decode graphs of an export directory on ONNX Runtime (for in-flight batching, Triton). Its
        sessions are shared by every generation of this Session; stepper.fork() has a cache of its own."""
        self._open()
        return self._generation_graphs()

    def _generation_graphs(self):
        """The prefill/decode graphs of an export directory, loaded once (whatever the threads)."""
        with self._load_lock:
            if self._stepper is None:
                self._stepper = self._load_generation()
            return self._stepper

    def _load_generation(self):
        directory = self._source if self._source.is_dir() else self._source.parent
        if self._manifest is None:
            raise InputError(
                f"{self._source} has no manifest.json beside it: generation needs an export directory (its "
                "manifest names the prefill and decode graphs)"
            )
        info = self._manifest.get("generation")
        if not info or "prefill" not in info:
            raise InputError(
                f"{directory} was exported without the generation graphs (re-export it without --no-decode)"
            )
        self.max_context = int(info.get("max_context") or 0) or None
        if self.backend == "tensorrt":
            return self._tensorrt_stepper(directory, info)
        names = [info["prefill"], info["decode"]]
        check_integrity(directory, names, self._skip_integrity)
        try:
            prefill, decode = (onnx.load(str(directory / name)) for name in names)
        except Exception as exc:
            raise ExportError(
                f"the generation graphs in {directory} are not readable ONNX ({type(exc).__name__})"
            ) from None
        return OrtStepper(prefill, decode, providers=["CPUExecutionProvider"], threads=self._threads)

    def _tensorrt_stepper(self, directory: Path, info: dict):
        """The TensorRT backend of generate(): the two engines of `--target trt` (docs/generation.md)."""
        from mod_export.backends.trt.decoder import DecodeLayout, TrtStepper  # noqa: PLC0415 - TensorRT only

        names = [info.get("prefill_engine"), info.get("decode_engine")]
        if not all(names):
            raise InputError(f"{directory} has no generation engines (export it with --target trt on a GPU)")
        check_integrity(directory, names, self._skip_integrity)
        library = directory / LIBRARY_NAME
        layout = DecodeLayout(
            int(info["layers"]), tuple(info["routed_layers"]), int(info["heads"]), int(info["head_dim"])
        )
        return TrtStepper(
            directory / names[0],
            directory / names[1],
            layout,
            library if library.is_file() else None,
            max_cache=self.max_context,
            torch_module=sys.modules.get("torch"),
        )

    def _prepare(self, prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens) -> tuple:
        """Every argument checked (InputError), then the stepper of this generation: on ONNX Runtime a fork with
        its own cache over the shared sessions, on TensorRT the one stepper (generations there take turns)."""
        self._open()
        sampling = Sampling(temperature, top_k, top_p, seed)
        max_new = integer("max_new_tokens", max_new_tokens, 1)
        stops = tuple(token_ids("stop_tokens", stop_tokens, self.vocab))
        rows = [prompt_ids(row, self.vocab) for row in prompt_rows(prompts)]
        graphs = self._generation_graphs()
        longest = max(len(r) for r in rows)
        if self.max_context is not None and longest + max_new > self.max_context:
            raise InputError(
                f"prompt ({longest} tokens) + max_new_tokens ({max_new}) exceeds the export's "
                f"max context of {self.max_context} (re-export with a larger --max-context)"
            )
        stepper = graphs.fork() if isinstance(graphs, OrtStepper) else graphs
        return stepper, rows, max_new, sampling, stops

    def _turn(self, stepper, rows: int):
        """The context a generation runs in: TensorRT's one stepper serialises them; records take_rates()'s."""
        self._local.last = (stepper, rows)
        return self._generation_lock if self.backend == "tensorrt" else contextlib.nullcontext()

    def stream(
        self,
        prompts,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        stop_tokens: tuple[int, ...] = (),
    ) -> Iterator[Event]:
        """Generate, one Event (the new token of every row) per step, as they come (mod_export.decoding.loop).
        The arguments are checked at once (InputError); the model runs as the events are taken."""
        stepper, rows, max_new, sampling, stops = self._prepare(
            prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens
        )
        return self._events(stepper, rows, max_new, sampling, stops)

    def _events(self, stepper, rows, max_new, sampling, stops) -> Iterator[Event]:
        with self._turn(stepper, len(rows)):
            yield from stream(stepper, rows, max_new, sampling, stops)

    def generate(
        self,
        prompts,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        stop_tokens: tuple[int, ...] = (),
    ) -> Generation:
        """Generate for one prompt or a batch of prompts (token ids); causal routing with the MoD-aware cache.
        Returns the new tokens per row, per-step timings and the take rate of each routed layer."""
        stepper, rows, max_new, sampling, stops = self._prepare(
            prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens
        )
        with self._turn(stepper, len(rows)):
            return generate(stepper, rows, max_new, sampling, stops)

    def take_rates(self, row: int = 0) -> dict[int, float]:
        """After a generation (generate, or stream run to its end) in this thread: per routed layer, the fraction
        of the row's tokens (prompt and generated) that took it (entered its cache)."""
        self._open()
        last = getattr(self._local, "last", None)
        if last is None:
            raise UsageError("take_rates() reports on a generation: call generate() or stream() first, in this thread")
        stepper, rows = last
        if integer("row", row, 0) >= rows:
            raise InputError(f"row must be in [0, {rows}) for the last generation's {rows} prompts, got {row}")
        return stepper.take_rates(int(row))

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Release the backend (also done when the Session is garbage-collected or leaves a `with` block). Final:
        every later call raises UsageError; closing again does nothing."""
        self._closed = True
        runner = getattr(self, "_runner", None)
        if runner is not None and runner.is_active:
            runner.deactivate()
        self._stepper = None

    def __enter__(self) -> Session:
        self._open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # ------------------------------------------------------------ torch tensors

    def _run_engine(self, ids, mask):
        """torch CUDA tensors straight through the engine runner (no host copies)."""
        with self._lock:  # one execution context: TensorRT runs are serialised
            return self._runner.torch_engine(caller_torch()).run(ids, mask)

    def _run_torch(self, input_ids, attention_mask):
        torch = caller_torch()
        check_ids(input_ids, True, self.vocab)
        if attention_mask is not None:
            check_mask(attention_mask, input_ids.shape, True)
        ids = input_ids.to(torch.int64)
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(torch.int64)
        if self.backend == "tensorrt":
            return self._run_engine(ids, mask)
        if ids.is_cuda and "CUDAExecutionProvider" in self.providers:
            return self._run_ort_on_device(ids.contiguous(), mask.contiguous())
        return torch.from_numpy(self.run(ids.cpu().numpy(), mask.cpu().numpy())).to(ids.device)

    def _run_ort_on_device(self, ids, mask):
        """IO binding: inputs and logits stay in CUDA memory (onnxruntime-gpu only; never run on the CPU-only
        development machines)."""
        torch = caller_torch()
        vocab = self._ort.get_outputs()[0].shape[-1]
        logits = torch.empty((*ids.shape, vocab), dtype=torch.float32, device=ids.device)
        binding = self._ort.io_binding()
        for name, tensor in ((INPUT_IDS, ids), (ATTENTION_MASK, mask)):
            binding.bind_input(name, "cuda", ids.device.index or 0, np.int64, tuple(tensor.shape), tensor.data_ptr())
        binding.bind_output(LOGITS, "cuda", ids.device.index or 0, np.float32, tuple(logits.shape), logits.data_ptr())
        for name in self._idx_names:  # the routing outputs stay on the device, allocated by ONNX Runtime
            binding.bind_output(name, "cuda", ids.device.index or 0)
        self._ort.run_with_iobinding(binding)
        return logits
