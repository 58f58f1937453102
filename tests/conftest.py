"""Shared fixtures. Integration and end-to-end tests run against the real lab: if it cannot be
brought up or reached, they fail (they are never skipped)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = ROOT / "collections" / "ansible_collections" / "patchwave" / "endpoint"
# module_utils are plain Python: unit tests import them through the collection's package path
sys.path.insert(0, str(ROOT / "collections"))


@pytest.fixture(scope="session")
def paths():  # type: ignore[no-untyped-def]
    from patchwave.paths import Paths

    return Paths(ROOT)


@pytest.fixture(scope="session")
def lab(paths) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh lab for the test session: hosts start at the old package versions."""
    from patchwave.lab.fleet import Lab

    yield from _session_lab(Lab(paths))


@pytest.fixture(scope="session")
def real_lab(paths) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh real-content lab: every host at the main suite's versions."""
    from patchwave.lab.real import RealLab

    yield from _session_lab(RealLab(paths))


def _session_lab(fleet: Any) -> Iterator[Any]:
    """Recreated (unless PATCHWAVE_TEST_REUSE_LAB=1), removed at the end (unless PATCHWAVE_TEST_KEEP_LAB=1)."""
    if os.environ.get("PATCHWAVE_TEST_REUSE_LAB") != "1":
        fleet.down()
    fleet.up()
    yield fleet
    if os.environ.get("PATCHWAVE_TEST_KEEP_LAB") != "1":
        fleet.down()


def podman_exec(container: str, *argv: str) -> str:
    """Read a host's state independently of Patchwave (no ssh, no ansible)."""
    env = dict(os.environ, CONTAINERS_CONF=str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf"))
    return subprocess.run(["podman", "exec", container, *argv], capture_output=True, text=True, check=True,
                          env=env).stdout


def lab_service_answer(container: str) -> str:
    """What the synthetic lab's running service (pw-httpd) answers inside the host: the pw-libssl it has mapped."""
    from patchwave.lab.catalog import HTTPD_PORT

    return podman_exec(container, "python3", "-c", "import urllib.request as u; "
                       f"print(u.urlopen('http://127.0.0.1:{HTTPD_PORT}/', timeout=5).read().decode(), end='')")


def installed_versions(container: str) -> dict[str, str]:
    out = podman_exec(container, "dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n")
    versions = {}
    for line in out.splitlines():
        name, version, status = line.split("\t")
        if status[1:2] == "i":  # installed ("ii"), also when held ("hi")
            versions[name] = version
    return versions


def ansible(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="True")
    bindir = Path(sys.executable).parent
    return subprocess.run([str(bindir / args[0]), *args[1:]], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=check)


def run_module(host: str, module: str, args: dict[str, object], check: bool = False,
               inventory: Path = ROOT / "inventories/lab/hosts.yml") -> dict[str, object]:
    """Run one module on one lab host through ansible-runner; return its result (with 'failed')."""
    import json
    import tempfile

    import ansible_runner

    results: dict[str, object] = {}

    def keep(event: dict[str, object]) -> bool:
        data = event.get("event_data", {})
        if isinstance(data, dict) and event.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            res = dict(data.get("res", {}))
            res.setdefault("failed", event.get("event") != "runner_on_ok")
            res["_event"] = event.get("event")
            results.update(res)
        return False

    with tempfile.TemporaryDirectory(prefix="pw-test-runner-") as tmp:
        ansible_runner.run(
            private_data_dir=tmp, host_pattern=host, module=module, module_args=json.dumps(args) if args else "",
            inventory=str(inventory), quiet=True, event_handler=keep,
            envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_BECOME": "true",
                     "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
            cmdline="--check" if check else None,
        )
    if not results:
        raise AssertionError(f"no result from {host} for {module}: is the lab reachable?")
    return results


def run_playbook(playbook: str, limit: str, extravars: dict[str, object] | None = None,
                 check: bool = False) -> tuple[str, dict[str, dict[str, int]], dict[str, dict[str, object]]]:
    """Run one of playbooks/ through ansible-runner: (status, stats, {action: last result})."""
    import tempfile

    import ansible_runner

    results: dict[str, dict[str, object]] = {}

    def keep(event: dict[str, object]) -> bool:
        data = event.get("event_data", {})
        if isinstance(data, dict) and event.get("event") in ("runner_on_ok", "runner_on_failed"):
            res = dict(data.get("res", {}))
            res.setdefault("failed", event.get("event") == "runner_on_failed")
            results[str(data.get("task_action"))] = res
        return False

    with tempfile.TemporaryDirectory(prefix="pw-test-runner-") as tmp:
        runner = ansible_runner.run(
            private_data_dir=tmp, playbook=str(ROOT / "playbooks" / playbook),
            inventory=str(ROOT / "inventories/lab/hosts.yml"), limit=limit, extravars=extravars or {},
            quiet=True, event_handler=keep, cmdline="--check" if check else None,
            envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_HOST_KEY_CHECKING": "True",
                     "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
        )
        return str(runner.status), dict(runner.stats or {}), results


def end_cycle(store: Any, cycle_id: str, status: str) -> None:
    """Take a cycle made by hand in a test to a final `status` through the moves a real cycle
    makes (the store refuses any other): approved, deploying, confirming, then `status`."""
    from patchwave.states import CycleStatus

    path = [CycleStatus.APPROVED, CycleStatus.DEPLOYING, CycleStatus.CONFIRMING]
    current = CycleStatus(store.cycle(cycle_id)["status"])
    for step in path[path.index(current) + 1 if current in path else 0:]:
        store.set_cycle_status(cycle_id, step)
    store.set_cycle_status(cycle_id, CycleStatus(status), finished=True)
