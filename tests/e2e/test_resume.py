"""The orchestrator is killed with SIGKILL in the middle of a wave; `cycle resume` finishes the
cycle. Hosts end exactly as after an uninterrupted run, and nothing was installed twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, installed_versions, podman_exec

from patchwave.lab.catalog import security_updates, update_version

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
# every security update the default policy approves (all but the held pw-pinned)
SECURITY_NAMES = tuple(security_updates("bookworm"))


def _wave_running(db: Path, idx: int) -> bool:
    return _wave_status(db, idx) == "running"


def _strays(cycle_id: str) -> list[int]:
    """Processes of this machine that carry the cycle's run marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"PATCHWAVE_RUN={cycle_id}:".encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_killed_mid_wave_then_resumed(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab.down()
    lab.up()
    db = tmp_path / "pw.db"
    store = f"sqlite:///{db}"
    proc = subprocess.Popen([PATCHWAVE, "cycle", "run", "--json", "--store", store], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not _wave_running(db, 1):
        assert proc.poll() is None, "the cycle ended before its second wave could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.5)  # in the middle of the broad wave's installs
    os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator and its ansible-playbook: a crash
    proc.wait()

    status = json.loads(subprocess.run([PATCHWAVE, "cycle", "status", "--json", "--store", store], cwd=ROOT,
                                       capture_output=True, text=True, check=False).stdout)
    assert status["status"] == "deploying"
    assert [w["status"] for w in status["waves"]] == ["passed", "running"]

    # ansible-runner runs ansible-playbook in a session of its own: it may outlive the orchestrator
    left = _strays(status["cycle_id"])
    resumed = subprocess.run([PATCHWAVE, "cycle", "resume", "--json", "--store", store], cwd=ROOT,
                             capture_output=True, text=True, check=False, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    if left:
        assert "left running by an orchestrator that died" in resumed.stderr
    assert not _strays(status["cycle_id"])  # the resume stopped it before deploying again
    final = json.loads(resumed.stdout)
    assert final["status"] == "completed"
    assert [w["status"] for w in final["waves"]] == ["passed", "passed"]
    for host in lab.hosts():
        result = next(h for h in final["hosts"] if h["host"] == host.name)
        assert result["state"] == "patched", result  # as an uninterrupted run ends (reboots included)
        versions = installed_versions(host.container)
        assert {n: versions.get(n) for n in SECURITY_NAMES} == security_updates(host.release), host.name
        # dpkg's own log on the host: each package was installed exactly once
        libssl = update_version("pw-libssl", host.release)
        log = podman_exec(host.container, "grep", f" status installed pw-libssl:all {libssl}", "/var/log/dpkg.log")
        assert len(log.strip().splitlines()) == 1, (host.name, log)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT host, data FROM host_results WHERE stage = 'deploy'").fetchall()
    changed = [host for host, data in rows if json.loads(data).get("changed")]
    assert len(changed) == len(set(changed))  # the store never saw a host installed twice


def _wave_status(db: Path, idx: int) -> str | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute("SELECT status FROM waves WHERE idx = ?", (idx,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


SOAK_POLICY = """\
version: 1
name: soak-resume
targets:
  hosts: [ws1, ws2]
waves:
  - {name: canary, size: 1, soak_minutes: 0.5}
  - {name: broad}
reboot: never
"""


def test_killed_while_soaking_then_resumed(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The soak goes on for what is left of it; the soaking wave is not deployed again."""
    lab.down()
    lab.up()
    db = tmp_path / "pw.db"
    store = f"sqlite:///{db}"
    (tmp_path / "policy.yml").write_text(SOAK_POLICY)
    proc = subprocess.Popen([PATCHWAVE, "cycle", "run", "--policy", str(tmp_path / "policy.yml"), "--json",
                             "--store", store], cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while _wave_status(db, 0) != "soaking":
        assert proc.poll() is None, "the cycle ended before its canary soaked"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    killed_at = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([PATCHWAVE, "cycle", "resume", "--json", "--store", store], cwd=ROOT,
                             capture_output=True, text=True, check=False, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = json.loads(resumed.stdout)
    assert final["status"] == "completed"
    assert [w["status"] for w in final["waves"]] == ["passed", "passed"]
    # the canary was deployed once, then checked after the soak, which ended 30 s after it began
    assert [r["run"] for r in final["runs"]].count("03-deploy-wave0") == 1
    assert "05-health-wave0-0-soak" in [r["run"] for r in final["runs"]]
    assert time.monotonic() - killed_at >= 20
    for host in lab.hosts():
        if host.name in ("ws1", "ws2"):
            assert installed_versions(host.container)["pw-libssl"] == update_version("pw-libssl", host.release)
