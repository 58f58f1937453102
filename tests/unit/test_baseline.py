"""Baselines, profiles and the exceptions register: the shipped content loads, layering and
parameters resolve per host, and malformed files are refused with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from patchwave.assessment import drift, scores
from patchwave.baseline import DEFAULT_PROFILE, SHIPPED, Baseline, load_rule_file
from patchwave.errors import InputError
from patchwave.models import Host

WEB1 = Host("web1", ("web", "debian12"), "server", "team-web")
WS1 = Host("ws1", ("workstations",), "workstation", "alice")

RULES = """\
version: 1
name: tiny
parameters:
  allowed_ports: [22]
rules:
  - id: ports
    title: Only allowed ports listen
    severity: high
    criticality: critical
    rationale: Unplanned listeners are a risk.
    references: {nist: [CM-7]}
    check: {type: ports, allowed: $allowed_ports}
  - id: telnet
    title: telnet is absent
    severity: medium
    rationale: Cleartext protocols leak passwords.
    references: {cis: "2.3.4", ccs: package_telnet_removed, nist: [CM-7]}
    check: {type: package, name: telnet, state: absent}
    remediation: {type: package_absent, name: telnet}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_server_baseline_has_at_least_80_referenced_rules() -> None:
    rule_file, rules, _params = load_rule_file(SHIPPED / "debian-server.yml")
    assert rule_file.name == "debian-server"
    assert len(rules) >= 80
    loaded = Baseline(SHIPPED / "debian-server.yml").rules_by_id()
    assert all(r.references.nist and (r.references.cis or r.references.ccs) for r in loaded.values()
               if r.id not in {"ports-only-allowed", "dpkg-audit-clean"})
    kinds = {r.check.type for r in loaded.values()}
    assert kinds == {"file", "file_mode", "file_content", "config_value", "sshd", "sysctl", "kernel_module", "mount",
                     "package", "service", "ports", "accounts", "command"}


def test_default_profile_lightens_workstations() -> None:
    baseline = Baseline(DEFAULT_PROFILE)
    server, workstation = baseline.compile(WEB1), baseline.compile(WS1)
    assert "ws-unattended-upgrades" in {r.id for r in workstation.rules} - {r.id for r in server.rules}
    disabled = {d["id"]: d for d in workstation.disabled}
    assert disabled["pkg-cups-absent"]["layer"] == "device type workstation" and disabled["pkg-cups-absent"]["reason"]
    ports = {r["id"]: r for r in workstation.module_rules()}["ports-only-allowed"]
    assert ports["args"]["allowed"] == [22, 631]
    assert {r["id"]: r for r in server.module_rules()}["ports-only-allowed"]["args"]["allowed"] == [22]


def test_layers_apply_in_order_standard_device_group_host(tmp_path: Path) -> None:
    write(tmp_path, "tiny.yml", RULES)
    profile = write(tmp_path, "profile.yml", """\
        version: 1
        name: acme
        include: [tiny.yml]
        device_types:
          server: {parameters: {allowed_ports: [22, 25]}}
        groups:
          web: {parameters: {allowed_ports: [22, 80, 443]}}
        hosts:
          web1:
            parameters: {allowed_ports: [22, 443]}
            disable: {telnet: "legacy terminal server, CHG-12"}
        """)
    baseline = Baseline(profile)
    baseline.check_inventory([WEB1, WS1])
    web1 = baseline.compile(WEB1)
    assert web1.module_rules() == [{"id": "ports", "type": "ports", "applies": {"distributions": [], "versions": [],
                                                                                "device_types": []},
                                    "args": {"allowed": [22, 443], "protocols": ["tcp"], "include_loopback": False}}]
    assert web1.disabled == [{"id": "telnet", "layer": "host web1", "reason": "legacy terminal server, CHG-12"}]
    web2 = baseline.compile(Host("web2", ("web",), "server"))
    assert {r["id"]: r for r in web2.module_rules()}["ports"]["args"]["allowed"] == [22, 80, 443]
    db1 = baseline.compile(Host("db1", ("db",), "server"))
    assert {r["id"]: r for r in db1.module_rules()}["ports"]["args"]["allowed"] == [22, 25]


def test_exceptions_attach_to_their_hosts_and_groups(tmp_path: Path) -> None:
    rules = write(tmp_path, "tiny.yml", RULES)
    register = write(tmp_path, "exceptions.yml", """\
        version: 1
        exceptions:
          - id: EXC-1
            rule: telnet
            scope: {groups: [web]}
            owner: alice@example.com
            justification: the old switch console needs telnet
            compensating_control: reachable only from the jump host
            expires: "2030-01-31"
          - id: EXC-2
            rule: ports
            scope: {hosts: [ws*]}
            owner: bob@example.com
            justification: a developer's test server
            compensating_control: host firewall
            expires: "2020-01-01"
        """)
    baseline = Baseline(rules, register)
    web1 = {r["id"]: r for r in baseline.compile(WEB1).module_rules()}
    assert web1["telnet"]["exception"] == {"id": "EXC-1", "expires": "2030-01-31"}
    assert "exception" not in web1["ports"]
    ws1 = {r["id"]: r for r in baseline.compile(WS1).module_rules()}
    assert ws1["ports"]["exception"] == {"id": "EXC-2", "expires": "2020-01-01"}  # expired: the host decides


def test_scores_with_and_without_exceptions() -> None:
    assert scores({"pass": 6, "fail": 2, "excepted": 2, "not_applicable": 5, "error": 0}) == (60.0, 80.0)
    assert scores({"not_applicable": 3}) == (None, None)


def test_drift_flags_new_ports_uid0_and_critical_rules() -> None:
    rules = Baseline(SHIPPED / "debian-server.yml").rules_by_id()
    previous = {"id": 7, "at": "2026-11-28", "results": [{"rule_id": "ports-only-allowed", "status": "pass"},
                                                          {"rule_id": "pkg-telnet-absent", "status": "fail"}],
                "snapshot": {"ports": ["tcp/22"], "packages": {"bash": "5"}, "services": ["ssh.service"],
                             "uid0": ["root"]}}
    results = [{"id": "ports-only-allowed", "status": "fail"}, {"id": "pkg-telnet-absent", "status": "pass"}]
    snapshot = {"ports": ["tcp/22", "tcp/8080"], "listening": ["tcp 0.0.0.0:8080 python3 (pid 9)"],
                "packages": {"bash": "5", "nginx": "1"}, "services": ["ssh.service", "nginx.service"],
                "uid0": ["root", "toor"]}
    found = drift(previous, results, snapshot, rules)
    assert found is not None
    assert (found["newly_failing"], found["newly_fixed"], found["new_ports"], found["new_packages"],
            found["new_services"], found["new_uid0"]) == (["ports-only-allowed"], ["pkg-telnet-absent"], ["tcp/8080"],
                                                          ["nginx"], ["nginx.service"], ["toor"])
    assert found["critical"] == ["rule ports-only-allowed newly fails (Only the allowed ports listen on the network)",
                                 "new listening socket: tcp 0.0.0.0:8080 python3 (pid 9)", "new uid-0 account: toor"]
    assert drift(None, results, snapshot, rules) is None


BAD_RULES = [
    ("bad yaml", "rules: [\n  {id: a\n", r":3: invalid YAML"),
    ("not a mapping", "- a\n", r":1: a baseline \(profile or rule file\) is a mapping"),
    ("unknown top key", "name: x\nrulez: []\n", r":2: rulez: unknown key"),
    ("missing name", "rules: []\n", r":1: name: Field required"),
    ("unknown check type", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: telepathy}\n", r":8: rule r1: check: unknown check type"),
    ("unknown check key", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: file, path: /etc/x, mode: '0644'}\n",
     r":8: rule r1: check.mode: unknown key"),
    ("wrong type", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: ports, allowed: [ssh]}\n", r"rule r1: check.allowed\[0\]"),
    ("no references", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {}\n    check: {type: file, path: /etc/x}\n", r":7: rule r1: references: .*at least one reference"),
    ("bad severity", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: urgent\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: file, path: /etc/x}\n", r":5: rule r1: severity"),
    ("relative path", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: file, path: etc/x}\n", r"'etc/x' is not an absolute path"),
    ("bad regex", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: file_content, path: /etc/x, regex: '(['}\n",
     r"invalid regular expression"),
    ("shell in argv", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: command, argv: ['id; rm -rf /']}\n",
     r"argv\[0\] 'id; rm -rf /' must be a program name"),
    ("shell in package", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: package, name: 'telnet && reboot'}\n", r"is not a package name"),
    ("duplicate id", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: file, path: /etc/x}\n  - id: r1\n    title: t t t\n"
     "    severity: low\n    rationale: r r r\n    references: {nist: [CM-7]}\n    check: {type: file, path: /etc/y}\n",
     r":9: rule id r1 is already used at .*:3"),
    ("unknown parameter", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: ports, allowed: $nope}\n", r":3: rule r1: unknown parameter \$nope"),
    ("remediation without key", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [CM-7]}\n    check: {type: file, path: /etc/x}\n    remediation: {type: sysctl, value: 1}\n",
     r":9: rule r1: remediation: .*remediation sysctl needs key"),
    ("bad nist control", "name: x\nrules:\n  - id: r1\n    title: t t t\n    severity: low\n    rationale: r r r\n"
     "    references: {nist: [cm7]}\n    check: {type: file, path: /etc/x}\n", r"references.nist\[0\]"),
]


@pytest.mark.parametrize(("kind", "text", "message"), BAD_RULES, ids=[b[0] for b in BAD_RULES])
def test_malformed_rule_file_is_refused_with_file_and_line(tmp_path: Path, kind: str, text: str, message: str) -> None:
    path = write(tmp_path, "rules.yml", text)
    with pytest.raises(InputError, match=message) as caught:
        Baseline(path)
    assert str(caught.value).startswith(f"{path}:"), kind


def _profile(tmp_path: Path, text: str) -> Path:
    write(tmp_path, "tiny.yml", RULES)
    return write(tmp_path, "profile.yml", text)


BAD_PROFILES = [
    ("missing include", "name: p\ninclude: [nothere.yml]\n", r":2: include nothere.yml: no such file"),
    ("disable unknown rule", "name: p\ninclude: [tiny.yml]\ndisable: {nosuch: because}\n",
     r":3: disable: no rule 'nosuch'"),
    ("disable without reason", "name: p\ninclude: [tiny.yml]\ndisable: {telnet: ''}\n", r":3: disable.telnet: String"),
    ("unknown group layer", "name: p\ninclude: [tiny.yml]\ngroups:\n  webz: {parameters: {allowed_ports: [80]}}\n",
     r":4: groups.webz: unknown group 'webz'"),
    ("parameter of the wrong type", "name: p\ninclude: [tiny.yml]\nhosts:\n  web1:\n    parameters: {allowed_ports: http}\n",
     r"rule ports: check.allowed: .*value of \$allowed_ports, set at .*profile.yml:5"),
]


@pytest.mark.parametrize(("kind", "text", "message"), BAD_PROFILES, ids=[b[0] for b in BAD_PROFILES])
def test_malformed_profile_is_refused_with_file_and_line(tmp_path: Path, kind: str, text: str, message: str) -> None:
    path = _profile(tmp_path, text)
    with pytest.raises(InputError, match=message):
        baseline = Baseline(path)
        baseline.check_inventory([WEB1, WS1])
        baseline.compile(WEB1)


EXCEPTION = """\
version: 1
exceptions:
  - id: EXC-1
    rule: telnet
    scope: {hosts: [web1]}
    owner: alice
    justification: needed for the console
    compensating_control: jump host only
    expires: "2030-01-31"
"""

BAD_EXCEPTIONS = [
    ("unknown rule", EXCEPTION.replace("rule: telnet", "rule: nosuch"), r":4: exceptions\[0\].rule: no rule 'nosuch'"),
    ("bad date", EXCEPTION.replace('"2030-01-31"', '"31/01/2030"'), r":9: exceptions\[0\].expires: .*not a date"),
    ("no owner", EXCEPTION.replace("    owner: alice\n", ""), r":3: exceptions\[0\].owner: Field required"),
    ("empty scope", EXCEPTION.replace("{hosts: [web1]}", "{}"), r":5: exceptions\[0\].scope: .*names hosts and/or groups"),
    ("unknown host", EXCEPTION.replace("[web1]", "[nosuchhost]"), r"scope host 'nosuchhost' matches no inventory host"),
    ("duplicate id", EXCEPTION + EXCEPTION.split("exceptions:\n")[1], r"exception ids must be unique: EXC-1"),
]


@pytest.mark.parametrize(("kind", "text", "message"), BAD_EXCEPTIONS, ids=[b[0] for b in BAD_EXCEPTIONS])
def test_malformed_exceptions_are_refused_with_file_and_line(tmp_path: Path, kind: str, text: str, message: str) -> None:
    rules = write(tmp_path, "tiny.yml", RULES)
    register = write(tmp_path, "exceptions.yml", text)
    with pytest.raises(InputError, match=message) as caught:
        Baseline(rules, register).check_inventory([WEB1, WS1])
    assert str(caught.value).startswith(f"{register}:"), kind
