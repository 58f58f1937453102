"""A canary that fails its health check halts the rollout: later waves never start, the canary
is rolled back, the cycle ends halted with the reason, exit code 3."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, installed_versions

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
POLICY = """\
version: 1
name: webapp-rollout
targets:
  groups: [web, db]
approval:
  security: false
  approve: [pw-webapp]
waves:
  - {name: canary, size: 1}
  - {name: pilot, size: 1}
  - {name: broad}
gates:
  health_checks:
    - playbook: health-webapp.yml
  rollback_on_failure: true
reboot: never
"""
HEALTH = """\
- name: The web application answers its health check
  hosts: all
  gather_facts: false
  tasks:
    - name: Run pw-webapp-health
      ansible.builtin.command: /usr/bin/pw-webapp-health
      changed_when: false
"""


def test_failed_health_check_halts_and_rolls_back_the_canary(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab.down()
    lab.up()
    (tmp_path / "policy.yml").write_text(POLICY)
    (tmp_path / "health-webapp.yml").write_text(HEALTH)
    store = f"sqlite:///{tmp_path / 'pw.db'}"
    proc = subprocess.run([PATCHWAVE, "cycle", "run", "--policy", str(tmp_path / "policy.yml"), "--json",
                           "--store", store], capture_output=True, text=True, cwd=ROOT, check=False, timeout=1800)
    assert proc.returncode == 3, proc.stderr[-3000:]
    status = json.loads(proc.stdout)
    assert status["status"] == "halted"
    assert "wave canary failed its gate" in status["reason"]
    assert [(w["name"], w["status"]) for w in status["waves"]] == [
        ("canary", "failed"), ("pilot", "skipped"), ("broad", "skipped")]
    canary = status["waves"][0]["hosts"][0]
    states = {h["host"]: h["state"] for h in status["hosts"]}
    assert states.pop(canary) == "rolled-back"
    assert set(states.values()) == {"not-reached"}
    with sqlite3.connect(tmp_path / "pw.db") as conn:
        rollbacks = conn.execute("SELECT host, ok FROM host_results WHERE stage = 'rollback'").fetchall()
    assert rollbacks == [(canary, 1)]
    for host in lab.hosts():
        # the canary is back at 1.0-1; nobody else was ever touched
        assert installed_versions(host.container)["pw-webapp"] == "1.0-1", host.name
