"""Idle-thread policy for interleaved timing (no torch import here: it must run before torch loads).

Candidates take turns on the same cores. After a run, PyTorch's OpenMP threads and ONNX Runtime's
intra-op threads busy-wait for more work, and that spinning steals the cores from whichever candidate
runs next: a 512x512x2048 MatMul in ONNX Runtime took 16.4 ms right after a PyTorch call and 8.4 ms with
OpenMP's threads passive (PyTorch's own time: 12.3 vs 11.1 ms). So by default ONNX Runtime sessions stop
spinning when Run() returns (they still spin between the ops of a run) and OpenMP threads are passive
(OpenMP has no "stop after the call"; PyTorch pays a thread wake-up per parallel op instead).
"""

from __future__ import annotations

import os
import sys

UNSET = "unset (OpenMP default: spin for a while)"
_APPLIED: dict = {}


def set_idle_thread_policy(spinning: bool) -> dict:
    """spinning=False: OMP_WAIT_POLICY=PASSIVE unless the user set it (only effective before torch is
    imported, which is why the bench CLI calls this first); the caller makes ORT sessions with
    stop_spinning_after_run=True."""
    torch_loaded = "torch" in sys.modules
    if not spinning and not torch_loaded:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _APPLIED.clear()
    _APPLIED.update(
        {
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", UNSET),
            "ort_stop_spinning_after_run": not spinning,
            "torch_loaded_before_policy": torch_loaded,
        }
    )
    return dict(_APPLIED)


def applied_policy() -> dict:
    """What set_idle_thread_policy did last (empty when it was never called)."""
    return dict(_APPLIED)
