"""Host keys are checked on every run: a lab host whose SSH host key changed (what a man in the
middle looks like from the controller) is refused by the next scan and the next cycle, reported
unreachable with the reason, and nothing is installed on it. ansible-runner would turn checking
off unless told; Patchwave tells it on every run, whatever the caller's environment says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, installed_versions

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf")}
KEY = "/etc/ssh/ssh_host_ed25519_key"


def pw(*args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    proc = subprocess.run([PATCHWAVE, *args, "--json"], capture_output=True, text=True, cwd=ROOT, check=False,
                          timeout=900, env=env or os.environ.copy())
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None, proc.stderr


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], env=ENV, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def changed_key(lab, tmp_path: Path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """One lab host with a new host key (its old one put back afterwards)."""
    from patchwave.lab.fleet import _wait_for_ssh

    host = next(h for h in lab.hosts() if h.name == "ws1")
    saved = tmp_path / "saved"
    saved.mkdir()
    for suffix in ("", ".pub"):
        podman("cp", f"{host.container}:{KEY}{suffix}", str(saved / f"key{suffix}"))
    new = tmp_path / "new_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(new)], check=True)
    try:
        for suffix in ("", ".pub"):
            podman("cp", f"{new}{suffix}", f"{host.container}:{KEY}{suffix}")
        podman("exec", host.container, "chmod", "600", KEY)
        podman("restart", "-t", "2", host.container)  # sshd reads its host key when it starts
        _wait_for_ssh(host)
        yield host
    finally:
        for suffix in ("", ".pub"):
            podman("cp", str(saved / f"key{suffix}"), f"{host.container}:{KEY}{suffix}")
        podman("exec", host.container, "chmod", "600", KEY)
        podman("restart", "-t", "2", host.container)
        _wait_for_ssh(host)


def test_a_changed_host_key_is_refused_by_scan_and_cycle(lab, changed_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = changed_key
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(lab.inventory_text([host]))
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    before = installed_versions(host.container)
    # the caller's environment asks for no checking: Patchwave checks anyway
    careless = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False"}

    rc, report, err = pw("scan", "--inventory", str(inventory), "--store", url, env=careless)
    assert rc == 1, err[-2000:]
    (entry,) = report
    assert entry["host"] == host.name and not entry["ok"] and entry["unreachable"], entry
    assert "Host key verification failed" in entry["message"], entry

    rc, status, err = pw("cycle", "run", "--inventory", str(inventory), "--store", url, env=careless)
    assert rc != 0, err[-2000:]
    (end,) = status["hosts"]
    assert end["host"] == host.name and end["state"] == "unreachable", end
    assert "Host key verification failed" in json.dumps(status), status
    assert installed_versions(host.container) == before  # nothing was installed


def test_the_lab_host_is_reachable_again_with_its_own_key(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The control case: the same scan with the host's recorded key succeeds (so the refusal
    above is the key's doing, not a broken lab)."""
    host = next(h for h in lab.hosts() if h.name == "ws1")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(lab.inventory_text([host]))
    rc, report, err = pw("scan", "--inventory", str(inventory), "--store", f"sqlite:///{tmp_path / 'pw.db'}")
    assert rc == 0, err[-2000:]
    assert report[0]["ok"], report
