"""The one way tests run the real command line (a subprocess, as a user would) and check its error contract."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def run_cli(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """`mod-export ARGS...` in a fresh Python process; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "mod_export.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, needle: str) -> None:
    """Exit `code`, exactly one `error:` line holding `needle`, printed last, and no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0] and proc.stderr.rstrip().endswith(errors[0]), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root -> its sha256 (files), link target (symlinks) or 'dir': the file-system state to compare."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            state[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[rel] = "dir"
    return state


def split_predictors(model, input_ids, positions: slice, min_gap: float = 1e-3):
    """Shift each routed block's causal-predictor bias so that, on `input_ids` [B,T] (teacher forcing), the tokens
    at `positions` of row 0 take the block for a known, mixed pattern: the threshold sits in the widest gap between
    two sorted decision logits around the middle, at least `min_gap` from both (so ONNX Runtime's rounding cannot
    flip a decision). Block by block, as a shift changes the inputs of later blocks. Returns
    {routed block: [n] bool}, the takes at those positions of row 0, each with some takes and some skips.

    Tests that count taken or skipped blocks build their routing with it instead of hoping for a trained model's."""
    import torch

    from mod_export.models.causal import CausalRecord, causal_forward, routed_layers

    pattern = {}
    with torch.no_grad():
        for layer in routed_layers(model):
            record = CausalRecord()
            causal_forward(model, input_ids, record=record)
            values = record.decision[layer][0, positions].sort().values  # [n] ascending
            n = values.numel()
            gaps = values[1:] - values[:-1]  # gap i lies between values i and i+1
            low, high = n // 4, n - n // 4  # keep both sides at least a quarter of the tokens
            best = int(torch.argmax(gaps[low : high - 1])) + low
            assert float(gaps[best]) > 2 * min_gap, f"block {layer}: decision logits too close to split"
            threshold = float(values[best] + values[best + 1]) / 2
            model.blocks[layer].predictor.net[-1].bias -= threshold
            record = CausalRecord()
            causal_forward(model, input_ids, record=record)
            pattern[layer] = (record.decision[layer][0, positions] > 0).numpy()
    return pattern


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that `build(folder)` fills once per test run, however many pytest-xdist workers ask for it: the
    first builds it under a lock in the run's shared temporary root, the others wait and reuse it. Each caller gets
    a copy of its own, so a test that changes its copy never disturbs another worker's."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: <root>/popen-gwN
    folder, done = shared / f"{name}.shared", shared / f"{name}.built"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    copy = tmp_path_factory.mktemp(name)
    shutil.copytree(folder, copy, dirs_exist_ok=True)
    return copy
