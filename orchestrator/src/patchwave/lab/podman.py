"""The only place that runs podman (and the other host tools the lab needs)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from patchwave.errors import PatchwaveError

_CONF = Path(__file__).resolve().parent / "data" / "containers.conf"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(_CONF))
    env["LC_ALL"] = "C"
    return env


def run(argv: Sequence[str], *, check: bool = True, stdin: bytes | None = None,
        timeout: float | None = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command with the lab's podman configuration; a failure carries cmd/rc/output."""
    try:
        proc = subprocess.run(
            list(argv), input=stdin.decode() if stdin is not None else None, capture_output=True,
            text=True, env=_env(), timeout=timeout, cwd=cwd, check=False,
        )
    except FileNotFoundError as exc:
        raise PatchwaveError(f"{argv[0]} is not installed: run scripts/setup.sh") from exc
    except subprocess.TimeoutExpired as exc:
        raise PatchwaveError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        raise PatchwaveError(
            f"command failed (rc={proc.returncode}): {' '.join(argv)}\n{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def podman(*args: str, check: bool = True, timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
    return run(["podman", *args], check=check, timeout=timeout)


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def container_state(name: str) -> str | None:
    """`running`, `exited`, … or None when there is no such container."""
    proc = podman("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def network_exists(name: str) -> bool:
    return podman("network", "exists", name, check=False).returncode == 0


def exec_in(container: str, *argv: str, check: bool = True, timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
    return podman("exec", container, *argv, check=check, timeout=timeout)
