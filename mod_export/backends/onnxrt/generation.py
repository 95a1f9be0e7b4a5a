"""Generation on ONNX Runtime: the export's step graph (mod_export/exporter/generation_graphs.py), or a prefill /
decode pair, driven as a stepper for mod_export.generation.loop, with the MoD-aware KV cache in buffers this object
owns.

The step graph serves both phases in one session, so a generation holds the weights (and ONNX Runtime's
pre-packed copies of them) once: prefill is a step whose cache inputs hold no valid entry, decode a step of one
token per row. A pair (the plugin form, which validation runs with reference functions) takes two sessions.

The cache buffers ([B,H,S,Dh] per layer, float32, and valid lengths [B]) are bound to the decoding session once
per generation with IOBinding, as OrtValues over the very numpy arrays (no copy on the CPU); each step ONNX
Runtime reads them in place, and the new entries (key.l/value.l, [B,H,1,Dh]) are written at each taking row's
length here. No step copies a cache. The CUDA execution provider path (device buffers) is not implemented yet:
ONNX Runtime has no in-place slice write, so it needs a device-side writer (see docs/generation.md).

The plugin form (mod_export.graph.generation_plugin_form) appends inside the graph: its key.l/value.l are the whole
caches. Here (reference functions, out of place) the stepper copies them back into its buffers, a cache copy per
layer per step that only validation pays; TensorRT writes them in place (mod_export.backends.trt.generation)."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort

from mod_export.backends.onnxrt.session import create_session
from mod_export.contract import ATTENTION_MASK, INPUT_IDS, LOGITS
from mod_export.errors import InputError
from mod_export.generation.loop import Step
from mod_export.graph.generation_plugin_form import is_plugin_decode

POSITION_IDS, ACTIVE = "position_ids", "active"


def past_names(layer: int) -> tuple[str, str, str]:
    return f"past_length.{layer}", f"past_key_values.{layer}.key", f"past_key_values.{layer}.value"


def decode_layout(decode: onnx.ModelProto) -> tuple[int, list[int], int, int]:
    """(blocks, routed block indices, heads, head width) read from a step or decode graph's I/O."""
    outputs = {o.name for o in decode.graph.output}
    layers = sum(1 for i in decode.graph.input if i.name.startswith("past_length."))
    routed = [i for i in range(layers) if f"decision.{i}" in outputs]
    key = next(i for i in decode.graph.input if i.name == past_names(0)[1])
    dims = key.type.tensor_type.shape.dim
    return layers, routed, int(dims[1].dim_value), int(dims[3].dim_value)


def bind_cache(binding: ort.IOBinding, lengths: list, keys: list, values: list) -> list[ort.OrtValue]:
    """Bind every block's cache (valid lengths [B], keys/values [B,H,S,Dh], contiguous numpy arrays) as decode
    inputs, as OrtValues over the arrays themselves (no copy on the CPU). Returns the OrtValues: keep them alive,
    ONNX Runtime reads the numpy memory through them."""
    kept = []
    for layer, arrays in enumerate(zip(lengths, keys, values)):
        for name, array in zip(past_names(layer), arrays):
            value = ort.OrtValue.ortvalue_from_numpy(array)
            binding.bind_ortvalue_input(name, value)
            kept.append(value)
    return kept


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    """[B,P] mask -> [B,P] each real token's index among its row's real tokens (0 at padding)."""
    return np.clip(np.cumsum(mask, axis=-1) - 1, 0, None).astype(np.int64)


def write_prefill(outs: dict, mask: np.ndarray, keys: list, values: list, lengths: list, rows: np.ndarray) -> None:
    """Compact each prompt row's taken, real tokens into cache rows `rows` (left-aligned), per block.
    outs: the prefill's outputs for B prompts; keys/values [R,H,S,Dh] and lengths [R] per block, R >= B."""
    for layer in range(len(keys)):
        take = outs[f"take.{layer}"].astype(bool) & (mask != 0)  # [B,P]
        for prompt, row in enumerate(rows):
            chosen = np.flatnonzero(take[prompt])
            keys[layer][row, :, : len(chosen)] = outs[f"key.{layer}"][prompt][:, chosen]
            values[layer][row, :, : len(chosen)] = outs[f"value.{layer}"][prompt][:, chosen]
            lengths[layer][row] = len(chosen)


def is_step_graph(graph: onnx.ModelProto) -> bool:
    """True for the step graph (tokens and a past cache in, both phases), False for one graph of a pair."""
    names = {i.name for i in graph.graph.input}
    return ATTENTION_MASK in names and past_names(0)[0] in names


def one_token(outs: dict) -> dict:
    """A step graph's outputs at P = 1 as a decode graph gives them: take.l / decision.l [B,1] -> [B] (views)."""
    return {k: v[:, 0] if k.startswith(("take.", "decision.")) else v for k, v in outs.items()}


def write_step(
    outs: dict, active: np.ndarray, keys: list, values: list, lengths: list, appends_in_graph: bool = False
) -> None:
    """A decode step's new entries (key.l/value.l [B,H,1,Dh]; take.l [B]) at each taking, active row's length, in
    place.
    appends_in_graph: the plugin-form decode graph already wrote them (key.l/value.l are the whole caches
    [B,H,S,Dh]); the caches are adopted as they are."""
    for layer in range(len(keys)):
        rows = np.flatnonzero(outs[f"take.{layer}"].astype(bool) & active)
        if rows.size == 0:
            continue
        at = lengths[layer][rows]
        if int(at.max()) >= keys[layer].shape[2]:
            raise InputError("the KV cache is full: ask for fewer new tokens")
        if appends_in_graph:
            np.copyto(keys[layer], outs[f"key.{layer}"])
            np.copyto(values[layer], outs[f"value.{layer}"])
        else:
            keys[layer][rows, :, at] = outs[f"key.{layer}"][rows, :, 0]
            values[layer][rows, :, at] = outs[f"value.{layer}"][rows, :, 0]
        lengths[layer][rows] += 1  # in place: a bound OrtValue sees it


class OrtStepper:
    def __init__(
        self,
        graph: onnx.ModelProto,
        prefill: onnx.ModelProto | None = None,
        providers: list[str] | None = None,
        threads: int | None = None,
        max_cache: int | None = None,
        shared_weights: bool = False,
    ):
        """graph: the step graph (both phases, one session), or the decode graph of a pair whose prefill graph is
        `prefill`. max_cache: the largest prompt + new tokens the export supports (None: unbounded).
        shared_weights: every session reads one memory map of the weights (create_session)."""
        providers = providers or ["CPUExecutionProvider"]
        if providers[0] != "CPUExecutionProvider":
            raise InputError("generation on ONNX Runtime runs on the CPU execution provider here (docs/generation.md)")
        self.unified = prefill is None
        if self.unified != is_step_graph(graph):
            raise InputError(
                "generation takes the step graph alone, or a decode graph with its prefill graph"
                if self.unified
                else "a step graph serves both phases: pass no prefill graph with it"
            )
        self.layers, self.routed_layers, self.heads, self.head_dim = decode_layout(graph)
        self.appends_in_graph = is_plugin_decode(graph)  # key.l/value.l are the appended caches [B,H,S,Dh]
        sessions = {"providers": providers, "threads": threads, "shared_weights": shared_weights}
        self.decode_session = create_session(graph, **sessions)
        self.prefill_session = self.decode_session if self.unified else create_session(prefill, **sessions)
        self.output_names = [o.name for o in self.decode_session.get_outputs()]
        self.active_input = ATTENTION_MASK if self.unified else ACTIVE  # which input says the active rows
        self.max_cache = max_cache
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.positions = np.zeros(0, dtype=np.int64)
        self._binding = None

    def fork(self) -> OrtStepper:
        """A stepper over the same ONNX Runtime sessions with a cache of its own: one per generation, so that
        generations on one Session run in parallel (InferenceSession.run is thread-safe; the IOBinding, the cache
        buffers and the positions are per stepper)."""
        other = copy.copy(self)  # shares the sessions and the layout
        other.keys, other.values, other.lengths = [], [], []
        other.positions = np.zeros(0, dtype=np.int64)
        other._binding = None
        return other

    # ------------------------------------------------------------ prefill

    def prefill(self, ids: np.ndarray, mask: np.ndarray, capacity: int) -> Step:
        if self.max_cache is not None and capacity > self.max_cache:
            raise InputError(f"prompt plus new tokens need a cache of {capacity}, the export allows {self.max_cache}")
        positions = positions_from_mask(mask)
        outs = self.run_prefill(ids, mask, positions)
        B = ids.shape[0]
        shape = (B, self.heads, capacity, self.head_dim)
        self.keys = [np.zeros(shape, np.float32) for _ in range(self.layers)]
        self.values = [np.zeros(shape, np.float32) for _ in range(self.layers)]
        self.lengths = [np.zeros(B, np.int64) for _ in range(self.layers)]
        write_prefill(outs, mask, self.keys, self.values, self.lengths, rows=np.arange(B))
        self.positions = positions[:, -1] + 1
        self._bind_cache()
        return Step(
            outs[LOGITS][:, -1],
            {i: outs[f"take.{i}"].astype(bool) for i in self.routed_layers},
            {i: outs[f"decision.{i}"] for i in self.routed_layers},
        )

    def run_prefill(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The prompt pass's outputs by name: logits [B,P,V], and per block take/key/value (decision if routed).
        On the step graph: a step whose cache holds no valid entry (one zero entry per row, past_length 0)."""
        names = [o.name for o in self.prefill_session.get_outputs()]
        feed = {INPUT_IDS: ids, ATTENTION_MASK: mask, POSITION_IDS: positions}
        if self.unified:
            B = ids.shape[0]
            empty = np.zeros((B, self.heads, 1, self.head_dim), np.float32)  # [B,H,1,Dh], never attended
            for layer in range(self.layers):
                length, key, value = past_names(layer)
                feed.update({length: np.zeros(B, np.int64), key: empty, value: empty})
        return dict(zip(names, self.prefill_session.run(None, feed)))

    def _bind_cache(self) -> None:
        """Bind every cache buffer once, as an OrtValue over the numpy array itself (no copy on the CPU)."""
        binding = self.decode_session.io_binding()
        self._cache_values = bind_cache(binding, self.lengths, self.keys, self.values)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self._binding = binding

    def take_rates(self, row: int = 0) -> dict[int, float]:
        """Per routed layer: the fraction of the row's tokens so far (prompt and fed) that entered its cache."""
        fed = max(int(self.positions[row]), 1)
        return {layer: int(self.lengths[layer][row]) / fed for layer in self.routed_layers}

    # ------------------------------------------------------------ decode

    def step_inputs(self, tokens: np.ndarray, positions: np.ndarray, active: np.ndarray) -> dict[str, np.ndarray]:
        """One decode step's token inputs for this stepper's graph: [B,1] ids and positions, and the rows that
        are active (the step graph's attention_mask [B,1] int64, a decode graph's active [B] bool)."""
        B = len(tokens)
        inputs = {INPUT_IDS: np.asarray(tokens, np.int64).reshape(B, 1), POSITION_IDS: positions.reshape(B, 1)}
        if self.unified:
            inputs[ATTENTION_MASK] = np.asarray(active, np.int64).reshape(B, 1)
        else:
            inputs[ACTIVE] = np.asarray(active, bool)
        return inputs

    def step(self, tokens: np.ndarray, active: np.ndarray) -> Step:
        binding = self._binding
        step_values = []
        for name, array in self.step_inputs(tokens, self.positions, active).items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))
            binding.bind_ortvalue_input(name, value)
            step_values.append(value)
        self.decode_session.run_with_iobinding(binding)
        # copies: ONNX Runtime reuses its output buffers on the next run
        outs = dict(zip(self.output_names, (np.array(v.numpy()) for v in binding.get_outputs())))
        if self.unified:
            outs = one_token(outs)
        active = np.asarray(active, bool)
        write_step(outs, active, self.keys, self.values, self.lengths, self.appends_in_graph)
        self.positions += active.astype(np.int64)
        return Step(
            outs[LOGITS][:, 0],
            {i: outs[f"take.{i}"].astype(bool) for i in self.routed_layers},
            {i: outs[f"decision.{i}"] for i in self.routed_layers},
        )
