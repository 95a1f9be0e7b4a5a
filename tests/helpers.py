"""The one way tests run the real command line (a subprocess, as a user would) and check its error contract."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
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
