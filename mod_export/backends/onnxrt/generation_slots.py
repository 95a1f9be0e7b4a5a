"""In-flight batching on the per-row MoD-aware KV cache: a pool of cache rows ("slots") that requests take and give
back while others keep generating. One decode step runs every busy row of the pool at once; prompts admitted
together are prefilled in one run.

Each slot owns its row of every block's cache ([slots,H,S,Dh] per block, float32), its valid length per block
([slots] int64: MoD blocks store only the tokens that took them, so rows differ) and its next position. A request
joins by a prefill (a row of a batch of prompts) whose taken entries are compacted into a free slot (the same
compaction as OrtStepper.prefill), so its tokens equal those of generating it alone; a finished or cancelled
request frees its slot (length 0) for the next. The decode step runs rows [0, n) with n = one past the highest
busy slot (free slots below it run with active=False: they take no block and write nothing); admissions take the
lowest free slot, so n stays as small as the load allows. The cache views of rows [0, n), the step's inputs and its
outputs are numpy buffers bound with IOBinding, rebound when n changes: a step allocates and copies nothing but
the logits it returns.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from mod_export.backends.onnxrt.generation import (
    POSITION_IDS,
    OrtStepper,
    bind_cache,
    one_token,
    positions_from_mask,
    write_prefill,
    write_step,
)
from mod_export.contract import INPUT_IDS, LOGITS, STEP_TOKENS_AXIS
from mod_export.errors import InputError
from mod_export.generation.loop import left_pad

OUTPUT_DTYPES = {"tensor(float)": np.float32, "tensor(bool)": np.bool_, "tensor(int64)": np.int64}


class SlotDecoder:
    def __init__(self, stepper: OrtStepper, slots: int, capacity: int):
        """stepper: its sessions are used (not its own cache). capacity: the longest prompt + new tokens of one
        request (cache entries per row)."""
        if slots < 1 or capacity < 2:
            raise InputError(f"a slot pool needs slots >= 1 and capacity >= 2, got {slots} and {capacity}")
        self.stepper, self.slots, self.capacity = stepper, slots, capacity
        shape = (slots, stepper.heads, capacity, stepper.head_dim)
        self.keys = [np.zeros(shape, np.float32) for _ in range(stepper.layers)]
        self.values = [np.zeros(shape, np.float32) for _ in range(stepper.layers)]
        self.lengths = [np.zeros(slots, np.int64) for _ in range(stepper.layers)]
        self.positions = np.zeros(slots, np.int64)
        self.busy = np.zeros(slots, bool)
        self._binding, self._bound_rows, self._views = None, 0, []
        self._inputs: dict[str, np.ndarray] = {}  # input_ids [n,1], position_ids [n,1], the active rows [n](,1)
        self._outputs: dict[str, np.ndarray] = {}  # outputs bound to buffers (batch the only free dimension)
        self.routed_runs = 0  # routed blocks that ran (some busy row took them), summed over decode steps

    @property
    def free_slots(self) -> int:
        return int((~self.busy).sum())

    @property
    def rows(self) -> int:
        """Rows a decode step runs now: one past the highest busy slot."""
        busy = np.flatnonzero(self.busy)
        return int(busy[-1]) + 1 if busy.size else 0

    def admit(self, prompt: list[int]) -> tuple[int, np.ndarray]:
        """Prefill one prompt into the lowest free slot; returns (slot, next-token logits [V] float32)."""
        ((slot, logits),) = self.admit_many([prompt])
        return slot, logits

    def admit_many(self, prompts: list[list[int]]) -> list[tuple[int, np.ndarray]]:
        """Prefill several prompts in one run into the lowest free slots; returns (slot, next-token logits [V]
        float32) per prompt, in order. Prompts of one length give each row exactly the cache and logits of its
        prompt alone; shorter prompts are left-padded (positions count real tokens, padding takes no block), which
        changes the attention's rounding (measured <= 1e-6 on the logits), so a scheduler that promises
        Session.generate's tokens groups prompts by length (mod_export.serving.inflight)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise InputError("every prompt needs at least one token")
        longest = max(len(p) for p in prompts)
        if longest >= self.capacity:
            raise InputError(f"a prompt of {longest} tokens leaves no room in a cache row of {self.capacity}")
        free = np.flatnonzero(~self.busy)
        if free.size < len(prompts):
            raise InputError(f"{len(prompts)} prompts for {free.size} free slots of {self.slots}")
        slots = free[: len(prompts)]
        ids, mask = left_pad(prompts)  # [b,P] each
        outs = self.stepper.run_prefill(ids, mask, positions_from_mask(mask))
        write_prefill(outs, mask, self.keys, self.values, self.lengths, rows=slots)
        self.positions[slots] = [len(p) for p in prompts]
        self.busy[slots] = True
        return [(int(slot), outs[LOGITS][row, -1]) for row, slot in enumerate(slots)]

    def free(self, slot: int) -> None:
        """Give the slot back: its cache row is empty for the next request."""
        self.busy[slot] = False
        for lengths in self.lengths:
            lengths[slot] = 0
        self.positions[slot] = 0

    def _bind(self, n: int) -> None:
        binding = self.stepper.decode_session.io_binding()
        rows = ([L[:n] for L in self.lengths], [k[:n] for k in self.keys], [v[:n] for v in self.values])  # contiguous
        self._views = bind_cache(binding, *rows)

        def bind(array: np.ndarray, name: str, output: bool = False) -> None:
            value = ort.OrtValue.ortvalue_from_numpy(array)
            (binding.bind_ortvalue_output if output else binding.bind_ortvalue_input)(name, value)
            self._views.append(value)  # keep alive: ONNX Runtime reads and writes the numpy memory through it

        idle = np.zeros(n, np.int64)
        inputs = self.stepper.step_inputs(idle, idle, idle.astype(bool))
        self._inputs = {name: np.array(array) for name, array in inputs.items()}  # a buffer each, written per step
        for name, array in self._inputs.items():
            bind(array, name)
        self._outputs = {}
        for output in self.stepper.decode_session.get_outputs():
            dims = [n if k == 0 else 1 if d == STEP_TOKENS_AXIS else d for k, d in enumerate(output.shape)]  # P = 1
            dtype = OUTPUT_DTYPES.get(output.type)
            if dtype is None or not all(isinstance(d, int) for d in dims):
                binding.bind_output(output.name, "cpu")  # ONNX Runtime allocates it: fetched after the run
                continue
            self._outputs[output.name] = np.empty(dims, dtype)
            bind(self._outputs[output.name], output.name, output=True)
        self._binding, self._bound_rows = binding, n

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed tokens [slots] int64 (read at busy slots) to every busy row; returns logits [n,V] of rows [0, n)."""
        n = self.rows
        if n == 0:
            raise InputError("no busy slot to step")
        if n != self._bound_rows:
            self._bind(n)
        self._inputs[INPUT_IDS][:, 0] = tokens[:n]
        self._inputs[POSITION_IDS][:, 0] = self.positions[:n]
        active = self.busy[:n].copy()
        self._inputs[self.stepper.active_input].reshape(n)[:] = active
        self.stepper.decode_session.run_with_iobinding(self._binding)
        outs = dict(self._outputs)
        if len(outs) < len(self.stepper.output_names):  # some outputs were left to ONNX Runtime to allocate
            fetched = zip(self.stepper.output_names, self._binding.get_outputs())
            outs.update((name, value.numpy()) for name, value in fetched if name not in outs)
        if self.stepper.unified:
            outs = one_token(outs)
        views = ([k[:n] for k in self.keys], [v[:n] for v in self.values], [L[:n] for L in self.lengths])
        write_step(outs, active, *views)
        self.routed_runs += sum(bool((outs[f"take.{layer}"] & active).any()) for layer in self.stepper.routed_layers)
        self.positions[:n] += active
        return outs[LOGITS][:, 0].copy()  # [n,V]: the buffer is the next step's
