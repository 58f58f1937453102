"""A canary that fails its health check halts the rollout: later waves never start, the canary
is rolled back, the cycle ends halted with the reason, exit code 3. With a notification policy,
the halt is alerted (naming the hosts never reached), the automatic rollback is alerted, and the
failed canary, and no host the rollout never reached, gets a ticket (a Jira-compatible server
on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, installed_versions
from notifyservers import JiraHandler, JiraState, WebhookHandler, WebhookState, serving

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
    with serving(JiraHandler, JiraState("patchwave", "jira-token-7")) as (jira_url, jira), \
            serving(WebhookHandler, WebhookState("hook-key-7")) as (hook_url, hook):
        notify = tmp_path / "notify.yml"
        notify.write_text(
            f"channels:\n  jira: {{type: jira, url: '{jira_url}', project: OPS, user: {{env: PW_HALT_USER}}, "
            f"token: {{env: PW_HALT_TOKEN}}, insecure: true}}\n  hook: {{type: webhook, url: '{hook_url}', "
            "secret: {env: PW_HALT_HOOK}, insecure: true}\nroutes:\n"
            "  - {name: tickets, events: [patch_failed], channels: [jira]}\n"
            "  - {name: chat, events: [gate_halted, rollback_done, patch_failed], channels: [hook]}\n")
        proc = subprocess.run([PATCHWAVE, "--notify", str(notify), "cycle", "run", "--policy", str(tmp_path / "policy.yml"),
                               "--json", "--store", store], capture_output=True, text=True, cwd=ROOT, check=False,
                              timeout=1800, env={**os.environ, "PW_HALT_USER": "patchwave", "PW_HALT_TOKEN": "jira-token-7",
                                                                  "PW_HALT_HOOK": "hook-key-7"})
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

    # the alerts: the halt (with the hosts never reached), the automatic rollback, the canary's failure
    assert sorted((m["event"], tuple(m["hosts"])) for _id, m in hook.delivered) == [
        ("gate_halted", (canary,)), ("patch_failed", (canary,)), ("rollback_done", (canary,))], proc.stderr[-3000:]
    heard = {m["event"]: m for _id, m in hook.delivered}
    named = heard["gate_halted"]["text"].split("Not reached (their waves never started): ", 1)[1].split("\n")[0]
    assert sorted(named.split(", ")) == sorted(states)  # exactly the hosts never reached
    assert f"rolled back {canary}\n" in heard["rollback_done"]["text"]
    assert "health check failed" in heard["patch_failed"]["text"]
    # one ticket: the canary's, not one per host the rollout never reached
    (issue,) = jira.issues.values()
    assert canary in issue["summary"] and issue["status"] == "To Do"
