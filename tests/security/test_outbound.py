"""Outbound credentials, against real servers on 127.0.0.1 (tests/notifyservers.py): a channel's
credential (Jira and ServiceNow basic auth, a webhook's signature, an SMTP password) goes only to
the channel's own address, over TLS unless the policy says `insecure: true`, and never into the
store or a message. Advisory sources are https unless they say `insecure: true`, and an https
fetch is never redirected to plain http.

A redirect is refused whatever it points to (another port, another host name, the same host):
the delivery fails naming where it pointed, and the server it pointed to sees no request at all.
`test_the_trap_is_real` shows that urllib on its own would have carried the credential along."""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from notifyservers import (
    JiraHandler,
    JiraState,
    RecorderHandler,
    RecorderState,
    RedirectHandler,
    RedirectState,
    WebhookHandler,
    WebhookState,
    self_signed,
    serving,
    smtp_server,
)
from reportdata import HOSTS, fill

from patchwave.errors import InputError
from patchwave.notify import config, events
from patchwave.notify.outbox import Notifier
from patchwave.patching import advisories
from patchwave.patching import policy as policy_mod
from patchwave.patching.advisories import load_advisories
from patchwave.store import Store

ROOT = Path(__file__).resolve().parents[2]
PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
USER = "patchwave"
TOKEN = "tok-7f3a-only-for-the-channel"  # noqa: S105 - a test credential
HOOK_KEY = "hook-key-only-for-the-channel"
BASIC = base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()  # how the credential travels
FAST = "delivery: {max_attempts: 3, backoff_seconds: 0.05, max_backoff_seconds: 0.1}\n"
OSV = {"id": "OSV-OUT-1", "published": "2026-11-01T00:00:00Z",
       "affected": [{"package": {"name": "pkg"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"fixed": "1.0-2"}]}]}]}


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_OUT_USER", USER)
    monkeypatch.setenv("PW_OUT_TOKEN", TOKEN)
    monkeypatch.setenv("PW_OUT_HOOK", HOOK_KEY)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    made = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    fill(made)  # batch b3: web2 fails r1 and errors on r2 (two rule_failed events, two tickets)
    return made


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    """The servers' certificate; the channels trust it as `ca_file: tls.crt`."""
    return self_signed(tmp_path, stem="tls")


def channel(kind: str, url: str, extra: str = "") -> str:
    where = f"url: '{url}'{extra}"
    return {"jira": f"{{type: jira, {where}, project: OPS, user: {{env: PW_OUT_USER}}, token: {{env: PW_OUT_TOKEN}}}}",
            "servicenow": f"{{type: servicenow, {where}, user: {{env: PW_OUT_USER}}, password: {{env: PW_OUT_TOKEN}}}}",
            "webhook": f"{{type: webhook, {where}, secret: {{env: PW_OUT_HOOK}}}}"}[kind]


def policy_text(kind: str, url: str, extra: str = "") -> str:
    """One channel `out` (on line 2) and a route of rule_failed to it."""
    return (f"channels:\n  out: {channel(kind, url, extra)}\n"
            "routes:\n  - {name: out, events: [rule_failed], channels: [out]}\n" + FAST)


def write(tmp_path: Path, text: str, name: str = "notify.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def notifier(store: Store, tmp_path: Path, text: str, logged: list[str] | None = None) -> Notifier:
    return Notifier(store, config.load(write(tmp_path, text)), tmp_path, HOSTS,
                    logged.append if logged is not None else None)


def nowhere(store: Store, tmp_path: Path, texts: list[str], *extra: str) -> None:
    """Neither the credential (as configured or as it travels) nor `extra` is in the store file,
    its outbox and ticket rows, or `texts` (log lines, output)."""
    raw = (tmp_path / "pw.db").read_bytes()
    rows = json.dumps([store.outbox_rows(), store.tickets()], default=str)
    for secret in (TOKEN, HOOK_KEY, BASIC, *extra):
        assert secret.encode() not in raw
        assert secret not in rows
        assert all(secret not in text for text in texts)


# --- redirects -------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "code", "host"), [
    ("jira", 301, "127.0.0.1"), ("jira", 302, "localhost"), ("jira", 303, "127.0.0.1"), ("jira", 307, "localhost"),
    ("jira", 308, "127.0.0.1"), ("servicenow", 302, "localhost"), ("servicenow", 307, "127.0.0.1"),
    ("webhook", 302, "127.0.0.1"), ("webhook", 308, "localhost"),
])
def test_a_redirect_to_another_port_or_host_fails_and_the_credential_never_goes_there(
        store: Store, tmp_path: Path, tls: tuple[Path, Path], kind: str, code: int, host: str) -> None:
    """Jira and ServiceNow first search for the ticket (a GET, which urllib would follow with
    every code, Authorization included); the webhook POSTs."""
    with serving(RecorderHandler, RecorderState(), tls=tls) as (elsewhere, seen):
        port = elsewhere.rsplit(":", 1)[1]
        # localhost is 127.0.0.1 here (/etc/hosts), but not the host the channel names
        target = f"https://someone:pw-in-location@{host}:{port}/collect?token=query-token-9"
        with serving(RedirectHandler, RedirectState(target, code), tls=tls) as (url, trap):
            logged: list[str] = []
            sender = notifier(store, tmp_path, policy_text(kind, url, ", ca_file: tls.crt"), logged)
            assert events.after_assessment(sender, "b3") == 2
            counts = sender.flush()
    assert (counts["sent"], counts["retry"], counts["failed"]) == (0, 0, 2)  # not retried: the URL must change
    assert len(trap.requests) == 2  # each delivery asked once, and went no further
    assert seen.requests == []  # so no credential there, nor anything else
    for row in store.outbox_rows():
        assert row["status"] == "failed"
        assert f"redirected (HTTP {code}) to https://{host}:{port}/collect (another host); not followed" in row["last_error"]
    assert any("redirected" in line for line in logged)
    nowhere(store, tmp_path, logged, "pw-in-location", "query-token-9")


def test_a_redirect_to_the_same_host_is_refused_as_well(store: Store, tmp_path: Path, tls: tuple[Path, Path]) -> None:
    """Documented choice: no redirect is followed with credentials, even one that stays on the host."""
    with serving(RedirectHandler, RedirectState("/api/now/v2/moved", 301), tls=tls) as (url, trap):
        logged: list[str] = []
        sender = notifier(store, tmp_path, policy_text("servicenow", url, ", ca_file: tls.crt"), logged)
        events.after_assessment(sender, "b3")
        counts = sender.flush()
    assert counts["failed"] == 2
    assert [path for _method, path in trap.requests if "moved" in path] == []  # never followed
    assert all(f"redirected (HTTP 301) to {url}/api/now/v2/moved (the same host); not followed" in r["last_error"]
               for r in store.outbox_rows())
    nowhere(store, tmp_path, logged)


def test_the_trap_is_real(tls: tuple[Path, Path]) -> None:
    """The servers above are a fair test: urllib on its own follows the redirect to the other
    port and hands it the Authorization header."""
    trusted = ssl.create_default_context(cafile=str(tls[0]))
    with serving(RecorderHandler, RecorderState(), tls=tls) as (elsewhere, seen), \
            serving(RedirectHandler, RedirectState(f"{elsewhere}/collect"), tls=tls) as (url, _trap):
        request = urllib.request.Request(f"{url}/rest/api/2/search",  # noqa: S310 - https, a test server on 127.0.0.1
                                         headers={"Authorization": f"Basic {BASIC}"})
        with urllib.request.urlopen(request, context=trusted, timeout=10) as answer:  # noqa: S310 - the same
            assert answer.status == 200
    assert [r["headers"]["authorization"] for r in seen.with_credentials()] == [f"Basic {BASIC}"]


# --- https, or an explicit insecure: true ------------------------------------------------------

@pytest.mark.parametrize("kind", ["jira", "servicenow", "webhook"])
def test_plain_http_is_refused_when_the_policy_loads(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, policy_text(kind, "http://service.example.org"))
    with pytest.raises(config.NotifyError) as caught:
        config.load(path)
    assert caught.value.exit_code == 2
    assert re.fullmatch(rf"{re.escape(str(path))}:2: channels\.out\.{kind}\.url: 'http://service\.example\.org' is "
                        r"plain http, .*: use https:// \(or set insecure: true on the channel .*\)", caught.value.message)


def test_the_cli_refuses_plain_http_with_file_line_and_exit_2_before_anything_runs(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        channels:
          jira:
            type: jira
            url: http://jira.example.org
            project: OPS
            user: {env: PW_OUT_USER}
            token: {env: PW_OUT_TOKEN}
        routes:
          - {name: tickets, events: [rule_failed], channels: [jira]}
        """)
    database = tmp_path / "cli.db"
    for argv in (["notify", "check", "-p", str(path), "-i", str(tmp_path / "none.yml")],
                 ["--notify", str(path), "notify", "status", "--store", f"sqlite:///{database}"]):
        proc = subprocess.run([PATCHWAVE, *argv], capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
        stderr = proc.stderr.replace("\n", "")
        assert proc.returncode == 2, proc.stderr
        assert f"{path}:4: channels.jira.jira.url: 'http://jira.example.org' is plain http" in stderr
        assert "use https:// (or set insecure: true" in stderr and "Traceback" not in stderr
    assert not database.exists()  # refused before the store was opened


def test_insecure_true_works_and_every_use_is_warned_about_and_recorded(store: Store, tmp_path: Path) -> None:
    """`patchwave notify flush` over plain http: the tickets open, stderr warns once per
    delivery, each outbox row records `insecure`, and the credential is in no output."""
    with serving(JiraHandler, JiraState(USER, TOKEN)) as (url, jira):
        path = write(tmp_path, policy_text("jira", url, ", insecure: true"))
        assert events.after_assessment(Notifier(store, config.load(path), tmp_path, HOSTS), "b3") == 2  # queued only
        proc = subprocess.run([PATCHWAVE, "notify", "flush", "-p", str(path), "-i", str(tmp_path / "none.yml"),
                               "--store", store.url, "--json"], capture_output=True, text=True, cwd=ROOT, check=False,
                              timeout=120, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sent"] == 2 and sorted(jira.issues) == ["OPS-1", "OPS-2"]
    assert proc.stderr.count("WARNING: channel out") == 2
    assert "credentials over plain http (insecure: true" in " ".join(proc.stderr.split())
    assert all(r["status"] == "sent" and r["result"]["insecure"] is True for r in store.outbox_rows())
    nowhere(store, tmp_path, [proc.stdout, proc.stderr])


def test_without_a_log_the_insecure_warning_goes_to_stderr(store: Store, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with serving(WebhookHandler, WebhookState(HOOK_KEY)) as (url, hook):
        sender = notifier(store, tmp_path, policy_text("webhook", url, ", insecure: true"))  # no log
        events.after_assessment(sender, "b3")
        counts = sender.flush()
    assert counts["sent"] == 2 and len(hook.delivered) == 2
    assert capsys.readouterr().err.count(f"WARNING: channel out (webhook {url}) sends its credentials over plain http") == 2


@pytest.mark.parametrize(("extra", "message"), [
    (", insecure: true", r"insecure: true is only for an http:// URL and this one is https: remove insecure"),
    (", insecure: 'yes'", r"channels\.out\.jira\.insecure: Input should be a valid boolean"),
])
def test_insecure_must_mean_something(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(config.NotifyError, match=message):
        config.load(write(tmp_path, policy_text("jira", "https://jira.example.org", extra)))


# --- SMTP ------------------------------------------------------------------------------------

def mail_policy(port: int, cert: Path, extra: str = "") -> str:
    return (f"channels:\n  out:\n    type: smtp\n    host: 127.0.0.1\n    port: {port}\n    ca_file: {cert.name}\n"
            f"    username: {{env: PW_OUT_USER}}\n    password: {{env: PW_OUT_TOKEN}}\n{extra}"
            "    from: patchwave@example.org\n    to: [ops@example.org]\n"
            "routes:\n  - {name: mail, events: [patch_failed, cycle_completed], channels: [out]}\n" + FAST)


# aiosmtpd warns about a server that takes AUTH without STARTTLS: that is this server's point
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtp_never_logs_in_to_a_server_that_offers_no_tls(store: Store, tmp_path: Path) -> None:
    with smtp_server(tmp_path, USER, TOKEN, tls="none") as (port, box, cert):
        logged: list[str] = []
        sender = notifier(store, tmp_path, mail_policy(port, cert), logged)
        events.after_cycle(sender, "c1")
        counts = sender.flush()
    assert counts["sent"] == 0 and counts["retry"] + counts["failed"] == 2
    assert box.logins == [] and box.messages == []  # the password was never sent
    assert all("STARTTLS extension not supported" in r["last_error"] for r in store.outbox_rows())
    nowhere(store, tmp_path, logged)


# the same warning for SMTPS, where the whole connection is TLS (aiosmtpd only knows of STARTTLS)
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtps_sends_the_password_inside_tls(store: Store, tmp_path: Path) -> None:
    with smtp_server(tmp_path, USER, TOKEN, tls="smtps") as (port, box, cert):
        sender = notifier(store, tmp_path, mail_policy(port, cert, "    smtps: true\n"))
        events.after_cycle(sender, "c1")
        counts = sender.flush(wait_seconds=5)
    assert counts["sent"] == 2 and box.logins == [USER, USER] and all(m["tls"] for m in box.messages)
    nowhere(store, tmp_path, [])


@pytest.mark.parametrize(("extra", "message"), [
    ("    starttls: false\n", r"notify.yml:2: channels.out.smtp: a password is only sent after STARTTLS or over SMTPS"),
    ("    smtps: true\n    starttls: true\n", r"notify.yml:2: channels.out.smtp: smtps: true .* choose one"),
])
def test_an_smtp_password_without_tls_is_refused(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(config.NotifyError, match=message):
        config.load(write(tmp_path, mail_policy(25, Path("none.crt"), extra)))


# --- advisory sources ------------------------------------------------------------------------

def patch_policy(tmp_path: Path, source: str) -> Path:
    (tmp_path / "adv").mkdir(exist_ok=True)
    return write(tmp_path, f"name: outbound\nadvisories:\n  - path: adv\n  - {source}\n", "policy.yml")


def test_an_http_advisory_url_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = patch_policy(tmp_path, "url: http://feed.example.org/osv.json")
    with pytest.raises(policy_mod.PolicyError) as caught:
        policy_mod.load(path)
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith(f"{path}:4: advisories[1]: url 'http://feed.example.org/osv.json' is "
                                           "plain http")
    assert "use https:// (or set insecure: true on this advisory source" in caught.value.message


def test_the_cli_refuses_an_http_advisory_url_with_exit_2(tmp_path: Path) -> None:
    inventory = write(tmp_path, "all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n", "hosts.yml")
    path = patch_policy(tmp_path, "url: http://feed.example.org/osv.json")
    proc = subprocess.run([PATCHWAVE, "cycle", "plan", "-i", str(inventory), "-p", str(path)], capture_output=True,
                          text=True, cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:4: advisories[1]: url 'http://feed.example.org/osv.json' is plain http" in proc.stderr.replace("\n", "")


@pytest.mark.parametrize(("source", "message"), [
    ("{url: 'https://feed.example.org/osv.json', insecure: true}", "insecure: true is only for an http:// url"),
    ("{path: adv, insecure: true}", "insecure: true is only for an http:// url, not a path"),
    ("url: 'https://reader:feed-pass-5@feed.example.org/osv.json'",
     "url 'https://feed.example.org/osv.json': a user or password does not belong in the URL"),
    ("url: 'http://feed.example.org/osv.json?key=feed-pass-5'",
     "url 'http://feed.example.org/osv.json' is plain http"),
])
def test_advisory_source_mistakes_are_refused(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(policy_mod.PolicyError, match=re.escape(message)) as caught:
        policy_mod.load(patch_policy(tmp_path, source))
    assert "feed-pass-5" not in caught.value.message


def test_insecure_true_lets_an_http_advisory_source_load(tmp_path: Path) -> None:
    with serving(RecorderHandler, RecorderState(OSV)) as (url, feed):
        loaded = policy_mod.load(patch_policy(tmp_path, f"{{url: '{url}/osv.json', insecure: true}}"))
        found = load_advisories(loaded, tmp_path, None)  # what cycle plan and cycle run do
    assert [a.id for a in found] == ["OSV-OUT-1"] and [r["path"] for r in feed.requests] == ["/osv.json"]


def test_an_https_advisory_fetch_is_not_redirected_to_plain_http(tmp_path: Path, tls: tuple[Path, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))  # advisory fetches trust the system's CAs: here, the test's
    with serving(RecorderHandler, RecorderState(OSV)) as (plain, feed), \
            serving(RedirectHandler, RedirectState(f"{plain}/osv.json?token=feed-token-3"), tls=tls) as (url, trap), \
            pytest.raises(InputError) as caught:
        advisories.load(f"{url}/osv.json?token=feed-token-1")
    assert feed.requests == [] and len(trap.requests) == 1
    assert caught.value.message == (f"{url}/osv.json: cannot fetch advisories: redirected (HTTP 302) to {plain}/osv.json, "
                                    "which is not followed: an https advisory source is only redirected to https")
    assert "feed-token" not in caught.value.message


def test_an_https_advisory_fetch_follows_a_redirect_to_https(tmp_path: Path, tls: tuple[Path, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))
    with serving(RecorderHandler, RecorderState(OSV), tls=tls) as (secure, feed), \
            serving(RedirectHandler, RedirectState(f"{secure}/osv.json"), tls=tls) as (url, _trap):
        found = advisories.load(f"{url}/feed")
    assert [a.id for a in found] == ["OSV-OUT-1"] and [r["path"] for r in feed.requests] == ["/osv.json"]
