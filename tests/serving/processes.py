"""The processes of a tritonserver's session (BundledServer starts it with start_new_session, so its process group
id is its pid): the server and its Python-backend stubs."""

from __future__ import annotations

import time
from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """Pids whose process group is `pgid`, zombies left out (read from /proc: a killed process is a zombie until
    something reaps it, which is not always quick where PID 1 is not an init)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":  # after the command: state, ppid, pgrp
            members.append(int(stat.parent.name))
    return members


def group_alive(pgid: int, wait: float = 5.0) -> bool:
    """Whether a live process of the group is still there after `wait` s (killed ones take a moment to die)."""
    deadline = time.monotonic() + wait
    while group_members(pgid):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return False
