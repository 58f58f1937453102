"""Notifications against real servers on 127.0.0.1, started by the tests: a signed webhook (a
receiver that fails N times, one that is down, one that hangs while the sender is killed), SMTP
with STARTTLS and AUTH (aiosmtpd), Jira- and ServiceNow-compatible ticket APIs over https (a
certificate made by the test). Every message arrives exactly once; secrets never reach the store
or the output. The webhook receivers speak plain http, so their channels say `insecure: true`
(tests/security/test_outbound.py tests what that allows and what it refuses)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from notifyservers import (
    JiraHandler,
    JiraState,
    SnowHandler,
    SnowState,
    WebhookHandler,
    WebhookState,
    self_signed,
    serving,
    smtp_server,
)
from reportdata import HOSTS, at, fill
from sqlalchemy import insert

from patchwave.notify import config, events
from patchwave.notify.outbox import Notifier
from patchwave.store import Store
from patchwave.store.schema import assessments, cycles, end_states, rule_results

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-hmac-key-for-tests"  # noqa: S105 - a test key
FAST = "delivery: {max_attempts: 6, backoff_seconds: 0.05, max_backoff_seconds: 0.2}\n"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    made = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    fill(made)
    return made


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_TEST_HOOK_SECRET", SECRET)
    monkeypatch.setenv("PW_TEST_USER", "patchwave")
    monkeypatch.setenv("PW_TEST_PASSWORD", "mail-password-42")


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for the https ticket servers; their channels name it as `ca_file: tls.crt`."""
    return self_signed(tmp_path, stem="tls")


def notifier(store: Store, tmp_path: Path, text: str) -> Notifier:
    path = tmp_path / "notify.yml"
    path.write_text(textwrap.dedent(text))
    return Notifier(store, config.load(path), tmp_path, HOSTS)


def webhook_policy(url: str, extra: str = "") -> str:
    return (f"channels:\n  hook: {{type: webhook, url: '{url}', secret: {{env: PW_TEST_HOOK_SECRET}}, insecure: true}}\n"
            "routes:\n  - {name: all, events: [patch_failed, cycle_completed, rule_failed, critical_drift], "
            f"channels: [hook]{extra}}}\n" + FAST)


def jira_policy(url: str, events: str, channel: str = "", extra: str = "") -> str:
    """A policy with one Jira channel (on the https test server; `channel`: more of its keys)
    and one route of `events` to it."""
    return (f"channels:\n  jira: {{type: jira, url: '{url}', project: OPS, user: {{env: PW_TEST_USER}}, "
            f"token: {{env: PW_TEST_PASSWORD}}, ca_file: tls.crt{channel}}}\nroutes:\n"
            f"  - {{name: tickets, events: [{events}], channels: [jira]}}\n{extra or FAST}")


def no_secret_anywhere(store: Store, *secrets: str) -> None:
    text = json.dumps([store.outbox_rows(), store.tickets()], default=str)
    for secret in secrets:
        assert secret not in text


def test_a_receiver_that_fails_three_times_gets_every_message_exactly_once(store: Store, tmp_path: Path) -> None:
    with serving(WebhookHandler, WebhookState(SECRET, fail_first=3)) as (url, state):
        sender = notifier(store, tmp_path, webhook_policy(url))
        queued = events.after_cycle(sender, "c1") + events.after_assessment(sender, "b3")
        # c1: db1 failed (patch_failed) + cycle_completed; b3: web2 fails r1 and errors on r2
        assert queued == 4
        counts = sender.flush(wait_seconds=10)
        assert counts["pending"] == 0 and counts["failed"] == 0
        assert state.failed == 3 and state.refused == 0
        assert sorted(state.ids()) == sorted(r["key"] for r in store.outbox_rows())  # each once
        # deriving the same events again (a resumed or repeated command) queues and sends nothing
        assert events.after_cycle(sender, "c1") + events.after_assessment(sender, "b3") == 0
        sender.flush(wait_seconds=1)
        assert len(state.delivered) == 4
    kinds = sorted(m["event"] for _i, m in state.delivered)
    assert kinds == ["cycle_completed", "patch_failed", "rule_failed", "rule_failed"]
    failed = next(m for _i, m in state.delivered if m["event"] == "patch_failed")
    assert failed["hosts"] == ["db1"] and failed["data"]["missing"] == ["a"] and failed["severity"] == "critical"
    no_secret_anywhere(store, SECRET)


def test_a_wrong_signature_is_refused_and_not_retried(store: Store, tmp_path: Path) -> None:
    with serving(WebhookHandler, WebhookState("another-key")) as (url, state):
        sender = notifier(store, tmp_path, webhook_policy(url))
        events.after_cycle(sender, "c1")
        counts = sender.flush(wait_seconds=2)
    assert state.refused == 2 and not state.delivered
    assert counts["failed"] == 2 and counts["retry"] == 0  # a 401 cannot get better by trying again
    assert all("HTTP 401" in r["last_error"] for r in store.outbox_rows())
    no_secret_anywhere(store, SECRET)


def test_a_receiver_that_is_down_loses_nothing(store: Store, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = notifier(store, tmp_path, webhook_policy(f"http://127.0.0.1:{port}/hook"))
    events.after_cycle(sender, "c1")
    counts = sender.flush()
    assert counts["retry"] == 2 and counts["pending"] == 2
    assert all("refused" in r["last_error"].lower() for r in store.outbox_rows())
    with serving(WebhookHandler, WebhookState(SECRET), port=port) as (_url, state):
        counts = sender.flush(wait_seconds=10)
    assert counts["pending"] == 0
    assert sorted(state.ids()) == sorted(r["key"] for r in store.outbox_rows())


def test_killed_while_sending_then_flushed_again_nothing_lost_nothing_twice(store: Store, tmp_path: Path) -> None:
    """`patchwave notify digest` writes its messages to the outbox and starts sending; the receiver
    takes them but never answers; the process is killed. A later `notify flush` sends each once."""
    env = {**os.environ, "PATCHWAVE_STORE": store.url}
    policy = tmp_path / "notify.yml"
    with serving(WebhookHandler, WebhookState(SECRET, hang_seconds=30)) as (first_url, hanging):
        policy.write_text(f"channels:\n  hook: {{type: webhook, url: '{first_url}', secret: {{env: PW_TEST_HOOK_SECRET}}, "
                          "timeout_seconds: 60, insecure: true}\nroutes:\n  - {name: sla, events: [sla_breached, sla_warning], "
                          "channels: [hook]}\n" + FAST)
        child = subprocess.Popen([str(Path(sys.executable).parent / "patchwave"), "notify", "digest", "-p",
                                  str(policy), "-i", str(tmp_path / "none.yml")], env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not store.outbox_rows() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the first message is on its way to a receiver that does not answer
        child.send_signal(signal.SIGKILL)
        child.wait()
    rows = store.outbox_rows()
    # db1's fix "a" was due Nov 10 and never installed: one breach (web1 and web2 installed theirs);
    # it is still claimed by the killed process, which the next flush sees is gone
    assert [r["status"] for r in rows] == ["sending"] and not hanging.delivered
    with serving(WebhookHandler, WebhookState(SECRET)) as (url, state):
        policy.write_text(policy.read_text().replace(first_url, url))
        done = subprocess.run([str(Path(sys.executable).parent / "patchwave"), "notify", "flush", "-p", str(policy),
                               "-i", str(tmp_path / "none.yml"), "--wait", "10", "--json"], env=env, cwd=ROOT,
                              capture_output=True, text=True, check=False)
        again = subprocess.run([str(Path(sys.executable).parent / "patchwave"), "notify", "digest", "-p",
                                str(policy), "-i", str(tmp_path / "none.yml"), "--json"], env=env, cwd=ROOT,
                               capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(again.stdout)["queued"] == 0  # the same day's digest is in the outbox already
    assert state.ids() == [rows[0]["key"]]
    assert state.delivered[0][1]["event"] == "sla_breached" and state.delivered[0][1]["hosts"] == ["db1"]


def test_rate_limits_hold_and_quiet_hours_wait_but_critical_goes_through(store: Store, tmp_path: Path) -> None:
    with serving(WebhookHandler, WebhookState(SECRET)) as (url, state):
        sender = notifier(store, tmp_path, webhook_policy(url, ", rate_limit: {messages: 2, per_minutes: 60}"))
        events.after_cycle(sender, "c1")
        events.after_assessment(sender, "b3")
        counts = sender.flush()
        assert (counts["sent"], counts["held"]) == (2, 2) and len(state.delivered) == 2
        held = store.outbox_rows("pending")
        assert all("held: route all sent 2 message(s)" in r["last_error"] for r in held)
        assert all(r["attempts"] == 0 for r in held)  # holding is not a failed attempt
    with serving(WebhookHandler, WebhookState(SECRET)) as (url, state):
        quiet = (", quiet_hours: {start: '22:00', end: '06:00', timezone: Europe/Berlin, "
                 "except_severities: [critical]}")
        other = Store(f"sqlite:///{tmp_path / 'q.db'}")
        fill(other)
        sender = notifier(other, tmp_path, webhook_policy(url, quiet))
        events.after_cycle(sender, "c1")
        # the first 23:30 UTC after the messages were queued (00:30 or 01:30 in Berlin): inside
        # the quiet hours whatever the day the test runs, and never before the queueing
        queued = datetime.now(UTC)
        night = queued.replace(hour=23, minute=30, second=0, microsecond=0)
        night += timedelta(days=1) if night <= queued else timedelta()
        counts = sender.flush(now=lambda: night)
        # patch_failed of db1 is critical: it goes; the cycle digest waits until 06:00 in Berlin
        assert [m["event"] for _i, m in state.delivered] == ["patch_failed"] and counts["held"] == 1
        (waiting,) = other.outbox_rows("pending")
        berlin = ZoneInfo("Europe/Berlin")
        morning = night.astimezone(berlin).replace(hour=6, minute=0)  # the same Berlin day
        assert waiting["next_at"].replace(tzinfo=UTC) == morning.astimezone(UTC)


def test_email_over_starttls_with_auth_once_per_message(store: Store, tmp_path: Path) -> None:
    with smtp_server(tmp_path, "patchwave", "mail-password-42") as (port, box, cert):
        text = (f"channels:\n  mail:\n    type: smtp\n    host: 127.0.0.1\n    port: {port}\n    ca_file: {cert.name}\n"
                "    username: {env: PW_TEST_USER}\n    password: {env: PW_TEST_PASSWORD}\n"
                "    from: patchwave@example.org\n    to: [ops@example.org, lead@example.org]\n"
                "routes:\n  - {name: mail, events: [patch_failed, cycle_completed], channels: [mail]}\n" + FAST)
        sender = notifier(store, tmp_path, text)
        events.after_cycle(sender, "c1")
        counts = sender.flush(wait_seconds=5)
        sender.flush(wait_seconds=1)
        assert counts["sent"] == 2 and len(box.messages) == 2 and box.logins == ["patchwave", "patchwave"]
        assert all(m["tls"] and m["to"] == ["ops@example.org", "lead@example.org"] for m in box.messages)
        assert {m["delivery"] for m in box.messages} == {r["key"] for r in store.outbox_rows()}
        assert any("db1" in m["subject"] and "Not installed: a" in m["body"] for m in box.messages)
        # a wrong password: refused, not retried, and the password is nowhere
        os.environ["PW_TEST_PASSWORD"] = "wrong-password-77"  # noqa: S105 - a test password for a test server
        other = Store(f"sqlite:///{tmp_path / 'w.db'}")
        fill(other)
        sender = notifier(other, tmp_path, text)
        events.after_cycle(sender, "c1")
        counts = sender.flush(wait_seconds=1)
    assert counts["failed"] == 2 and all("authentication refused" in r["last_error"] for r in other.outbox_rows())
    no_secret_anywhere(other, "wrong-password-77", "mail-password-42")


def _assess(store: Store, aid: int, host: str, rule: str, status: str) -> str:
    batch = f"t{aid}"
    with store.engine.begin() as conn:
        conn.execute(insert(assessments).values(
            id=aid, batch=batch, host=host, baseline="t", kind="assess", at=at(20 + aid % 5), ok=True,
            unreachable=False, message="", summary={}, score=0.0, score_with_exceptions=0.0, snapshot={},
            drift={"newly_failing": [], "critical": []}))
        conn.execute(insert(rule_results).values(assessment_id=aid, host=host, rule_id=rule, title="root login",
                                                 severity="high", criticality="normal", status=status, duration=0.0,
                                                 evidence={"expected": "no", "observed": "yes", "where": "/etc/x:3"}))
    return batch


def test_jira_ticket_opens_once_closes_on_a_passing_rescan_and_reopens_if_closed_too_early(
        store: Store, tmp_path: Path, tls: tuple[Path, Path]) -> None:
    with serving(JiraHandler, JiraState("patchwave", "mail-password-42"), tls=tls) as (url, jira):
        sender = notifier(store, tmp_path, (
            f"channels:\n  jira: {{type: jira, url: '{url}', project: OPS, user: {{env: PW_TEST_USER}}, "
            "token: {env: PW_TEST_PASSWORD}, ca_file: tls.crt}\nroutes:\n  - {name: tickets, events: [rule_failed], "
            "channels: [jira], severities: [high, critical]}\n" + FAST))
        events.after_assessment(sender, "b3")  # web2 fails r1 and errors on r2: two tickets
        assert sender.flush()["sent"] == 2
        assert sorted(jira.issues) == ["OPS-1", "OPS-2"]
        r1 = next(t for t in store.tickets() if t["subject"] == "r1")
        assert (r1["state"], r1["host"]) == ("open", "web2")
        # still failing in the next assessment: the ticket is checked, not opened again
        events.after_assessment(sender, _assess(store, 50, "web2", "r1", "fail"))
        sender.flush()
        assert len(jira.issues) == 2
        # someone closes it by hand while the rule still fails: the next check re-opens it
        jira.close_by_hand(r1["number"])
        events.after_assessment(sender, _assess(store, 51, "web2", "r1", "fail"))
        sender.flush()
        assert jira.issues[r1["number"]]["status"] == "To Do"
        assert store.ticket(r1["key"])["reopened"] == 1
        assert "Closed in the ticket system" in jira.issues[r1["number"]]["comments"][-1]
        # the rule passes: the ticket closes, with the confirming assessment as its note
        events.after_assessment(sender, _assess(store, 52, "web2", "r1", "pass"))
        sender.flush()
        assert jira.issues[r1["number"]]["status"] == "Done"
        assert store.ticket(r1["key"])["state"] == "closed"
        assert "confirming assessment 52" in jira.issues[r1["number"]]["comments"][-1]
        # failing again later: the same ticket comes back (one ticket per host and rule)
        events.after_assessment(sender, _assess(store, 53, "web2", "r1", "fail"))
        sender.flush()
        assert jira.issues[r1["number"]]["status"] == "To Do" and len(jira.issues) == 2
    no_secret_anywhere(store, "mail-password-42")


def test_a_ticket_opened_before_a_crash_is_found_not_duplicated(store: Store, tmp_path: Path,
                                                                 tls: tuple[Path, Path]) -> None:
    """The ticket system created the issue but the answer was lost (the orchestrator died): the
    retry finds it by its idempotency label instead of opening a second one."""
    from patchwave.notify.channels import marker
    from patchwave.notify.outbox import ticket_key

    with serving(JiraHandler, JiraState("patchwave", "mail-password-42"), tls=tls) as (url, jira):
        jira.issues["OPS-7"] = {"summary": "x", "description": "", "status": "To Do", "comments": [],
                                "labels": [marker(ticket_key("jira", "rule", "web2", "r1"))]}
        sender = notifier(store, tmp_path, (
            f"channels:\n  jira: {{type: jira, url: '{url}', project: OPS, user: {{env: PW_TEST_USER}}, "
            "token: {env: PW_TEST_PASSWORD}, ca_file: tls.crt}\nroutes:\n  - {name: tickets, events: [rule_failed], "
            "channels: [jira]}\n" + FAST))
        events.after_assessment(sender, "b3")
        sender.flush()
    assert len(jira.issues) == 2 and "OPS-7" in jira.issues  # r1 found as OPS-7; only r2 was opened
    assert store.ticket(ticket_key("jira", "rule", "web2", "r1"))["number"] == "OPS-7"


def test_servicenow_incident_lifecycle_and_patch_tickets(store: Store, tmp_path: Path,
                                                          tls: tuple[Path, Path]) -> None:
    with serving(SnowHandler, SnowState("patchwave", "mail-password-42"), tls=tls) as (url, snow):
        sender = notifier(store, tmp_path, (
            f"channels:\n  snow: {{type: servicenow, url: '{url}', user: {{env: PW_TEST_USER}}, "
            "password: {env: PW_TEST_PASSWORD}, assignment_group: linux-ops, ca_file: tls.crt}\nroutes:\n"
            "  - {name: incidents, events: [patch_failed, rule_failed], channels: [snow]}\n" + FAST))
        events.after_cycle(sender, "c1")
        assert sender.flush()["sent"] == 1
        (incident,) = snow.incidents.values()
        assert (incident["number"], incident["assignment_group"], incident["urgency"]) == ("INC0010001", "linux-ops",
                                                                                            "1")
        assert "db1" in incident["short_description"]
        events.after_assessment(sender, _assess(store, 60, "web2", "r9", "fail"))
        events.after_assessment(sender, _assess(store, 61, "web2", "r9", "pass"))
        sender.flush()
        r9 = next(i for i in snow.incidents.values() if "r9" in i["short_description"])
        assert r9["state"] == "6" and "confirming assessment 61" in r9["notes"][-1]
        # a later cycle patches db1: its confirming scan closes the failed-patch incident of c1
        with store.engine.begin() as conn:
            conn.execute(insert(cycles).values(id="c2", created_at=at(25), finished_at=at(25, 12), status="completed",
                                               inventory="inv", policy={"name": "p"}, options={}))
            conn.execute(insert(end_states).values(cycle_id="c2", host="db1", at=at(25, 12), state="patched",
                                                   packages=[], detail=""))
        events.after_cycle(sender, "c2")
        sender.flush()
        assert incident["state"] == "6" and "Cycle c2 patched db1" in incident["notes"][-1]
        assert [t["state"] for t in store.tickets(kind="patch")] == ["closed"]


@pytest.mark.parametrize("deployment", ["Cloud", "DataCenter"])
def test_jira_cloud_and_data_center_are_each_searched_where_they_search_today(
        store: Store, tmp_path: Path, tls: tuple[Path, Path], deployment: str) -> None:
    """Cloud answers 410 on /rest/api/2/search (removed) and searches at /rest/api/3/search/jql;
    Data Center has no v3 API and searches at /rest/api/2/search. The channel's deployment is
    asked of the server once (serverInfo), then every search goes where that deployment serves."""
    from patchwave.notify.channels import marker
    from patchwave.notify.outbox import ticket_key

    with serving(JiraHandler, JiraState("patchwave", "mail-password-42", deployment), tls=tls) as (url, jira):
        # opened before a crash: only a search that works finds it instead of opening a duplicate
        jira.issues["OPS-7"] = {"summary": "x", "description": "", "status": "To Do", "comments": [],
                                "labels": [marker(ticket_key("jira", "rule", "web2", "r1"))]}
        sender = notifier(store, tmp_path, jira_policy(url, "rule_failed"))
        events.after_assessment(sender, "b3")
        assert sender.flush()["sent"] == 2
    assert len(jira.issues) == 2 and "OPS-7" in jira.issues  # r1 found as OPS-7, only r2 opened
    searched = sorted({path for method, path in jira.calls if method == "GET" and "search" in path})
    assert searched == (["/rest/api/3/search/jql"] if deployment == "Cloud" else ["/rest/api/2/search"])
    assert [path for _m, path in jira.calls].count("/rest/api/2/serverInfo") == 1


def test_jira_cloud_s_removed_search_is_a_clear_delivery_error(store: Store, tmp_path: Path,
                                                                tls: tuple[Path, Path]) -> None:
    """A channel told `deployment: data-center` that is really Jira Cloud: the 410 is reported
    (with Jira's own message) and the message stays in the outbox, nothing opened twice."""
    with serving(JiraHandler, JiraState("patchwave", "mail-password-42", "Cloud"), tls=tls) as (url, jira):
        sender = notifier(store, tmp_path, jira_policy(
            url, "rule_failed", ", deployment: data-center",
            "delivery: {max_attempts: 2, backoff_seconds: 0.05, max_backoff_seconds: 0.1}\n"))
        events.after_assessment(sender, "b3")
        sender.flush(wait_seconds=2)
    assert jira.issues == {}
    errors = [r["last_error"] for r in store.outbox_rows()]
    assert errors and all("410" in e and "/rest/api/3/search/jql" in e for e in errors), errors


def test_a_ticket_ops_closed_by_hand_is_recognised_as_closed(store: Store, tmp_path: Path,
                                                              tls: tuple[Path, Path]) -> None:
    """Ops closes the issue by hand once the rule is fixed; the next passing assessment does not
    look for a transition a closed issue no longer offers (and never stays `closing`): it adds
    the confirming evidence as a comment and records the ticket closed."""
    with serving(JiraHandler, JiraState("patchwave", "mail-password-42"), tls=tls) as (url, jira):
        sender = notifier(store, tmp_path, jira_policy(url, "rule_failed"))
        events.after_assessment(sender, _assess(store, 70, "web2", "r5", "fail"))
        sender.flush()
        (key,) = jira.issues
        jira.close_by_hand(key)
        events.after_assessment(sender, _assess(store, 71, "web2", "r5", "pass"))
        counts = sender.flush()
    assert counts["sent"] == 1 and counts["failed"] == 0
    ticket = next(t for t in store.tickets() if t["subject"] == "r5")
    assert ticket["state"] == "closed"
    assert jira.issues[key]["status"] == "Done" and "confirming assessment 71" in jira.issues[key]["comments"][-1]
    assert not [p for m, p in jira.calls if m == "POST" and p.endswith("/transitions")]


def test_servicenow_resolves_with_the_configured_close_code_and_state(store: Store, tmp_path: Path,
                                                                       tls: tuple[Path, Path]) -> None:
    with serving(SnowHandler, SnowState("patchwave", "mail-password-42"), tls=tls) as (url, snow):
        sender = notifier(store, tmp_path, (
            f"channels:\n  snow: {{type: servicenow, url: '{url}', user: {{env: PW_TEST_USER}}, "
            "password: {env: PW_TEST_PASSWORD}, ca_file: tls.crt, close_code: Resolved by change, close_state: '7'}\n"
            "  plain: {type: servicenow, url: '" + url + "', user: {env: PW_TEST_USER}, "
            "password: {env: PW_TEST_PASSWORD}, ca_file: tls.crt}\nroutes:\n"
            "  - {name: a, events: [rule_failed], channels: [snow], groups: [web]}\n"
            "  - {name: b, events: [rule_failed], channels: [plain], groups: [db]}\n" + FAST))
        events.after_assessment(sender, _assess(store, 80, "web2", "r6", "fail"))
        events.after_assessment(sender, _assess(store, 81, "db1", "r6", "fail"))
        events.after_assessment(sender, _assess(store, 82, "web2", "r6", "pass"))
        events.after_assessment(sender, _assess(store, 83, "db1", "r6", "pass"))
        counts = sender.flush()
    assert counts["failed"] == 0
    closed = {i["short_description"].split(":")[0]: (i["state"], i.get("close_code")) for i in snow.incidents.values()}
    assert closed == {"web2": ("7", "Resolved by change"), "db1": ("6", "Solution provided")}


def test_a_patch_ticket_ops_marks_done_is_confirmed_by_the_host_s_rescan(store: Store, tmp_path: Path,
                                                                        tls: tuple[Path, Path]) -> None:
    """Ops marks db1's failed-patch issue done: the sync notices, and the rescan decides. Still
    pending below the wanted version: re-opened with what is missing. Nothing pending any more:
    closed with the rescan as its evidence (no transition asked of an issue already done)."""
    from patchwave.models import PendingUpdate
    from patchwave.notify import sync

    lines: list[str] = []
    with serving(JiraHandler, JiraState("patchwave", "mail-password-42"), tls=tls) as (url, jira):
        sender = notifier(store, tmp_path, jira_policy(url, "patch_failed"))
        events.after_cycle(sender, "c1")  # db1 failed in c1: its ticket
        sender.flush()
        (key,) = jira.issues
        assert sync.poll(sender, lines.append) == []  # open in Jira: nothing to confirm
        jira.close_by_hand(key)
        (marked,) = sync.poll(sender, lines.append)
        assert (marked["host"], store.ticket(marked["key"])["state"]) == ("db1", "confirming")
        still = [PendingUpdate("db1", "a", "1", "2", "a", True, False, False)]
        sync.confirm_patch(sender, "db1", still)
        sender.flush()
        assert jira.issues[key]["status"] == "To Do" and "still finds: a 1 (wanted 2)" in jira.issues[key]["comments"][-1]
        assert (store.ticket(marked["key"])["state"], store.ticket(marked["key"])["reopened"]) == ("open", 1)
        jira.close_by_hand(key)  # fixed for real this time
        sync.poll(sender, lines.append)
        sync.confirm_patch(sender, "db1", [])
        sender.flush()
    assert store.ticket(marked["key"])["state"] == "closed"
    assert jira.issues[key]["status"] == "Done"
    assert "shows every fix of cycle c1 installed" in jira.issues[key]["comments"][-1]
    assert [p for m, p in jira.calls if m == "POST" and p.endswith("/transitions")] == [
        f"/rest/api/2/issue/{key}/transitions"]  # only the re-open; the close found it done already


def test_a_confirmation_that_cannot_happen_is_reported_overdue(store: Store, tmp_path: Path,
                                                               tls: tuple[Path, Path]) -> None:
    from patchwave.baseline.profile import DEFAULT_PROFILE, Baseline
    from patchwave.notify import sync
    from patchwave.paths import Paths

    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    web: {hosts: {web1: {}}}\n")  # db1 has left the inventory
    lines: list[str] = []
    with serving(JiraHandler, JiraState("patchwave", "mail-password-42"), tls=tls) as (url, jira):
        sender = notifier(store, tmp_path, jira_policy(url, "patch_failed",
                                                       extra="tickets: {confirm_within_minutes: 30}\n" + FAST))
        events.after_cycle(sender, "c1")
        sender.flush()
        jira.close_by_hand(next(iter(jira.issues)))
        baseline = Baseline(DEFAULT_PROFILE)
        soon = sync.sync(Paths(tmp_path), sender, inventory, baseline, lines.append)
        later = sync.sync(Paths(tmp_path), sender, inventory, baseline, lines.append,
                          now=datetime.now(UTC) + timedelta(minutes=31))
    assert soon["marked_done"] == 1 and [(e["host"], e["state"], e["overdue"]) for e in soon["confirming"]] == [
        ("db1", "confirming", False)]
    assert later["marked_done"] == 0 and [e["overdue"] for e in later["confirming"]] == [True]
    assert any("still not confirmed" in line for line in lines)


def test_no_ticket_is_left_half_way(store: Store, tmp_path: Path, tls: tuple[Path, Path]) -> None:
    """A close the ticket system refuses for good puts the ticket back to open (the next passing
    check closes it); an opening given up is opened by the next check; a ticket marked done and
    then re-opened by hand before its confirming check is open again when the check still fails."""
    from patchwave.notify import sync

    with serving(JiraHandler, JiraState("patchwave", "mail-password-42"), tls=tls) as (url, jira):
        # the close transition the channel names does not exist: Jira offers only "Done"
        sender = notifier(store, tmp_path, jira_policy(url, "rule_failed", ", close_transition: Resolve"))
        events.after_assessment(sender, _assess(store, 90, "web2", "r7", "fail"))
        sender.flush()
        (key,) = jira.issues
        events.after_assessment(sender, _assess(store, 91, "web2", "r7", "pass"))
        assert sender.flush()["failed"] == 1
        ticket = next(t for t in store.tickets() if t["subject"] == "r7")
        assert ticket["state"] == "open" and "offers no transition 'Resolve'" in ticket["note"]
        sender = notifier(store, tmp_path, jira_policy(url, "rule_failed"))  # the channel fixed
        events.after_assessment(sender, _assess(store, 92, "web2", "r7", "pass"))
        sender.flush()
        assert store.ticket(ticket["key"])["state"] == "closed" and jira.issues[key]["status"] == "Done"

        # marked done, re-opened by hand, still failing: open again, with the evidence
        events.after_assessment(sender, _assess(store, 93, "web2", "r8", "fail"))
        sender.flush()
        r8 = next(t for t in store.tickets() if t["subject"] == "r8")
        jira.close_by_hand(r8["number"])
        sync.poll(sender, lambda _m: None)
        jira.issues[r8["number"]]["status"] = "To Do"  # ops changes their mind
        events.after_assessment(sender, _assess(store, 94, "web2", "r8", "fail"))
        sender.flush()
        assert store.ticket(r8["key"])["state"] == "open"
        assert "The confirming check still fails" in jira.issues[r8["number"]]["comments"][-1]

    # an opening given up (the ticket system was down): the next check of the failing rule opens it
    down = notifier(store, tmp_path, jira_policy("https://127.0.0.1:9", "rule_failed", extra=(
        "delivery: {max_attempts: 1, backoff_seconds: 0.05, max_backoff_seconds: 0.1}\n")))
    events.after_assessment(down, _assess(store, 95, "web2", "r9x", "fail"))
    down.flush()
    r9 = next(t for t in store.tickets() if t["subject"] == "r9x")
    assert (r9["state"], r9["external_id"]) == ("opening", None)
    with serving(JiraHandler, JiraState("patchwave", "mail-password-42"), tls=tls) as (url, jira):
        sender = notifier(store, tmp_path, jira_policy(url, "rule_failed"))
        events.after_assessment(sender, _assess(store, 96, "web2", "r9x", "fail"))
        sender.flush()
    assert store.ticket(r9["key"])["state"] == "open" and len(jira.issues) == 1


def test_digests_sla_and_cycle_events_go_to_the_routes_whose_hosts_they_are_about(store: Store,
                                                                                    tmp_path: Path) -> None:
    from datetime import date

    from sqlalchemy import update

    from patchwave.states import WaveStatus
    from patchwave.store.schema import cycles, waves

    with store.engine.begin() as conn:  # the broad wave's gate failed (halting the cycle), which was then rolled back
        conn.execute(update(waves).where(waves.c.idx == 1).values(
            status=WaveStatus.FAILED, gate={"reason": "1 of 2 hosts failed (budget 0)", "failed": ["db1"]}))
        conn.execute(update(cycles).values(status="rolled-back"))
    with serving(WebhookHandler, WebhookState(SECRET)) as (url, state):
        sender = notifier(store, tmp_path, (
            f"channels:\n  hook: {{type: webhook, url: '{url}', secret: {{env: PW_TEST_HOOK_SECRET}}, insecure: true}}\n"
            "routes:\n"
            "  - {name: web-team, events: [non_compliant_digest, gate_halted], channels: [hook], owners: [team-web]}\n"
            "  - {name: desktops, events: [non_compliant_digest, sla_warning], channels: [hook], "
            "device_types: [workstation]}\n"
            "  - {name: data-team, events: [sla_warning, rollback_done], channels: [hook], owners: [team-data]}\n"
            + FAST))
        events.after_cycle(sender, "c1")
        events.digest(sender, today=date(2026, 11, 8))  # db1's fix "a" is due Nov 10: 2 days left
        events.digest(sender, today=date(2026, 11, 8))  # the same day again: nothing new
        sender.flush(wait_seconds=5)
    got = sorted((m["event"], ",".join(m["hosts"]), i.split("|")[-2]) for i, m in state.delivered)
    assert got == [
        ("gate_halted", "web2,db1", "web-team"),  # the halted wave had a team-web host
        ("non_compliant_digest", "web2", "web-team"),  # web2 fails; ws1 (desktops) is compliant
        ("rollback_done", "db1,web1,web2", "data-team"),
        ("sla_warning", "db1", "data-team"),  # not desktops: db1 is a server
    ]
    digest = next(m for _i, m in state.delivered if m["event"] == "non_compliant_digest")
    assert "web2: 1 failing, 1 erroring rule(s)" in digest["text"]
