"""One inference API over every backend: Session(DIR or file, backend=...).run(input_ids, attention_mask).

numpy in -> numpy out; torch tensors in -> torch tensors out (CUDA tensors stay on the device).

No torch here: this module, and everything it imports, runs with numpy, onnx, ONNX Runtime, Polygraphy and
onnx-graphsurgeon only (and TensorRT where present); pyproject.toml's import contract forbids torch in its import
graph. A caller who passes torch tensors has loaded torch already: the runtime takes that module from sys.modules.

Inputs are checked before they reach a backend: token ids must be integers in [0, vocab), the mask must have
their shape and hold only 0 and 1. Files of an export directory are checked against the sha256 values of its
manifest.json (skip_integrity=True for a file edited on purpose).

Threads: one Session may be used from many threads at once on the ONNX Runtime backend, as ONNX Runtime's
InferenceSession.Run promises; the TensorRT backend owns one execution context, so its runs are serialised
with a lock (use one Session per thread for parallel TensorRT work).
"""

from __future__ import annotations

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
from mod_export.decoding.loop import Event, Generation, generate, stream
from mod_export.decoding.sampling import Sampling
from mod_export.errors import InputError, IntegrityError, MissingDependencyError, ModExportError
from mod_export.graph.queries import idx_tensor_names
from mod_export.integrity import read_manifest, verify_files

BACKENDS = ("auto", "onnxruntime", "tensorrt")
FORMS = ("portable", "plugin")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _caller_torch():
    """The torch module of a caller who passed torch tensors (loaded by that caller, never imported here)."""
    return sys.modules["torch"]


def _check_integrity(path: Path, names: list[str], skip: bool) -> dict | None:
    """Check the files that will be loaded against the manifest of their directory; returns that manifest. An
    export directory must have one; a file outside any export directory has nothing to be checked against."""
    directory = path if path.is_dir() else path.parent
    if skip:
        try:
            return read_manifest(directory)
        except IntegrityError:
            return None
    manifest = read_manifest(directory)
    if manifest is None:
        if path.is_dir():
            raise IntegrityError(
                f"{directory} has no manifest.json, so its files cannot be checked; pass skip_integrity=True to load them anyway"
            )
        return None
    if not path.is_dir():
        names = [n for n in names if n in manifest["files"]]
    return verify_files(directory, names)


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
        if backend not in BACKENDS:
            raise ModExportError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if form not in FORMS:
            raise ModExportError(f"form must be one of {FORMS}, got {form!r}")
        path = Path(source)
        if not path.exists():
            raise ModExportError(f"{path} not found")
        engine = path if path.suffix in (".engine", ".plan") else path / ENGINE_FILE
        if backend == "auto":
            backend = "tensorrt" if engine.is_file() and self._tensorrt_usable() else "onnxruntime"
        self.backend = backend
        self._lock = threading.Lock() if backend == "tensorrt" else None
        if backend == "tensorrt":
            if not engine.is_file():
                raise ModExportError(f"no TensorRT engine at {engine} (export with --target trt)")
            library = engine.parent / LIBRARY_NAME
            names = [engine.name] + ([library.name] if library.is_file() else [])
            manifest = _check_integrity(path, names, skip_integrity)
            self.vocab = None
            self._idx_names = list((manifest or {}).get("routing_idx_tensors") or [])
            # numpy runs: Polygraphy's TrtRunner (no torch); torch CUDA tensors: the zero-copy runner, which
            # also captures CUDA graphs (cuda_graphs=True applies to torch input).
            self._runner = EngineRunner(
                engine, library if library.is_file() else None, self._idx_names, cuda_graphs=cuda_graphs
            )
            self._runner.activate()
            return
        onnx_file = path if path.suffix == ".onnx" else path / (PLUGIN_FILE if form == "plugin" else PORTABLE_FILE)
        if not onnx_file.is_file():
            raise ModExportError(f"no ONNX file at {onnx_file}")
        manifest = _check_integrity(path, [onnx_file.name], skip_integrity)
        self.providers = providers or available_providers()
        try:
            proto = onnx.load(str(onnx_file))
        except Exception as exc:  # protobuf's DecodeError and friends for a damaged file
            raise ModExportError(f"{onnx_file} is not a readable ONNX file ({type(exc).__name__})") from None
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
        self._source, self._manifest, self._threads = path, manifest, threads
        self._skip_integrity = skip_integrity
        self._stepper: OrtStepper | None = None

    @staticmethod
    def _tensorrt_usable() -> bool:
        try:
            import_tensorrt()
            require_gpu()
            return True
        except MissingDependencyError:
            return False

    # ------------------------------------------------------------ input checks

    def _check_ids(self, ids, is_torch: bool):
        dtype = ids.dtype
        integer = (
            (not dtype.is_floating_point and not dtype.is_complex and dtype != _caller_torch().bool)
            if is_torch
            else np.issubdtype(dtype, np.integer)
        )
        if not integer:
            raise InputError(f"input_ids must hold integer token ids, got dtype {dtype}")
        if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
            raise InputError(f"input_ids must be [batch, seq] with batch, seq >= 1, got shape {tuple(ids.shape)}")
        low, high = (int(ids.min()), int(ids.max()))
        if low < 0 or (self.vocab is not None and high >= self.vocab):
            bound = f"[0, {self.vocab})" if self.vocab is not None else ">= 0"
            raise InputError(f"input_ids must be token ids in {bound}, got values from {low} to {high}")

    @staticmethod
    def _check_mask(mask, shape, is_torch: bool):
        if tuple(mask.shape) != tuple(shape):
            raise InputError(f"attention_mask shape {tuple(mask.shape)} differs from input_ids {tuple(shape)}")
        dtype = mask.dtype
        ok = (
            (not dtype.is_floating_point and not dtype.is_complex)
            if is_torch
            else (np.issubdtype(dtype, np.integer) or dtype == np.bool_)
        )
        if not ok:
            raise InputError(
                f"attention_mask must hold 0 (padding) and 1 (token) as integers or booleans, got dtype {dtype}"
            )
        values = set(np.unique(mask.cpu().numpy() if is_torch else mask).tolist())
        if not values <= {0, 1}:
            raise InputError(f"attention_mask may hold only 0 (padding) and 1 (token), got {sorted(values)[:5]}")

    def _numpy_inputs(self, input_ids, attention_mask) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(input_ids)
        self._check_ids(ids, False)
        if attention_mask is None:
            mask = np.ones(ids.shape, np.int64)
        else:
            mask = np.asarray(attention_mask)
            self._check_mask(mask, ids.shape, False)
        return np.ascontiguousarray(ids, dtype=np.int64), np.ascontiguousarray(mask, dtype=np.int64)

    def check_inputs(self, input_ids, attention_mask=None) -> tuple[np.ndarray, np.ndarray]:
        """numpy inputs checked as run() checks them (InputError otherwise), as contiguous int64 [B,T] arrays;
        a mask of ones when attention_mask is None. A server checks each request with it before merging them."""
        return self._numpy_inputs(input_ids, attention_mask)

    # ------------------------------------------------------------ running

    def run(self, input_ids, attention_mask=None):
        """input_ids [B,T] integer token ids (numpy or torch), attention_mask [B,T] (1 token, 0 padding) or None."""
        if _is_torch(input_ids):
            return self._run_torch(input_ids, attention_mask)
        ids, mask = self._numpy_inputs(input_ids, attention_mask)
        feed = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        if self.backend == "tensorrt":
            with self._lock:  # one execution context: TensorRT runs are serialised
                return self._runner.infer(feed, check_inputs=False)[LOGITS]
        return self._runner.infer(feed, check_inputs=False)[LOGITS]

    # ------------------------------------------------------------ generation (docs/generation.md)

    def generation_stepper(self) -> OrtStepper:
        """The prefill/decode graphs of an export directory on ONNX Runtime (for in-flight batching, Triton)."""
        return self._generation_stepper()

    def _generation_stepper(self) -> OrtStepper:
        """The prefill/decode graphs of an export directory, loaded on first use."""
        if self._stepper is not None:
            return self._stepper
        info = (self._manifest or {}).get("generation")
        directory = self._source if self._source.is_dir() else self._source.parent
        if not info:
            raise InputError(
                f"{directory} was exported without the generation graphs (re-export it without --no-decode)"
            )
        if self.backend == "tensorrt":
            self._stepper = self._tensorrt_stepper(directory, info)
            return self._stepper
        names = [info["prefill"], info["decode"]]
        _check_integrity(directory, names, self._skip_integrity)
        try:
            prefill, decode = (onnx.load(str(directory / name)) for name in names)
        except Exception as exc:
            raise ModExportError(
                f"the generation graphs in {directory} are not readable ONNX ({type(exc).__name__})"
            ) from None
        self.max_context = int(info.get("max_context") or 0) or None
        self._stepper = OrtStepper(prefill, decode, providers=["CPUExecutionProvider"], threads=self._threads)
        return self._stepper

    def _tensorrt_stepper(self, directory: Path, info: dict):
        """The TensorRT backend of generate(): the two engines of `--target trt` (docs/generation.md)."""
        from mod_export.backends.trt.decoder import DecodeLayout, TrtStepper  # noqa: PLC0415 - TensorRT only

        names = [info.get("prefill_engine"), info.get("decode_engine")]
        if not all(names):
            raise InputError(f"{directory} has no generation engines (export it with --target trt on a GPU)")
        _check_integrity(directory, names, self._skip_integrity)
        library = directory / LIBRARY_NAME
        layout = DecodeLayout(
            int(info["layers"]), tuple(info["routed_layers"]), int(info["heads"]), int(info["head_dim"])
        )
        self.max_context = int(info.get("max_context") or 0) or None
        return TrtStepper(
            directory / names[0],
            directory / names[1],
            layout,
            library if library.is_file() else None,
            max_cache=self.max_context,
            torch_module=sys.modules.get("torch"),
        )

    def _prompts(self, prompts) -> list[list[int]]:
        """One prompt (a sequence of token ids) or a list of them -> list of int lists, checked against the vocabulary."""
        if isinstance(prompts, (str, bytes)):
            raise InputError("prompts are token ids (for the byte-level example model: list(text.encode()))")
        rows = list(prompts)
        if rows and np.ndim(rows[0]) == 0:
            rows = [rows]
        out = []
        for row in rows:
            ids = np.asarray(row)
            if ids.size == 0:
                raise InputError("every prompt needs at least one token")
            self._check_ids(ids.reshape(1, -1), False)
            out.append([int(t) for t in ids.reshape(-1)])
        return out

    def _prepare(self, prompts, max_new_tokens: int) -> tuple[OrtStepper, list[list[int]]]:
        stepper = self._generation_stepper()
        rows = self._prompts(prompts)
        longest = max(len(r) for r in rows)
        if self.max_context is not None and longest + max_new_tokens > self.max_context:
            raise InputError(
                f"prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) exceeds the export's "
                f"max context of {self.max_context} (re-export with a larger --max-context)"
            )
        return stepper, rows

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
        """Generate, one Event (the new token of every row) per step, as they come (mod_export.decoding.loop)."""
        sampling = Sampling(temperature, top_k, top_p, seed)
        stepper, rows = self._prepare(prompts, max_new_tokens)
        return stream(stepper, rows, max_new_tokens, sampling, tuple(stop_tokens))

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
        sampling = Sampling(temperature, top_k, top_p, seed)
        stepper, rows = self._prepare(prompts, max_new_tokens)
        return generate(stepper, rows, max_new_tokens, sampling, tuple(stop_tokens))

    def close(self) -> None:
        """Release the backend (also done when the Session is garbage-collected or leaves a `with` block)."""
        runner = getattr(self, "_runner", None)
        if runner is not None and runner.is_active:
            runner.deactivate()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def take_rates(self, row: int = 0) -> dict[int, float]:
        """After a generation: per routed layer, the fraction of the row's tokens that took it (entered its cache)."""
        return self._generation_stepper().take_rates(row)

    def run_with_routing(self, input_ids, attention_mask=None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(logits [B,T,V], per routed layer the selected positions idx [B,k] int32) from this session (ONNX
        Runtime backend, numpy in and out)."""
        if self.backend != "onnxruntime":
            raise ModExportError("run_with_routing is available on the ONNX Runtime backend")
        if not self._idx_names:
            raise ModExportError(
                "this ONNX file does not say where its routing decisions are (open the export directory, "
                "whose manifest.json names them)"
            )
        ids, mask = self._numpy_inputs(input_ids, attention_mask)
        out = self._runner.infer({INPUT_IDS: ids, ATTENTION_MASK: mask}, check_inputs=False)
        return out[LOGITS], [out[f"idx:{layer}"] for layer in range(len(self._idx_names))]

    def _run_engine(self, ids, mask):
        """torch CUDA tensors straight through the engine runner (no host copies)."""
        with self._lock:  # one execution context: TensorRT runs are serialised
            return self._runner.torch_engine(_caller_torch()).run(ids, mask)

    def _run_torch(self, input_ids, attention_mask):
        torch = _caller_torch()
        self._check_ids(input_ids, True)
        if attention_mask is not None:
            self._check_mask(attention_mask, input_ids.shape, True)
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
        torch = _caller_torch()
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
