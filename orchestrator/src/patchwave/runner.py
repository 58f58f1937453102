"""The only importer of ansible_runner. Results come from runner status, stats and host
events — never from parsing stdout."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from patchwave.models import HostResult

# Module results the orchestrator reads back, by task action.
TRACKED_ACTIONS = {
    "patchwave.endpoint.pending_updates",
    "patchwave.endpoint.stage_updates",
    "patchwave.endpoint.apply_updates",
    "patchwave.endpoint.rollback_updates",
    "ansible.builtin.reboot",
}
Progress = Callable[[str], None]


def _tools_on_path() -> str:
    """PATH with this interpreter's bin first, so ansible-runner finds the virtualenv's
    ansible-playbook and ansible-inventory even when `patchwave` was called by its full path."""
    bindir = str(Path(sys.executable).parent)
    current = os.environ.get("PATH", "")
    if bindir not in current.split(os.pathsep):
        os.environ["PATH"] = f"{bindir}{os.pathsep}{current}"
    return os.environ["PATH"]


@dataclass
class RunResult:
    status: str
    rc: int
    stats: dict[str, Any]
    hosts: dict[str, HostResult] = field(default_factory=dict)
    # action -> host -> module result
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def result(self, action: str, host: str) -> dict[str, Any] | None:
        return self.results.get(action, {}).get(host)


class PlaybookRunner:
    def __init__(self, root: Path, work_dir: Path, progress: Progress | None = None) -> None:
        self.root = root
        self.work_dir = work_dir
        self.progress = progress or (lambda _m: None)

    def run(self, playbook: str, inventory: Path, *, ident: str, limit: list[str] | None = None,
            extravars: dict[str, Any] | None = None, job_timeout: int = 4 * 3600) -> RunResult:
        results: dict[str, dict[str, dict[str, Any]]] = {}
        failures: dict[str, tuple[bool, str]] = {}

        def on_event(event: dict[str, Any]) -> bool:
            kind = event.get("event", "")
            data = event.get("event_data", {})
            host = data.get("host")
            action = data.get("task_action", "")
            if kind == "runner_on_ok" and action in TRACKED_ACTIONS and host:
                results.setdefault(action, {})[host] = data.get("res", {})
                self.progress(f"{host}: {data.get('task', action)} ok")
            elif kind == "runner_on_failed" and host and not data.get("ignore_errors"):
                res = data.get("res", {})
                failures[host] = (False, str(res.get("msg", "failed")))
                if action in TRACKED_ACTIONS:
                    results.setdefault(action, {})[host] = res
                self.progress(f"{host}: {data.get('task', action)} FAILED: {res.get('msg', '')}")
            elif kind == "runner_on_unreachable" and host:
                failures[host] = (True, str(data.get("res", {}).get("msg", "unreachable")))
                self.progress(f"{host}: UNREACHABLE")
            return True

        private = self.work_dir / ident
        private.mkdir(parents=True, exist_ok=True)
        envvars = {
            "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(self.root / "collections"),
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": _tools_on_path(),
        }
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(self.root),
            playbook=playbook if Path(playbook).is_absolute() else str(self.root / "playbooks" / playbook),
            inventory=str(inventory),
            limit=",".join(limit) if limit else None,
            extravars=extravars or {},
            envvars=envvars,
            ident="run",
            quiet=True,
            event_handler=on_event,
            timeout=job_timeout,
            rotate_artifacts=1,
        )
        stats: dict[str, Any] = runner.stats or {}
        hosts: dict[str, HostResult] = {}
        seen = set(stats.get("ok", {})) | set(stats.get("failures", {})) | set(stats.get("dark", {})) | set(failures)
        for host in sorted(seen):
            unreachable, message = False, ""
            if host in failures:
                unreachable, message = failures[host][0], failures[host][1]
            ok = host not in failures and host not in stats.get("failures", {}) and host not in stats.get("dark", {})
            hosts[host] = HostResult(host=host, ok=ok, unreachable=unreachable or host in stats.get("dark", {}),
                                     message=message)
        return RunResult(status=str(runner.status), rc=int(runner.rc or 0), stats=stats, hosts=hosts, results=results)


def read_inventory(inventory: Path) -> dict[str, Any]:
    """The inventory as `ansible-inventory --list` sees it (groups, hosts and host vars)."""
    import json

    from patchwave.errors import InputError

    if not inventory.is_file() and not inventory.is_dir():
        raise InputError(f"{inventory}: inventory not found (for the lab, run `patchwave lab up`)")
    _tools_on_path()
    out, err = ansible_runner.get_inventory(action="list", inventories=[str(inventory)], response_format="json",
                                            quiet=True)
    if not isinstance(out, dict):
        try:
            out = json.loads(out)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{inventory}: cannot read inventory: {err or out}") from exc
    return dict(out)
