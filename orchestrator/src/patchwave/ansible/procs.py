"""Processes: is a pid alive, and stopping the ansible-playbook runs a dead orchestrator left."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

RUN_MARKER = "PATCHWAVE_RUN"


def stop_strays(cycle_id: str, proc: Path = Path("/proc"), grace: float = 10.0) -> list[str]:
    """Stop ansible-playbook processes of `cycle_id` whose orchestrator is gone. ansible-runner
    starts ansible-playbook in a session of its own, so a SIGKILLed orchestrator leaves it
    running; a resumed cycle must not deploy alongside it. Returns what was stopped."""
    prefix = f"{RUN_MARKER}={cycle_id}:".encode()
    groups: dict[int, str] = {}
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            marker = next((item for item in environ if item.startswith(prefix)), None)
            if marker is None:
                continue
            owner = int(marker[len(prefix):].decode() or "0")
            if owner and alive(owner):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")[:160]
            groups.setdefault(os.getpgid(int(entry.name)), f"pid {entry.name} ({command.strip()})")
        except (OSError, ValueError):
            continue
    for group in groups:
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + grace
    for group in groups:
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
    return sorted(groups.values())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
