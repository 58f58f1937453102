"""Every path ends the same way. On lab hosts, with the organisation's baseline and exceptions
register named by the schedule, and a notification policy (a Jira-compatible server and a
webhook on 127.0.0.1):
- discovery's new-device assessment uses the organisation's profile, not the shipped one, and
  honours the exceptions register;
- a scheduled assessment opens the ticket of a failing rule (none for the excepted host), writes
  its workbook, and, when a port starts listening, alerts the critical drift at once;
- an agent's delivered assessment honours the exceptions register and goes through the same end
  (stored, workbook, notifications)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ROOT, podman_exec, run_module
from notifyservers import JiraHandler, JiraState, WebhookHandler, WebhookState, serving

from patchwave.baseline.assessment import compile_rules
from patchwave.fleet import schedule as schedule_mod
from patchwave.fleet.agent import Receiver
from patchwave.fleet.scheduler import organisation_baseline, run_due
from patchwave.paths import Paths
from patchwave.store import Store

RULES = """\
version: 1
name: organisation-standard
rules:
  - id: org-mode-strict
    title: The organisation's service runs in strict mode
    severity: high
    rationale: A fixture for the one way through.
    references: {nist: [CM-6]}
    check: {type: file_content, path: /etc/pwthrough.conf, line: "mode strict"}
"""
EXCEPTIONS = """\
version: 1
exceptions:
  - id: EX-THROUGH-1
    rule: org-mode-strict
    scope: {hosts: [web2]}
    owner: web-team
    justification: web2 runs the legacy mode until its migration
    compensating_control: the legacy service listens on loopback only
    expires: "2099-12-31"
"""


def schedule_text(inventory: Path) -> str:
    return f"""\
version: 1
inventory: {inventory}
baseline: rules.yml
exceptions: exceptions.yml
new_devices:
  default: next-cycle
  groups: {{web: observe}}
retry: {{window_minutes: 0}}
jobs:
  - {{name: find, kind: discover, every: 1h}}
  - {{name: web-baseline, kind: assess, every: 1h, groups: [web]}}
"""


@pytest.fixture
def web(lab):  # type: ignore[no-untyped-def]
    hosts = [h for h in lab.hosts() if h.name in ("web1", "web2")]
    for host in hosts:
        podman_exec(host.container, "sh", "-c", "printf 'mode legacy\\n' > /etc/pwthrough.conf")
    yield hosts
    for host in hosts:
        podman_exec(host.container, "sh", "-c", "rm -f /etc/pwthrough.conf; pkill -f '^python3 -m http[.]server 8094' "
                                                "|| true")


def test_schedule_discovery_and_agent_assessments_end_the_same_way(web, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "exceptions.yml").write_text(EXCEPTIONS)
    inventory = ROOT / "inventories/lab/hosts.yml"
    plan_file = tmp_path / "schedule.yml"
    plan_file.write_text(schedule_text(inventory))
    plan = schedule_mod.load(plan_file)
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    output = tmp_path / "out"
    monkeypatch.setenv("PATCHWAVE_OUTPUT_DIR", str(output))
    monkeypatch.setenv("PW_THROUGH_USER", "patchwave")
    monkeypatch.setenv("PW_THROUGH_TOKEN", "jira-token-5")
    monkeypatch.setenv("PW_THROUGH_HOOK", "hook-key-5")
    paths = Paths(ROOT)
    lines: list[str] = []
    with serving(JiraHandler, JiraState("patchwave", "jira-token-5")) as (jira_url, jira), \
            serving(WebhookHandler, WebhookState("hook-key-5")) as (hook_url, hook):
        notify = tmp_path / "notify.yml"
        notify.write_text(
            f"channels:\n  jira: {{type: jira, url: '{jira_url}', project: OPS, user: {{env: PW_THROUGH_USER}}, "
            f"token: {{env: PW_THROUGH_TOKEN}}, insecure: true}}\n  hook: {{type: webhook, url: '{hook_url}', "
            "secret: {env: PW_THROUGH_HOOK}, insecure: true}\nroutes:\n"
            "  - {name: tickets, events: [rule_failed], channels: [jira]}\n"
            "  - {name: chat, events: [critical_drift], channels: [hook]}\n")
        monkeypatch.setenv("PATCHWAVE_NOTIFY", str(notify))
        start = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

        first = run_due(paths, store, plan, plan_file, lines.append, now=start)
        assert [(o["job"], o["status"]) for o in first] == [("find", "ok"), ("web-baseline", "ok")], lines
        acted = {a["host"]: a["decision"] for a in first[0]["acted"]}
        assert {h for h, d in acted.items() if d == "observe"} == {"web1", "web2"}
        assert {d for h, d in acted.items() if h not in ("web1", "web2")} == {"next-cycle"}

        # every assessment (discovery's and the schedule's) used the organisation's profile
        assessments = list(store.rows("assessments"))
        assert {a["baseline"] for a in assessments} == {"organisation-standard"}
        assert {a["host"] for a in assessments} == {"web1", "web2"} and len(assessments) == 4
        statuses = {(r["host"], r["status"]) for r in store.rows("rule_results") if r["rule_id"] == "org-mode-strict"}
        assert statuses == {("web1", "fail"), ("web2", "excepted")}  # the register applies in both paths
        # one ticket: web1's failing rule; none for the excepted web2
        (issue,) = jira.issues.values()
        assert "web1" in issue["summary"] and "org-mode-strict" in issue["summary"]
        books = sorted(p.name for p in output.glob("baseline-*.xlsx"))
        assert len(books) == 3, books  # discovery's two one-host assessments and the scheduled one

        # something starts listening on web1: the next scheduled assessment alerts it at once
        web1 = next(h for h in web if h.name == "web1")
        podman_exec(web1.container, "sh", "-c", "nohup python3 -m http.server 8094 >/dev/null 2>&1 &")
        second = run_due(paths, store, plan, plan_file, lines.append, now=start + timedelta(hours=1))
        assert [(o["job"], o["status"]) for o in second] == [("find", "ok"), ("web-baseline", "ok")], lines
        drift = [m for _id, m in hook.delivered if m["event"] == "critical_drift"]
        assert [m["hosts"] for m in drift] == [["web1"]] and "8094" in drift[0]["text"]
        assert len(jira.issues) == 1  # still the one ticket: web1's rule is still failing, its ticket open

        # an agent delivers web2's assessment: the same register, the same end
        baseline = organisation_baseline(plan, plan_file)
        web2 = next(h for h in web if h.name == "web2")
        from patchwave.ansible.inventory import load_hosts

        hosts = load_hosts(inventory)
        rules = compile_rules(baseline, [h for h in hosts if h.name == "web2"])["web2"].module_rules()
        result = run_module(web2.name, "patchwave.endpoint.assess_baseline", {"rules": rules})
        assert not result["failed"], result
        result = {k: v for k, v in result.items() if not k.startswith("_") and k not in ("invocation",)}
        receiver = Receiver(store, hosts, baseline, lines.append, paths=paths, inventory=inventory)
        code, answer = receiver.accept("web2", json.loads(json.dumps({"kind": "assessment", "result": result})))
        assert code == 200, answer
        delivered = next(r for r in store.rows("rule_results", assessment_id=answer["assessment"]))
        assert (delivered["rule_id"], delivered["status"]) == ("org-mode-strict", "excepted")
        assert len(sorted(output.glob("baseline-agent-*.xlsx"))) == 1
        assert len(jira.issues) == 1  # the excepted rule opens nothing, through the agent either
