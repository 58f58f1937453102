"""Every check type of assess_baseline, passing and failing, on real lab hosts: fixtures are made
inside the container (podman exec, as root), the module reads them over SSH."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import podman_exec, run_module

from patchwave.baseline.profile import DEFAULT_PROFILE, Baseline
from patchwave.models import Host

FIXTURES = """
set -e
mkdir -p /etc/pwfix/app.conf.d /etc/modprobe.d
printf 'secret\\n' > /etc/pwfix/good; chmod 0600 /etc/pwfix/good
printf 'open\\n' > /etc/pwfix/bad; chmod 0666 /etc/pwfix/bad
printf '# app\\nListen 8080\\nMode strict\\nTimeout 30\\n' > /etc/pwfix/app.conf
printf 'Mode relaxed\\n' > /etc/pwfix/app.conf.d/10-local.conf
printf 'net.ipv4.tcp_syncookies = 1\\nnet.ipv4.conf.all.rp_filter = 2\\n' > /etc/sysctl.d/99-pwfix.conf
printf 'install pwfixmod /bin/false\\nblacklist pwfixbl\\n' > /etc/modprobe.d/pwfix.conf
useradd --system --shell /bin/bash pwsvc
useradd --create-home pwempty && passwd -d pwempty >/dev/null
"""
CLEANUP = """
rm -rf /etc/pwfix /etc/sysctl.d/99-pwfix.conf /etc/modprobe.d/pwfix.conf
userdel pwsvc 2>/dev/null || true; userdel -r pwempty 2>/dev/null || true
sed -i '/^pwtoor:/d' /etc/passwd
pkill -f '^python3 -m http[.]server 8080' || true
"""

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("file present", {"type": "file", "args": {"path": "/etc/pwfix/good"}}, "pass"),
    ("file missing", {"type": "file", "args": {"path": "/etc/pwfix/missing"}}, "fail"),
    ("file absent ok", {"type": "file", "args": {"path": "/etc/pwfix/missing", "state": "absent"}}, "pass"),
    ("file absent but there", {"type": "file", "args": {"path": "/etc/pwfix/good", "state": "absent"}}, "fail"),
    ("mode ok", {"type": "file_mode", "args": {"paths": ["/etc/pwfix/good"], "owner": "root", "mode": "0600"}}, "pass"),
    ("mode glob catches the bad one", {"type": "file_mode", "args": {"paths": ["/etc/pwfix/*"], "mode": "0644"}}, "fail"),
    ("owner wrong", {"type": "file_mode", "args": {"paths": ["/etc/pwfix/good"], "owner": "nobody"}}, "fail"),
    ("mode of nothing", {"type": "file_mode", "args": {"paths": ["/etc/pwfix/none*"], "mode": "0600"}}, "not_applicable"),
    ("regex present", {"type": "file_content", "args": {"path": "/etc/pwfix/app.conf", "regex": "^Listen 8080$"}}, "pass"),
    ("regex missing", {"type": "file_content", "args": {"path": "/etc/pwfix/app.conf", "regex": "^Listen 443$"}}, "fail"),
    ("line absent ok", {"type": "file_content", "args": {"path": "/etc/pwfix/app.conf", "line": "Debug on",
                                                          "state": "absent"}}, "pass"),
    ("line absent but there", {"type": "file_content", "args": {"path": "/etc/pwfix/app.conf", "line": "Timeout 30",
                                                                 "state": "absent"}}, "fail"),
    ("include dir wins (first)", {"type": "config_value", "args": {
        "path": ["/etc/pwfix/app.conf.d/*.conf", "/etc/pwfix/app.conf"], "key": "mode", "first_wins": True,
        "value": "relaxed"}}, "pass"),
    ("include dir overrides strict", {"type": "config_value", "args": {
        "path": ["/etc/pwfix/app.conf.d/*.conf", "/etc/pwfix/app.conf"], "key": "mode", "first_wins": True,
        "value": "strict"}}, "fail"),
    ("number within max", {"type": "config_value", "args": {"path": "/etc/pwfix/app.conf", "key": "Timeout",
                                                             "max": 60}}, "pass"),
    ("number over max", {"type": "config_value", "args": {"path": "/etc/pwfix/app.conf", "key": "Timeout", "max": 10}},
     "fail"),
    ("sshd effective pass", {"type": "sshd", "args": {"key": "permitrootlogin", "value": "no"}}, "pass"),
    ("sshd effective fail", {"type": "sshd", "args": {"key": "x11forwarding", "value": "no"}}, "fail"),
    ("sshd weak cipher list", {"type": "sshd", "args": {"key": "ciphers", "forbid": ["aes256-ctr"]}}, "fail"),
    ("sysctl persisted", {"type": "sysctl", "args": {"key": "net.ipv4.tcp_syncookies", "value": "1",
                                                      "scope": "persisted"}}, "pass"),
    ("sysctl persisted wrong", {"type": "sysctl", "args": {"key": "net.ipv4.conf.all.rp_filter", "value": "1",
                                                            "scope": "persisted"}}, "fail"),
    ("kmod disabled", {"type": "kernel_module", "args": {"name": "pwfixmod"}}, "pass"),
    ("kmod not disabled", {"type": "kernel_module", "args": {"name": "pwfixother"}}, "fail"),
    ("kmod blacklist only", {"type": "kernel_module", "args": {"name": "pwfixbl"}}, "fail"),
    ("kmod blacklist enough", {"type": "kernel_module", "args": {"name": "pwfixbl", "blacklist_enough": True}}, "pass"),
    ("mount options", {"type": "mount", "args": {"mount": "/run", "options": ["nosuid", "nodev"]}}, "pass"),
    ("mount option missing", {"type": "mount", "args": {"mount": "/run", "options": ["noexec"]}}, "fail"),
    ("not a mount", {"type": "mount", "args": {"mount": "/srv/pwfix", "options": ["nodev"]}}, "not_applicable"),
    ("required mount", {"type": "mount", "args": {"mount": "/srv/pwfix", "require_mount": True}}, "fail"),
    ("package installed", {"type": "package", "args": {"name": "openssh-server"}}, "pass"),
    ("package absent ok", {"type": "package", "args": {"name": "telnetd", "state": "absent"}}, "pass"),
    ("package should be absent", {"type": "package", "args": {"name": "openssh-*", "state": "absent"}}, "fail"),
    ("service enabled and running", {"type": "service", "args": {"name": "ssh", "enabled": True, "active": True,
                                                                 "process": "sshd"}}, "pass"),
    ("service missing", {"type": "service", "args": {"name": "cron", "enabled": True}}, "fail"),
    ("service missing ok", {"type": "service", "args": {"name": "cron", "enabled": True, "missing_ok": True}},
     "not_applicable"),
    ("ports allowed", {"type": "ports", "args": {"allowed": [22, 8080]}}, "pass"),
    ("ports unexpected", {"type": "ports", "args": {"allowed": [22]}}, "fail"),
    ("uid 0 only root", {"type": "accounts", "args": {"rule": "uid0_only_root"}}, "fail"),
    ("empty passwords", {"type": "accounts", "args": {"rule": "no_empty_passwords"}}, "fail"),
    ("system shells", {"type": "accounts", "args": {"rule": "system_shells"}}, "fail"),
    ("system shells exempt", {"type": "accounts", "args": {"rule": "system_shells", "exempt": ["pwsvc", "pwtoor"]}},
     "pass"),
    ("unique uids", {"type": "accounts", "args": {"rule": "unique_uids"}}, "fail"),
    ("shadowed", {"type": "accounts", "args": {"rule": "shadowed_passwords"}}, "pass"),
    ("command output", {"type": "command", "args": {"argv": ["uname", "-s"], "stdout_regex": "^Linux$"}}, "pass"),
    ("command rc", {"type": "command", "args": {"argv": ["false"]}}, "fail"),
    ("command hangs", {"type": "command", "args": {"argv": ["sleep", "30"]}, "timeout": 2}, "error"),
    ("other release", {"type": "command", "args": {"argv": ["false"]}, "applies": {"versions": ["11", "13"]}},
     "not_applicable"),
    ("this release", {"type": "command", "args": {"argv": ["true"]}, "applies": {"distributions": ["debian"],
                                                                                "versions": ["12"]}}, "pass"),
    ("other device type", {"type": "command", "args": {"argv": ["false"]}, "applies": {"device_types": ["router"]}},
     "not_applicable"),
]


@pytest.fixture(scope="module")
def host(lab) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    chosen = next(h for h in lab.hosts() if h.name == "web1")
    podman_exec(chosen.container, "sh", "-c", CLEANUP)
    podman_exec(chosen.container, "sh", "-c", FIXTURES)
    podman_exec(chosen.container, "sh", "-c", "echo 'pwtoor:x:0:0::/root:/bin/sh' >> /etc/passwd")
    podman_exec(chosen.container, "sh", "-c", "nohup python3 -m http.server 8080 >/dev/null 2>&1 &")
    time.sleep(1)
    yield chosen
    podman_exec(chosen.container, "sh", "-c", CLEANUP)


def test_every_check_type_passes_and_fails_on_a_real_host(host) -> None:  # type: ignore[no-untyped-def]
    rules = [dict(case, id=f"c{index:02d}") for index, (_name, case, _want) in enumerate(CASES)]
    started = time.monotonic()
    result = run_module(host.name, "patchwave.endpoint.assess_baseline", {"rules": rules, "device_type": "server"})
    assert result["failed"] is False and result["changed"] is False
    got = {r["id"]: r for r in result["results"]}  # type: ignore[attr-defined]
    wrong = [(name, want, got[f"c{index:02d}"]["status"], got[f"c{index:02d}"]["evidence"])
             for index, (name, _case, want) in enumerate(CASES) if got[f"c{index:02d}"]["status"] != want]
    assert not wrong, json.dumps(wrong, indent=1)
    assert time.monotonic() - started < 30  # the hanging command was cut off at its 2 s timeout
    evidence = {name: got[f"c{index:02d}"]["evidence"] for index, (name, _c, _w) in enumerate(CASES)}
    assert "/etc/pwfix/bad: mode 0666" in evidence["mode glob catches the bad one"]["observed"]
    assert evidence["include dir overrides strict"]["where"] == "/etc/pwfix/app.conf.d/10-local.conf:1"
    assert "tcp 0.0.0.0:8080 python3" in evidence["ports unexpected"]["observed"]
    assert "pwtoor has uid 0" in evidence["uid 0 only root"]["observed"]
    assert "pwempty has an empty password" in evidence["empty passwords"]["observed"]
    assert "pwsvc" in evidence["system shells"]["observed"]
    assert evidence["command hangs"]["error"].startswith("sleep 30 did not finish within")
    assert evidence["other release"]["reason"] == "applies to version 11, 13, not 12"
    assert evidence["other device type"]["reason"] == "applies to device type router, not server"
    summary = result["summary"]
    assert summary["total"] == len(CASES)  # type: ignore[index]


def test_assessment_is_read_only_and_the_same_in_check_mode(host) -> None:  # type: ignore[no-untyped-def]
    before = podman_exec(host.container, "sh", "-c", "find /etc -newer /etc/hostname -type f | sort; stat -c %Y /etc")
    rules = [dict(case, id=f"c{index:02d}") for index, (_n, case, _w) in enumerate(CASES) if case["type"] != "command"]
    normal = run_module(host.name, "patchwave.endpoint.assess_baseline", {"rules": rules, "snapshot": False})
    checked = run_module(host.name, "patchwave.endpoint.assess_baseline", {"rules": rules, "snapshot": False},
                         check=True)
    assert [r["status"] for r in normal["results"]] == [r["status"] for r in checked["results"]]  # type: ignore[attr-defined]
    assert podman_exec(host.container, "sh", "-c", "find /etc -newer /etc/hostname -type f | sort; stat -c %Y /etc") == before


def test_exceptions_are_applied_on_the_host(host) -> None:  # type: ignore[no-untyped-def]
    rules = [{"id": "valid", "type": "file", "args": {"path": "/etc/pwfix/missing"},
              "exception": {"id": "EXC-7", "expires": "2099-12-31"}},
             {"id": "expired", "type": "file", "args": {"path": "/etc/pwfix/missing"},
              "exception": {"id": "EXC-8", "expires": "2001-01-01"}}]
    got = {r["id"]: r for r in run_module(host.name, "patchwave.endpoint.assess_baseline",
                                           {"rules": rules})["results"]}  # type: ignore[attr-defined]
    assert (got["valid"]["status"], got["valid"]["exception"]) == ("excepted", "EXC-7")
    assert got["expired"]["status"] == "fail"
    assert got["expired"]["evidence"]["note"] == "exception EXC-8 expired on 2001-01-01"


@pytest.mark.parametrize("name", ["db1", "web1", "web2"])
def test_the_shipped_baseline_runs_without_errors_on_each_release(lab, name: str) -> None:  # type: ignore[no-untyped-def]
    target = next(h for h in lab.hosts() if h.name == name)
    compiled = Baseline(DEFAULT_PROFILE).compile(Host(target.name, tuple(target.groups), target.device_type))
    result = run_module(target.name, "patchwave.endpoint.assess_baseline", {"rules": compiled.module_rules()})
    errors = [r for r in result["results"] if r["status"] == "error"]  # type: ignore[attr-defined]
    assert not errors, errors
    assert result["summary"]["total"] == len(compiled.rules) >= 80  # type: ignore[index]
    assert result["summary"]["facts"]["distribution"] == "debian"  # type: ignore[index]
