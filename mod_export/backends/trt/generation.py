"""Generation on TensorRT: the plugin-form prefill/decode graphs (mod_export.graph.generation_plugin_form) as two
engines, driven as a stepper for mod_export.generation.loop, with the MoD-aware KV cache in device buffers this
object owns (docs/generation.md).

- **One engine per phase**, each with one optimisation profile. Prefill and decode are two different networks (the
  decode step has the past inputs, prefill has none); an engine holds one network, and profiles only vary the
  shapes of that network. Merging them into one network behind an `If` on a phase flag (Optimum's merged decoder)
  is what TensorRT 10.1-10.5 parses worst: both branches must have the same rank and the known failures of such
  graphs are open (NVIDIA/TensorRT#4032). Two engines share nothing but the plugin library; 10.3 supports that.
- **The cache lives in device buffers** [Bg,H,S,Dh] per block, keys and values, plus lengths [Bg] int64, allocated
  once per generation. Each is bound as the decode engine's `past_key_values.l.*` input *and* its `key.l`/`value.l`
  output: MoDCacheAppend writes the step's entries in place (the slot it writes, past_length, is masked out of the
  step's own attention, so the order of the write and the reads does not matter). Where TensorRT does not alias
  the plugin's output to its input (10.3 without PreviewFeature.ALIASED_PLUGIN_IO_10_03, which the build turns on
  where it exists), the plugin copies the cache first: 2 x B x H x S x Dh x element bytes per block per step
  (mod_export.models.generation_roofline has the bytes model; that copy has not been measured, no GPU here).
  Per step only tokens, positions and the active flags go up and logits, take and decisions come down.
- **CUDA graphs for decode at fixed batch sizes** (contract.CUDA_GRAPH_BATCHES): a batch is padded up to the next
  size with inactive rows (they take nothing and write nothing), the bindings never move during a generation,
  and after one eager step the decode enqueue is captured. Data-dependent shapes (MoDTakeCount's size tensor) and
  on-device control flow (the routed blocks' `If`) may make TensorRT's enqueue uncapturable; then the capture
  failure is recorded in `cuda_graphs` and decode runs eagerly.

Needs a GPU and TensorRT; it has never run on one. Its host logic (profiles, buffer sizes, per-step shapes and
bindings, compaction, lengths) runs here on CPU tensors against a mock TensorRT whose engines execute the plugin-form
ONNX with ONNX Runtime (tests/unit/test_trt_generation.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from mod_export.backends.onnxrt.generation import decode_layout, positions_from_mask
from mod_export.backends.trt.availability import import_tensorrt, require_gpu
from mod_export.backends.trt.builder import EngineSettings, Profile, build_engine
from mod_export.backends.trt.engine_runner import TRT_TO_TORCH
from mod_export.contract import ATTENTION_MASK, CUDA_GRAPH_BATCHES, DEFAULT_WORKSPACE_MB, INPUT_IDS, LOGITS
from mod_export.errors import InputError, MissingDependencyError, ModExportError
from mod_export.generation.loop import Step

logger = logging.getLogger(__name__)

POSITION_IDS, ACTIVE = "position_ids", "active"
PREFILL_INPUTS = (INPUT_IDS, ATTENTION_MASK, POSITION_IDS)
Shape = tuple[int, ...]


@dataclass(frozen=True)
class DecodeLayout:
    layers: int
    routed_layers: tuple[int, ...]
    heads: int
    head_dim: int

    @classmethod
    def of(cls, decode: onnx.ModelProto) -> DecodeLayout:
        layers, routed, heads, head_dim = decode_layout(decode)
        return cls(layers, tuple(routed), heads, head_dim)


def past_names(layer: int) -> tuple[str, str, str]:
    return f"past_length.{layer}", f"past_key_values.{layer}.key", f"past_key_values.{layer}.value"


def phase_profiles(
    layout: DecodeLayout, max_batch: int, max_context: int, opt_batch: int = 1, opt_context: int = 256
) -> dict[str, dict[str, tuple[Shape, Shape, Shape]]]:
    """The optimisation profile of each engine: {phase: {input: (min, opt, max)}}. Prefill: [B,P] inputs with
    P up to max_context; decode: [B,1] tokens, [B] flags and lengths, [B,H,S,Dh] caches with S up to max_context."""
    if not 1 <= opt_batch <= max_batch or max_context < 2:
        raise InputError(
            f"need 1 <= opt batch <= max batch and max context >= 2, got {opt_batch}/{max_batch}/{max_context}"
        )
    lo, opt, hi = 1, opt_batch, max_batch
    ctx = min(opt_context, max_context)
    prefill = {name: ((lo, 1), (opt, ctx), (hi, max_context)) for name in PREFILL_INPUTS}
    decode: dict[str, tuple[Shape, Shape, Shape]] = {
        INPUT_IDS: ((lo, 1), (opt, 1), (hi, 1)),
        POSITION_IDS: ((lo, 1), (opt, 1), (hi, 1)),
        ACTIVE: ((lo,), (opt,), (hi,)),
    }
    H, Dh = layout.heads, layout.head_dim
    for layer in range(layout.layers):
        length, key, value = past_names(layer)
        decode[length] = ((lo,), (opt,), (hi,))
        for name in (key, value):
            decode[name] = ((lo, H, 1, Dh), (opt, H, ctx, Dh), (hi, H, max_context, Dh))
    return {"prefill": prefill, "decode": decode}


def graph_batch(batch: int, batches: tuple[int, ...] = CUDA_GRAPH_BATCHES) -> int:
    """The decode batch a generation of `batch` rows runs at: the smallest captured size >= batch, else batch."""
    return next((b for b in sorted(batches) if b >= batch), batch)


def cache_bytes(layout: DecodeLayout, batch: int, capacity: int, element_bytes: int = 4) -> int:
    """Device bytes the session owns for one generation: keys + values [B,H,S,Dh] and lengths [B] per block."""
    per_block = 2 * batch * layout.heads * capacity * layout.head_dim * element_bytes + 8 * batch
    return layout.layers * per_block


def decode_shapes(layout: DecodeLayout, batch: int, capacity: int) -> dict[str, Shape]:
    """The decode engine's input shapes for a generation (fixed for all its steps: the bindings never move)."""
    shapes: dict[str, Shape] = {INPUT_IDS: (batch, 1), POSITION_IDS: (batch, 1), ACTIVE: (batch,)}
    for layer in range(layout.layers):
        length, key, value = past_names(layer)
        shapes[length] = (batch,)
        shapes[key] = shapes[value] = (batch, layout.heads, capacity, layout.head_dim)
    return shapes


def build_phase_engine(
    onnx_path: Path,
    engine_path: Path,
    profile: Profile,
    plugin_library: Path | None,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
) -> dict:
    """One phase's engine from its plugin-form ONNX (the one engine build, backends/trt/builder.py), with its profile
    and aliased plugin I/O where the version has the preview feature. Returns what was set (for the report)."""
    settings = EngineSettings(workspace_mb=workspace_mb, plugin_library=plugin_library, show_progress=False)
    built = build_engine(onnx_path, engine_path, settings, profile=profile, aliased_plugin_io=True)
    return {
        "onnx": onnx_path.name,
        "engine": engine_path.name,
        "aliased_plugin_io": built["aliased_plugin_io"],
        "inputs": len(profile),
    }


class TrtStepper:
    """prefill/step over the two engines (mod_export.generation.loop.Stepper). device: "cuda" (real) or "cpu" (the
    mock TensorRT of the tests, which reads and writes the CPU tensors' memory)."""

    def __init__(
        self,
        prefill_engine: Path,
        decode_engine: Path,
        layout: DecodeLayout,
        plugin_library: Path | None = None,
        device: str = "cuda",
        graph_batches: tuple[int, ...] = CUDA_GRAPH_BATCHES,
        max_cache: int | None = None,
        torch_module=None,
    ):
        """torch_module: the caller's torch (the cache lives in its CUDA tensors); never imported here, so that
        this module stays in the torch-free runtime's import graph (docs/architecture.md)."""
        if torch_module is None:
            raise MissingDependencyError(
                "generate() on TensorRT keeps its KV cache in torch CUDA tensors: import torch (a CUDA build) "
                "before creating the Session"
            )
        self.torch = torch = torch_module
        self.trt = trt = import_tensorrt()
        self.device = torch.device(device)
        self.on_gpu = self.device.type == "cuda"
        if self.on_gpu:
            require_gpu()
        log = trt.Logger(trt.Logger.WARNING)
        if plugin_library is not None and trt.get_plugin_registry().load_library(str(plugin_library)) is None:
            raise ModExportError(f"TensorRT could not load the plugin library {plugin_library}")
        runtime = trt.Runtime(log)
        self.engines = {}
        for phase, path in (("prefill", prefill_engine), ("decode", decode_engine)):
            engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
            if engine is None:
                raise ModExportError(f"TensorRT could not deserialize {path} (another TensorRT version or GPU?)")
            self.engines[phase] = engine
        self.contexts = {phase: engine.create_execution_context() for phase, engine in self.engines.items()}
        self.layout = layout
        self.routed_layers = list(layout.routed_layers)
        self.graph_batches = tuple(graph_batches)
        self.max_cache = max_cache
        self.stream = torch.cuda.Stream() if self.on_gpu else None
        self.cuda_graphs: dict[int, str] = {}  # decode batch -> "captured" or why not
        self._graph = None
        self.batch = 0
        self.keys: list = []
        self.values: list = []
        self.lengths: list = []
        self.host_lengths: list[np.ndarray] = []
        self.positions = np.zeros(0, np.int64)

    # ------------------------------------------------------------ engine I/O

    def _dtype(self, phase: str, name: str):
        dtype = self.engines[phase].get_tensor_dtype(name)
        key = getattr(dtype, "name", str(dtype)).split(".")[-1]
        return getattr(self.torch, TRT_TO_TORCH[key])

    def _outputs(self, phase: str) -> list[str]:
        engine = self.engines[phase]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return [n for n in names if engine.get_tensor_mode(n) == self.trt.TensorIOMode.OUTPUT]

    def _execute(self, phase: str) -> None:
        handle = self.stream.cuda_stream if self.stream is not None else 0
        if not self.contexts[phase].execute_async_v3(handle):
            raise ModExportError(f"TensorRT {phase} execution failed (see the TensorRT log)")
        if self.stream is not None:
            self.stream.synchronize()

    def _bind(self, phase: str, tensors: dict) -> None:
        context = self.contexts[phase]
        for name, tensor in tensors.items():
            context.set_tensor_address(name, tensor.data_ptr())

    # ------------------------------------------------------------ prefill

    def prefill(self, ids: np.ndarray, mask: np.ndarray, capacity: int) -> Step:
        torch, dev = self.torch, self.device
        if self.max_cache is not None and capacity > self.max_cache:
            raise InputError(f"prompt plus new tokens need a cache of {capacity}, the engines allow {self.max_cache}")
        B, P = ids.shape
        positions = positions_from_mask(mask)
        context = self.contexts["prefill"]
        inputs = {
            name: torch.as_tensor(np.ascontiguousarray(a, np.int64), device=dev)
            for name, a in zip(PREFILL_INPUTS, (ids, mask, positions))
        }
        for name, tensor in inputs.items():
            context.set_input_shape(name, tuple(tensor.shape))
        outs = {
            name: torch.empty(tuple(context.get_tensor_shape(name)), dtype=self._dtype("prefill", name), device=dev)
            for name in self._outputs("prefill")
        }
        self._bind("prefill", {**inputs, **outs})
        self._execute("prefill")
        self._allocate(B, capacity, outs, torch.as_tensor(mask != 0, device=dev))
        self.positions = np.zeros(self.batch, np.int64)
        self.positions[:B] = positions[:, -1] + 1
        self._bind_decode(capacity)
        host = {name: t.cpu().numpy() for name, t in outs.items() if not name.startswith(("key.", "value."))}
        return Step(
            host[LOGITS][:, -1],
            {i: host[f"take.{i}"].astype(bool) for i in self.routed_layers},
            {i: host[f"decision.{i}"] for i in self.routed_layers},
        )

    def _allocate(self, B: int, capacity: int, outs: dict, valid) -> None:
        """The cache buffers of this generation (padded to the decode batch), filled with each row's taken, real
        prompt entries, left-aligned: the one copy per generation (prompt entries only, on the device)."""
        torch, dev, lay = self.torch, self.device, self.layout
        self.batch = Bg = graph_batch(B, self.graph_batches)
        dtype = self._dtype("decode", past_names(0)[1])
        shape = (Bg, lay.heads, capacity, lay.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=dev) for _ in range(lay.layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=dev) for _ in range(lay.layers)]
        self.lengths = [torch.zeros(Bg, dtype=torch.int64, device=dev) for _ in range(lay.layers)]
        self.host_lengths = [np.zeros(Bg, np.int64) for _ in range(lay.layers)]
        for layer in range(lay.layers):
            take = outs[f"take.{layer}"].bool() & valid  # [B,P]
            for row in range(B):
                chosen = torch.nonzero(take[row]).flatten()
                n = int(chosen.numel())
                if n > capacity:
                    raise InputError("the prompt does not fit the KV cache")
                self.keys[layer][row, :, :n] = outs[f"key.{layer}"][row][:, chosen].to(dtype)
                self.values[layer][row, :, :n] = outs[f"value.{layer}"][row][:, chosen].to(dtype)
                self.host_lengths[layer][row] = n
            self.lengths[layer].copy_(torch.as_tensor(self.host_lengths[layer], device=dev))

    def _bind_decode(self, capacity: int) -> None:
        """Shapes and addresses for every step of this generation: the caches are input and output at once."""
        torch, dev = self.torch, self.device
        context, Bg = self.contexts["decode"], self.batch
        self.step_inputs = {
            INPUT_IDS: torch.zeros((Bg, 1), dtype=torch.int64, device=dev),
            POSITION_IDS: torch.zeros((Bg, 1), dtype=torch.int64, device=dev),
            ACTIVE: torch.zeros(Bg, dtype=torch.bool, device=dev),
        }
        bound = dict(self.step_inputs)
        for layer in range(self.layout.layers):
            length, key, value = past_names(layer)
            bound[length], bound[key], bound[value] = self.lengths[layer], self.keys[layer], self.values[layer]
        for name, shape in decode_shapes(self.layout, Bg, capacity).items():
            context.set_input_shape(name, shape)
        self.step_outputs = {}
        for name in self._outputs("decode"):
            kind, _, layer = name.partition(".")
            if kind in ("key", "value"):  # in place: the output is the cache buffer itself
                bound[name] = (self.keys if kind == "key" else self.values)[int(layer)]
            else:
                shape = tuple(context.get_tensor_shape(name))
                bound[name] = self.step_outputs[name] = torch.empty(
                    shape, dtype=self._dtype("decode", name), device=dev
                )
        self._bind("decode", bound)
        self._graph = None

    # ------------------------------------------------------------ decode

    def _run_decode(self) -> None:
        Bg, torch = self.batch, self.torch
        if self._graph is not None:
            self._graph.replay()
            self.stream.synchronize()
            return
        self._execute("decode")
        if self.on_gpu and Bg in self.graph_batches and Bg not in self.cuda_graphs:
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, stream=self.stream):
                    self.contexts["decode"].execute_async_v3(self.stream.cuda_stream)
                self.cuda_graphs[Bg] = "captured"
                self._graph = graph
            except Exception as exc:  # data-dependent shapes / conditionals: TensorRT may refuse capture
                self.cuda_graphs[Bg] = f"not capturable: {type(exc).__name__}: {str(exc)[:160]}"
                logger.info("decode at batch %d runs without a CUDA graph (%s)", Bg, self.cuda_graphs[Bg])

    def step(self, tokens: np.ndarray, active: np.ndarray) -> Step:
        torch = self.torch
        B, Bg = len(tokens), self.batch
        act = np.zeros(Bg, bool)
        act[:B] = np.asarray(active, bool)
        padded = np.zeros(Bg, np.int64)
        padded[:B] = np.asarray(tokens, np.int64)
        self.step_inputs[INPUT_IDS].copy_(torch.as_tensor(padded.reshape(Bg, 1)))
        self.step_inputs[POSITION_IDS].copy_(torch.as_tensor(self.positions.reshape(Bg, 1)))
        self.step_inputs[ACTIVE].copy_(torch.as_tensor(act))
        capacity = self.keys[0].shape[2]
        self._run_decode()
        host = {name: t.cpu().numpy() for name, t in self.step_outputs.items()}
        for layer in range(self.layout.layers):
            take = host[f"take.{layer}"].astype(bool) & act
            if take.any() and int(self.host_lengths[layer][take].max()) >= capacity:
                raise InputError("the KV cache is full: ask for fewer new tokens")
            self.host_lengths[layer] += take
            self.lengths[layer].add_(torch.as_tensor(take, device=self.device).to(torch.int64))  # the bound buffer
        self.positions += act
        return Step(
            host[LOGITS][:B, 0],
            {i: host[f"take.{i}"][:B].astype(bool) for i in self.routed_layers},
            {i: host[f"decision.{i}"][:B] for i in self.routed_layers},
        )

    def take_rates(self, row: int = 0) -> dict[int, float]:
        """Per routed layer: the fraction of the row's tokens so far that entered its cache."""
        fed = max(int(self.positions[row]), 1)
        return {layer: int(self.host_lengths[layer][row]) / fed for layer in self.routed_layers}
