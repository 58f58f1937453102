"""The closed loop on a lab host, through the CLI with `--notify`: a failing rule opens a ticket
(a Jira-compatible server on 127.0.0.1, started here), a ticket closed by hand while the rule
still fails is re-opened by the next assessment, a remediation comments on it, and the
confirming reassessment that passes closes it. A webhook route hears the new failure once and
the critical drift (a new listening port) at once. The Jira server speaks https (a certificate
made here); the webhook receiver plain http, so its channel says `insecure: true` and each
delivery to it is warned about."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT, podman_exec
from notifyservers import JiraHandler, JiraState, WebhookHandler, WebhookState, self_signed, serving

from patchwave.store import Store

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
RULES = """\
version: 1
name: loop
rules:
  - id: loop-app-hardened
    title: The loop application runs hardened
    severity: high
    rationale: A fixture for the closed loop.
    references: {nist: [CM-6]}
    check: {type: file_content, path: /etc/pwloop.conf, line: "hardened yes"}
    remediation: {type: line, path: /etc/pwloop.conf, line: "hardened yes", regex: "^hardened "}
"""


def pw(*args: str, store: str, notify: Path) -> tuple[int, Any, str]:
    env = {**os.environ, "PW_LOOP_USER": "patchwave", "PW_LOOP_TOKEN": "jira-token-9", "PW_LOOP_HOOK": "hook-key-3"}
    proc = subprocess.run([PATCHWAVE, "--notify", str(notify), *args, "--json", "--store", store], capture_output=True,
                          text=True, cwd=ROOT, check=False, timeout=900, env=env)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None, proc.stderr


def test_failing_rule_ticket_reopened_when_closed_early_closed_after_a_passing_rescan(  # type: ignore[no-untyped-def]
        lab, tmp_path: Path) -> None:
    host = next(h for h in lab.hosts() if h.name == "web1")
    podman_exec(host.container, "sh", "-c", "printf 'hardened no\\nlevel 2\\n' > /etc/pwloop.conf")
    (tmp_path / "rules.yml").write_text(RULES)
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    common = ["-l", "web1", "-b", str(tmp_path / "rules.yml")]
    tls = self_signed(tmp_path, stem="tls")  # tls.crt, next to notify.yml: the Jira channel's ca_file
    with serving(JiraHandler, JiraState("patchwave", "jira-token-9"), tls=tls) as (jira_url, jira), \
            serving(WebhookHandler, WebhookState("hook-key-3")) as (hook_url, hook):
        notify = tmp_path / "notify.yml"
        notify.write_text(
            f"channels:\n  jira: {{type: jira, url: '{jira_url}', project: OPS, user: {{env: PW_LOOP_USER}}, "
            f"token: {{env: PW_LOOP_TOKEN}}, ca_file: tls.crt}}\n  hook: {{type: webhook, url: '{hook_url}', "
            "secret: {env: PW_LOOP_HOOK}, insecure: true}\nroutes:\n"
            "  - {name: tickets, events: [rule_failed], channels: [jira], groups: [web]}\n"
            "  - {name: chat, events: [rule_failed, critical_drift], channels: [hook]}\n")

        rc, _report, err = pw("assess", *common, store=url, notify=notify)
        assert rc == 1, err[-2000:]
        assert "notify: 2 queued; 2 sent" in err  # the ticket and the chat message
        assert err.count("WARNING: channel hook") == 1  # the plain-http webhook, once per delivery
        (issue,) = jira.issues.values()
        assert issue["status"] == "To Do" and "/etc/pwloop.conf" in issue["description"]
        (key,) = jira.issues
        ticket = next(t for t in Store(url).tickets() if t["subject"] == "loop-app-hardened")
        assert (ticket["number"], ticket["state"], ticket["host"]) == (key, "open", "web1")

        jira.close_by_hand(key)  # closed too early: the rule still fails on the host
        # and meanwhile something starts listening on the host: critical drift, heard at once
        podman_exec(host.container, "sh", "-c", "nohup python3 -m http.server 8083 >/dev/null 2>&1 &")
        try:
            rc, _report, err = pw("assess", *common, store=url, notify=notify)
        finally:
            podman_exec(host.container, "sh", "-c", "pkill -f '^python3 -m http[.]server 8083' || true")
        assert rc == 1, err[-2000:]
        assert jira.issues[key]["status"] == "To Do"  # re-opened by the check
        assert Store(url).ticket(ticket["key"])["reopened"] == 1
        assert len(jira.issues) == 1  # still failing: checked, not opened again
        # the chat route heard the failure once (first assessment) and the drift once
        assert [m["event"] for _i, m in hook.delivered] == ["rule_failed", "critical_drift"]
        assert "8083" in hook.delivered[1][1]["text"]

        rc, report, err = pw("remediate", *common, store=url, notify=notify)
        assert rc == 0, err[-2000:]
        assert report["hosts"][0]["still_failing"] == []
        assert jira.issues[key]["status"] == "Done"
        comments = jira.issues[key]["comments"]
        assert any(c.startswith("Remediation ") and "changed" in c for c in comments)
        assert "confirming assessment" in comments[-1] and "passes on web1" in comments[-1]
        assert Store(url).ticket(ticket["key"])["state"] == "closed"
        assert podman_exec(host.container, "cat", "/etc/pwloop.conf").startswith("hardened yes")

        status = subprocess.run([PATCHWAVE, "notify", "status", "--json", "--store", url], capture_output=True,
                                text=True, cwd=ROOT, check=True)
        summary = json.loads(status.stdout)
        assert summary["outbox"].get("pending", 0) == 0 and summary["outbox"].get("failed", 0) == 0
        assert "jira-token-9" not in status.stdout + err
    assert [m["event"] for _i, m in hook.delivered] == ["rule_failed", "critical_drift"]
