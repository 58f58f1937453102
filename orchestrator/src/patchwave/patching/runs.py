"""Playbook runs of a cycle or a scan: the runner set up with the policy's timeouts, and each
host's outcome of a run stored before anyone acts on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from patchwave.ansible.runner import PlaybookRunner, Runner, RunResult, Timeouts
from patchwave.models import Host
from patchwave.patching.policy import Policy
from patchwave.paths import Paths
from patchwave.progress import Display
from patchwave.store import Store

REBOOT = "ansible.builtin.reboot"

# makes the runner of a cycle: (its work directory, the cycle id or None, the policy) -> runner
RunnerFactory = Callable[[Path, str | None, Policy], Runner]


def playbook_runner(paths: Paths, store: Store, display: Display, work: Path, cycle_id: str | None,
                    policy: Policy | None = None) -> PlaybookRunner:
    """A runner that records every run and task event in the store, with the policy's idle and
    job timeouts (the built-in policy's without one)."""
    limits = (policy or Policy()).timeouts
    return PlaybookRunner(paths.root, work, recorder=store, cycle_id=cycle_id, observer=display,
                          timeouts=Timeouts(idle=round(limits.idle_minutes * 60), job=round(limits.job_minutes * 60)),
                          retention=paths.retention)


def record_results(store: Store, cycle_id: str, stage: str, action: str, result: RunResult, hosts: list[Host],
                   wave: int | None = None) -> dict[str, str]:
    """Store each host's result of `action` in a run (with its reboot, when it rebooted);
    returns {host: why} for the hosts that failed."""
    failed: dict[str, str] = {}
    for host in hosts:
        data = result.result(action, host.name) or {}
        outcome = result.hosts.get(host.name)
        ok = bool(data) and not data.get("failed") and (outcome is None or outcome.ok)
        message = (outcome.message if outcome and outcome.message else str(data.get("msg", "")))
        if not data and not message:
            message = "no result from the host"
        reboot = result.result(REBOOT, host.name)
        payload = dict(data)
        if reboot is not None:
            payload["reboot"] = {"rebooted": reboot.get("rebooted"), "elapsed": reboot.get("elapsed")}
        payload.pop("stdout_lines", None)
        store.add_host_result(cycle_id, host.name, stage, ok, bool(outcome and outcome.unreachable), message, payload,
                              wave=wave)
        if not ok:
            failed[host.name] = message
    return failed
