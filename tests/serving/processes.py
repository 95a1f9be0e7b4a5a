"""The processes of a tritonserver's session (BundledServer starts it with start_new_session, so its process group
id is its pid): the server and its Python-backend stubs."""

from __future__ import annotations

import os
import time
from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """Pids whose process group is `pgid` (read from /proc; zombies included until they are reaped)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[2]) == pgid:  # after the command: state, ppid, pgrp
            members.append(int(stat.parent.name))
    return members


def group_alive(pgid: int, wait: float = 5.0) -> bool:
    """Whether any process of the group is still there after `wait` s (killed ones need a moment to be reaped)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
