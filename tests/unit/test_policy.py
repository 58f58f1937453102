"""Patch policies: a good one loads; each kind of malformed one is refused with file:line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from patchwave.errors import InputError
from patchwave.patching import policy

GOOD = """\
version: 1
name: monthly
targets:
  groups: [web, db]
  exclude: ["db9*"]
approval:
  security: true
  min_severity: medium
  delay_days: 3
  reject: ["pw-webapp"]
windows:
  - groups: [web]
    timezone: Europe/Berlin
    slots:
      - {days: [sat, sun], start: "02:00", end: "06:00"}
    blackout: ["2026-12-24"]
waves:
  - {name: canary, size: 1, approval: false}
  - {name: pilot, size: "30%", failure_budget: 1}
  - {name: broad}
gates:
  failure_budget: "10%"
  health_checks:
    - service: nginx
    - port: 443
    - http: http://127.0.0.1/health
      status: 200
reboot: if_required
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_policy_loads(tmp_path: Path) -> None:
    loaded = policy.load(write(tmp_path, GOOD), known_groups={"web", "db", "workstations"})
    assert [w.name for w in loaded.waves] == ["canary", "pilot", "broad"]
    assert loaded.approval.min_severity == "medium"
    assert loaded.windows[0].timezone == "Europe/Berlin"


@pytest.mark.parametrize("text", ["", "# to be written\n", "null\n", "---\n...\n", "~\n"],
                         ids=["empty", "comments", "null", "markers", "tilde"])
def test_an_empty_file_is_an_error_never_the_default_policy(tmp_path: Path, text: str) -> None:
    """A policy truncated to nothing must not mean "the default policy on every host"."""
    with pytest.raises(InputError, match=r"policy\.yml:1: empty policy file"):
        policy.load(write(tmp_path, text))


def test_an_explicit_empty_mapping_is_the_default_policy(tmp_path: Path) -> None:
    loaded = policy.load(write(tmp_path, "{}\n"))
    assert [w.name for w in loaded.waves] == ["canary", "broad"] and loaded.approval.security


@pytest.mark.parametrize("field, text", [
    ("user_notice.message", "user_notice:\n  message: \"{{ lookup('pipe', 'id') }}\"\n"),
    ("user_notice.reboot_message", "user_notice:\n  reboot_message: \"{% raw %}x{% endraw %}\"\n"),
    ("gates.health_checks[0].http", "gates:\n  health_checks:\n    - http: \"http://h/{# x #}\"\n"),
    ("name", "name: \"{{ 7 * 7 }}\"\n"),
    ("targets.exclude", "targets:\n  exclude: [\"{{ x }}\"]\n"),
])
def test_template_syntax_is_refused_in_every_text(tmp_path: Path, field: str, text: str) -> None:
    with pytest.raises(InputError, match=rf"policy\.yml:\d+: {re.escape(field)}: '\{{[{{%#]' is Jinja template syntax"):
        policy.load(write(tmp_path, text))


BAD = [
    ("bad yaml", "waves: [\n  {name: a\n", r":3: invalid YAML"),
    ("not a mapping", "- a\n- b\n", r":1: a policy is a mapping"),
    ("unknown top key", "name: x\nwavez: []\n", r":2: wavez: unknown key"),
    ("unknown nested key", "approval:\n  securty: true\n", r":2: approval.securty: unknown key"),
    ("wrong type", "approval:\n  delay_days: three\n", r":2: approval.delay_days: Input should be a valid integer"),
    ("bool as string", "approval:\n  security: 'yes'\n", r":2: approval.security: Input should be a valid boolean"),
    ("percent over 100", "waves:\n  - {name: a, size: '150%'}\n", r":2: waves\[0\].size: size is a percentage over 100"),
    ("zero size", "waves:\n  - {name: a, size: 0}\n", r":2: waves\[0\].size: a wave needs a size above 0"),
    ("no waves", "waves: []\n", r":1: waves: List should have at least 1 item"),
    ("duplicate wave", "waves:\n  - {name: a, size: 1}\n  - {name: a}\n", r"wave names must be unique: a"),
    ("impossible wave", "waves:\n  - {name: all}\n  - {name: more}\n", r"wave 'more' can never get one"),
    ("bad time zone", "windows:\n  - timezone: Mars/Olympus\n    slots: [{days: [sat], start: '01:00', end: '02:00'}]\n",
     r":2: windows\[0\].timezone: unknown time zone 'Mars/Olympus'"),
    ("overlapping slots", "windows:\n  - slots:\n      - {days: [sat], start: '01:00', end: '03:00'}\n"
     "      - {days: [sat, sun], start: '02:00', end: '04:00'}\n", r"slots overlap on sat"),
    ("slot ends before start", "windows:\n  - slots:\n      - {days: [mon], start: '05:00', end: '01:00'}\n",
     r":3: windows\[0\].slots\[0\]: slot ends \(01:00\) before it starts"),
    ("bad clock", "windows:\n  - slots:\n      - {days: [mon], start: '25:00', end: '26:00'}\n",
     r"'25:00' is not a time of day"),
    ("bad day", "windows:\n  - slots:\n      - {days: [funday], start: '01:00', end: '02:00'}\n", r"unknown day 'funday'"),
    ("bad blackout", "windows:\n  - slots: [{days: [mon], start: '01:00', end: '02:00'}]\n    blackout: ['2026-13-01']\n",
     r"blackout date '2026-13-01' is not YYYY-MM-DD"),
    ("unknown group", "targets:\n  groups: [web, dbs]\n", r":2: targets.groups: unknown group 'dbs'"),
    ("bad severity", "approval:\n  min_severity: urgent\n", r":2: approval.min_severity: Input should be 'critical'"),
    ("shell in package", "approval:\n  approve: ['pw-libssl; reboot']\n", r"is not a package name or name=version"),
    ("two checks in one", "gates:\n  health_checks:\n    - {service: ssh, port: 22}\n", r"exactly one of: service, port"),
    ("bad port", "gates:\n  health_checks:\n    - {port: 70000}\n", r":3: gates.health_checks\[0\].port: Input should be less"),
    ("bad budget", "gates:\n  failure_budget: lots\n", r":2: gates.failure_budget: failure_budget must be a count"),
    ("negative sla", "sla_days:\n  critical: 0\n", r":2: sla_days.critical: Input should be greater than or equal to 1"),
    ("duplicate key", "name: a\nname: b\n", r":2: invalid YAML: duplicate key 'name'"),
    ("missing advisory path", "advisories:\n  - path: nowhere/\n", r":2: advisories\[0\].path: nowhere/ does not exist"),
    ("advisory both", "advisories:\n  - {path: x, url: 'https://x'}\n", r"give exactly one of 'path' or 'url'"),
    ("negative soak", "waves:\n  - {name: a, soak_minutes: -5}\n", r":2: waves\[0\].soak_minutes: Input should be greater"),
    ("soak as text", "waves:\n  - {name: a, soak_minutes: ten}\n", r":2: waves\[0\].soak_minutes: Input should be a valid"),
    ("idle longer than job", "timeouts:\n  idle_minutes: 60\n  job_minutes: 30\n",
     r":1: timeouts: job_minutes \(30\) must be longer than idle_minutes \(60\)"),
    ("idle shorter than reboot", "name: x\ntimeouts:\n  idle_minutes: 5\n",
     r":3: timeouts.idle_minutes \(5\) must be longer than the 15-minute wait"),
    ("delay beyond sla", "approval:\n  delay_days: 10\nsla_days:\n  critical: 7\n",
     r":2: approval.delay_days \(10\) is not shorter than sla_days.critical \(7\)"),
    ("zero concurrency", "waves:\n  - {name: a, concurrency: 0}\n", r":2: waves\[0\].concurrency: Input should be greater"),
    ("notice with a control character", "user_notice:\n  message: \"ring\\x07bell\"\n",
     r":2: user_notice.message: a notice is one line of printable text"),
    ("notice delay longer than idle", "user_notice:\n  mode: delay\n  delay_minutes: 30\n",
     r":3: user_notice.delay_minutes \(30\) must be shorter than timeouts.idle_minutes \(20\)"),
    ("unknown notice mode", "user_notice: {mode: shout}\n", r":1: user_notice.mode: Input should be"),
    ("unknown restart policy", "restart: always\n", r":1: restart: Input should be 'never', 'services' or 'reboot'"),
    ("template as restart policy", "restart: \"{{ lookup('pipe', 'id') }}\"\n", r":1: restart: "),
    ("restart as a list", "restart: [services]\n", r":1: restart: Input should be"),
    ("restart reboot without reboots", "reboot: never\nrestart: reboot\n",
     r":2: restart: reboot reboots hosts whose processes still run replaced code, which reboot: never forbids"),
    ("thin link unknown group", "thin_links:\n  - groups: [web]\n    relay: http://relay:3142/\n  - groups: [branch]\n"
     "    download_limit_kbps: 64\n", r":4: thin_links\[1\].groups: unknown group 'branch'"),
    ("thin link without a setting", "thin_links:\n  - groups: [web]\n",
     r":2: thin_links\[0\]: a thin link needs download_limit_kbps, relay or both"),
    ("thin link without groups", "thin_links:\n  - {groups: [], download_limit_kbps: 64}\n",
     r":2: thin_links\[0\].groups: List should have at least 1 item"),
    ("zero download limit", "thin_links:\n  - groups: [web]\n    download_limit_kbps: 0\n",
     r":3: thin_links\[0\].download_limit_kbps: Input should be greater than or equal to 1"),
    ("limit as text", "thin_links:\n  - groups: [web]\n    download_limit_kbps: slow\n",
     r":3: thin_links\[0\].download_limit_kbps: Input should be a valid integer"),
    ("relay with shell", "thin_links:\n  - groups: [web]\n    relay: 'http://relay:3142/;reboot'\n",
     r":3: thin_links\[0\].relay: relay 'http://relay:3142/;reboot' must be an apt proxy URL"),
    ("relay with apt option", "thin_links:\n  - groups: [web]\n    relay: \"http://r/ -o APT::Get::Trivial-Only=1\"\n",
     r":3: thin_links\[0\].relay: relay .* must be an apt proxy URL"),
    ("relay over https", "thin_links:\n  - groups: [web]\n    relay: https://relay:3142/\n",
     r":3: thin_links\[0\].relay: relay 'https://relay:3142/' must be an apt proxy URL"),
]


@pytest.mark.parametrize(("kind", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_malformed_policy_is_refused_with_file_and_line(tmp_path: Path, kind: str, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as caught:
        policy.load(path, known_groups={"web", "db"})
    assert str(caught.value).startswith(f"{path}:"), kind


def test_short_idle_timeout_is_fine_without_reboots(tmp_path: Path) -> None:
    loaded = policy.load(write(tmp_path, "reboot: never\ntimeouts: {idle_minutes: 2, job_minutes: 30}\n"))
    assert loaded.timeouts.idle_minutes == 2


@pytest.mark.parametrize(("value", "total", "expected"), [(1, 10, 1), ("10%", 5, 1), ("50%", 5, 3), ("100%", 7, 7),
                                                           ("0%", 9, 0), ("29%", 100, 29), ("33.5%", 200, 67)])
def test_amounts_round_up(value: int | str, total: int, expected: int) -> None:
    assert policy.amount(value, total) == expected


def test_thin_link_first_match_wins(tmp_path: Path) -> None:
    loaded = policy.load(write(tmp_path, """\
        thin_links:
          - {groups: [branch-a], download_limit_kbps: 64, relay: "http://[fd00::5]:3142"}
          - {groups: [branch-a, branch-b], relay: http://relay.branch.example:3142/}
        """), known_groups={"branch-a", "branch-b", "hq"})
    first = loaded.thin_link(("branch-a", "debian12"))
    assert first is not None and first.playbook_vars() == {"download_limit_kbps": 64, "relay": "http://[fd00::5]:3142"}
    second = loaded.thin_link(["branch-b"])
    assert second is not None and second.playbook_vars() == {"download_limit_kbps": 0,
                                                           "relay": "http://relay.branch.example:3142/"}
    assert second.describe() == "through relay http://relay.branch.example:3142/"
    assert loaded.thin_link(("hq",)) is None


def test_anchors_merge_keys_a_bom_and_crlf_are_fine(tmp_path: Path) -> None:
    """The loader's bounds refuse alias bombs, not ordinary anchors."""
    text = ("\ufeffwindows:\r\n  - &weekend\r\n    groups: [web]\r\n    slots: &slots [{days: [sat, sun], start: '02:00', "
            "end: '06:00'}]\r\n  - {<<: *weekend, groups: [db], slots: *slots}\r\n")
    path = tmp_path / "policy.yml"
    path.write_bytes(text.encode("utf-8"))
    loaded = policy.load(path, known_groups={"web", "db"})
    assert [w.groups for w in loaded.windows] == [["web"], ["db"]] and loaded.windows[1].slots == loaded.windows[0].slots
