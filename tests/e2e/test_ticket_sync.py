"""The ops side of the ticket loop on lab hosts, through the CLI: two failing rules open two
Jira issues (a Jira Cloud-compatible server on 127.0.0.1); ops fixes web1 and marks both issues
done; `patchwave notify sync` notices, reassesses both hosts at once, closes web1's with the
passing evidence and re-opens web2's, which still fails, with the new evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, podman_exec
from notifyservers import JiraHandler, JiraState, serving

from patchwave.store import Store

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
RULES = """\
version: 1
name: sync
rules:
  - id: sync-app-hardened
    title: The sync application runs hardened
    severity: high
    rationale: A fixture for the ops side of the ticket loop.
    references: {nist: [CM-6]}
    check: {type: file_content, path: /etc/pwsync.conf, line: "hardened yes"}
"""


def test_tickets_ops_marks_done_are_confirmed_by_a_reassessment(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hosts = {h.name: h for h in lab.hosts() if h.name in ("web1", "web2")}
    for host in hosts.values():
        podman_exec(host.container, "sh", "-c", "printf 'hardened no\\n' > /etc/pwsync.conf")
    (tmp_path / "rules.yml").write_text(RULES)
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    env = {**os.environ, "PW_SYNC_USER": "patchwave", "PW_SYNC_TOKEN": "jira-token-3",
           "PATCHWAVE_OUTPUT_DIR": str(tmp_path / "out")}
    try:
        with serving(JiraHandler, JiraState("patchwave", "jira-token-3")) as (jira_url, jira):
            notify = tmp_path / "notify.yml"
            notify.write_text(
                f"channels:\n  jira: {{type: jira, url: '{jira_url}', project: OPS, user: {{env: PW_SYNC_USER}}, "
                "token: {env: PW_SYNC_TOKEN}, insecure: true}\nroutes:\n"
                "  - {name: tickets, events: [rule_failed], channels: [jira]}\ntickets: {confirm_within_minutes: 15}\n")

            def pw(*args: str) -> tuple[int, dict[str, object], str]:
                proc = subprocess.run([PATCHWAVE, "--notify", str(notify), *args, "--json", "--store", url],
                                      capture_output=True, text=True, cwd=ROOT, check=False, timeout=900, env=env)
                return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr

            rc, _report, err = pw("assess", "-l", "web1", "-l", "web2", "-b", str(tmp_path / "rules.yml"))
            assert rc == 1, err[-2000:]
            assert len(jira.issues) == 2
            by_host = {next(h for h in hosts if h in i["summary"]): k for k, i in jira.issues.items()}
            # ops fixes web1, and marks both issues done (web2 without fixing anything)
            podman_exec(hosts["web1"].container, "sh", "-c", "printf 'hardened yes\\n' > /etc/pwsync.conf")
            for key in jira.issues:
                jira.close_by_hand(key)

            rc, result, err = pw("notify", "sync", "-b", str(tmp_path / "rules.yml"))
            assert rc == 0, err[-2000:]
            assert result["marked_done"] == 2
            assert sorted((e["host"], e["state"], e["overdue"]) for e in result["confirming"]) == [  # type: ignore[union-attr]
                ("web1", "closed", False), ("web2", "open", False)]
            web1, web2 = jira.issues[by_host["web1"]], jira.issues[by_host["web2"]]
            assert web1["status"] == "Done" and "passes on web1" in web1["comments"][-1]
            assert web2["status"] == "To Do" and "Closed in the ticket system" in web2["comments"][-1]
            tickets = {t["host"]: t for t in Store(url).tickets()}
            assert (tickets["web1"]["state"], tickets["web2"]["state"], tickets["web2"]["reopened"]) == (
                "closed", "open", 1)

            # nothing more marked done: the next sync only looks (no reassessment, nothing sent)
            rc, result, err = pw("notify", "sync", "-b", str(tmp_path / "rules.yml"))
            assert rc == 0 and result["marked_done"] == 0 and result["confirming"] == [], err[-2000:]
    finally:
        for host in hosts.values():
            podman_exec(host.container, "rm", "-f", "/etc/pwsync.conf")
