"""Notification policies: a good one loads; each kind of bad one is refused with file:line and
what to fix; secrets come from the environment or an Ansible Vault file, never from the policy."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from patchwave.errors import InputError
from patchwave.notify import config

GOOD = """\
channels:
  hook: {type: webhook, url: 'https://hooks.example.org/patchwave', secret: {env: HOOK_KEY}}
  mail:
    type: smtp
    host: smtp.example.org
    from: patchwave@example.org
    to: [ops@example.org]
    username: {env: SMTP_USER}
    password: {vault: secrets.yml, key: smtp_password}
  jira: {type: jira, url: 'https://jira.example.org', project: OPS, user: {env: J_USER}, token: {env: J_TOKEN}}
routes:
  - name: urgent
    events: [critical_drift, patch_failed, gate_halted]
    channels: [hook, mail]
    severities: [critical, high]
    quiet_hours: {start: '22:00', end: '06:00', timezone: Europe/Berlin}
  - name: tickets
    events: [rule_failed, patch_failed]
    channels: [jira]
    groups: [web]
    rate_limit: {messages: 50, per_minutes: 60}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notify.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_policy_loads(tmp_path: Path) -> None:
    policy = config.load(write(tmp_path, GOOD), known_groups={"web", "db"})
    assert [r.name for r in policy.routes] == ["urgent", "tickets"]
    assert policy.channels["mail"].type == "smtp" and policy.delivery.max_attempts == 10


BAD = [
    ("invalid YAML", GOOD.replace("routes:", "routes: [", 1), r"notify.yml:\d+: invalid YAML"),
    ("unknown key", GOOD.replace("    severities:", "    severity:"), r"notify.yml:15: routes\[0\].severity: unknown key"),
    ("unknown channel in a route", GOOD.replace("channels: [hook, mail]", "channels: [hook, pager]"),
     r"notify.yml:14: routes\[0\].channels\[1\]: unknown channel 'pager'"),
    ("ticket system for a message event", GOOD.replace("events: [rule_failed, patch_failed]",
                                                        "events: [rule_failed, cycle_completed]"),
     r"notify.yml:19: routes\[1\]: jira is a ticket system .* not cycle_completed"),
    ("unknown event", GOOD.replace("gate_halted]", "gate_closed]"), r"notify.yml:13: routes\[0\].events\[2\]"),
    ("credentials in a URL", GOOD.replace("https://hooks.example.org", "https://u:p@hooks.example.org"),
     r"notify.yml:2: channels.hook.webhook.url: credentials do not belong in the URL"),
    ("not an http URL", GOOD.replace("'https://jira.example.org'", "'file:///etc/passwd'"),
     r"notify.yml:10: channels.jira.jira.url: 'file:///etc/passwd' is not an http\(s\) URL"),
    ("bad e-mail address", GOOD.replace("to: [ops@example.org]", "to: ['ops; rm -rf /']"),
     r"notify.yml:7: channels.mail.smtp.to: .*is not an e-mail address"),
    ("unknown Jira deployment", GOOD.replace("token: {env: J_TOKEN}}", "token: {env: J_TOKEN}, deployment: server}"),
     r"notify.yml:10: channels.jira.jira.deployment"),
    ("no time to confirm", GOOD + "tickets: {confirm_within_minutes: 0}\n", r"tickets.confirm_within_minutes"),
    ("confirm time as text", GOOD + "tickets: {confirm_within_minutes: soon}\n", r"tickets.confirm_within_minutes"),
    ("a ServiceNow state that is not one", GOOD.replace(
        "  jira: {type: jira",
        "  snow: {type: servicenow, url: 'https://x.service-now.com', user: {env: S_U}, password: {env: S_P}, "
        "close_state: '6; state=1'}\n  jira: {type: jira"), r"channels.snow.servicenow.close_state"),
    ("bad time zone", GOOD.replace("Europe/Berlin", "Mars/Olympus"),
     r"notify.yml:16: routes\[0\].quiet_hours.timezone: unknown time zone 'Mars/Olympus'"),
    ("bad clock", GOOD.replace("'22:00'", "'25:00'"), r"notify.yml:16: routes\[0\].quiet_hours.start"),
    ("a secret in the file", GOOD.replace("secret: {env: HOOK_KEY}", "secret: hunter2"),
     r"notify.yml:2: channels.hook.webhook.secret"),
    ("env and vault at once", GOOD.replace("{env: SMTP_USER}", "{env: SMTP_USER, vault: x.yml, key: u}"),
     r"notify.yml:8: channels.mail.smtp.username: give either env"),
    ("env name that is not one", GOOD.replace("HOOK_KEY", "$(id)"), r"is not an environment variable name"),
    ("duplicate route", GOOD.replace("name: tickets", "name: urgent"),
     r"notify.yml:17: routes\[1\].name: 'urgent' is used twice"),
    ("wrong type", GOOD.replace("messages: 50", "messages: fifty"),
     r"notify.yml:21: routes\[1\].rate_limit.messages: Input should be"),
    ("password without STARTTLS",
     GOOD.replace("    host: smtp.example.org\n", "    host: smtp.example.org\n    starttls: false\n"),
     r"channels.mail.smtp: .*only sent after STARTTLS"),
    ("no routes", "channels: {}\nroutes: []\n", r"notify.yml:2: routes: List should have at least 1 item"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_policies_are_refused_with_file_and_line(tmp_path: Path, case: str, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        config.load(write(tmp_path, text))


def test_unknown_group_is_refused_against_the_inventory(tmp_path: Path) -> None:
    with pytest.raises(config.NotifyError, match=r"notify.yml:20: routes\[1\].groups: unknown group 'web'; the inventory has db"):
        config.load(write(tmp_path, GOOD), known_groups={"db"})


def test_a_vault_secret_is_decrypted_and_a_wrong_password_named(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    (tmp_path / "vault-pass").write_text("correct horse\n")
    vault = VaultLib([("default", VaultSecret(b"correct horse"))])
    (tmp_path / "secrets.yml").write_bytes(vault.encrypt("smtp_password: from-the-vault\n"))
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(tmp_path / "vault-pass"))
    policy = config.load(write(tmp_path, GOOD))
    password = policy.channels["mail"].password  # type: ignore[union-attr]
    assert password.value(tmp_path) == "from-the-vault"
    (tmp_path / "vault-pass").write_text("wrong\n")
    with pytest.raises(config.NotifyError, match=r"secrets\.yml: cannot decrypt") as caught:
        password.value(tmp_path)
    assert "from-the-vault" not in str(caught.value)
    monkeypatch.delenv("HOOK_KEY", raising=False)
    with pytest.raises(config.NotifyError, match="the environment variable HOOK_KEY is not set"):
        policy.channels["hook"].secret.value(tmp_path)  # type: ignore[union-attr]


def test_quiet_hours_across_midnight() -> None:
    from datetime import UTC, datetime

    quiet = config.QuietHours(start="22:00", end="06:00", timezone="UTC")
    assert quiet.holds_until(datetime(2026, 11, 29, 23, 0, tzinfo=UTC)) == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert quiet.holds_until(datetime(2026, 11, 30, 5, 59, tzinfo=UTC)) == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert quiet.holds_until(datetime(2026, 11, 30, 6, 0, tzinfo=UTC)) is None
    assert quiet.holds_until(datetime(2026, 11, 30, 12, 0, tzinfo=UTC)) is None
