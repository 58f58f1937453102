"""Baselines, profiles and the exceptions register: the shipped content loads, layering and
parameters resolve per host, and malformed files are refused with file:line."""

from __future__ import annotations

import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from patchwave.baseline.assessment import confirm_exceptions, scores
from patchwave.baseline.drift import drift
from patchwave.baseline.exceptions import exception_in_force, expiry_text
from patchwave.baseline.profile import DEFAULT_PROFILE, SHIPPED, Baseline
from patchwave.baseline.rules import load_rule_file
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
    ("not a mapping", "- a\n", r":1: a baseline is a mapping \(key: value\), not a list"),
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
    # Python 3.11's date.fromisoformat takes these; an expiry is YYYY-MM-DD and nothing else
    ("basic format", EXCEPTION.replace('"2030-01-31"', '"20300131"'),
     r":9: exceptions\[0\].expires: '20300131' is not a date YYYY-MM-DD"),
    ("week date", EXCEPTION.replace('"2030-01-31"', '"2030-W05-4"'), r":9: exceptions\[0\].expires: .*not a date"),
    ("unquoted number", EXCEPTION.replace('"2030-01-31"', "20300131"), r":9: exceptions\[0\].expires: 20300131 is not"),
    ("date and time", EXCEPTION.replace('"2030-01-31"', "2030-01-31 12:00:00"),
     r":9: exceptions\[0\].expires: .*is a date and time"),
    ("no such day", EXCEPTION.replace('"2030-01-31"', '"2030-02-30"'), r":9: exceptions\[0\].expires: .*not a date"),
    ("one-digit month", EXCEPTION.replace('"2030-01-31"', '"2030-1-31"'), r":9: exceptions\[0\].expires: .*not a date"),
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


def test_an_unquoted_yaml_date_is_an_expiry_too(tmp_path: Path) -> None:
    rules = write(tmp_path, "tiny.yml", RULES)
    register = write(tmp_path, "exceptions.yml", EXCEPTION.replace('"2030-01-31"', "2030-01-31"))
    baseline = Baseline(rules, register)
    (item, _where), = baseline.exceptions
    assert (item.expires, item.expiry) == ("2030-01-31", date(2030, 1, 31))
    assert {r["id"]: r for r in baseline.compile(WEB1).module_rules()}["telnet"]["exception"] == {
        "id": "EXC-1", "expires": "2030-01-31"}


@pytest.mark.parametrize(("value", "ok"), [
    ("2027-03-31", True), (date(2027, 3, 31), True), ("20270331", False), ("2027-W13-3", False),
    ("2027-03-31T00:00", False), (datetime(2027, 3, 31, 0, 0), False), (20270331, False), (True, False),
    ("2027-3-31", False), ("2027-02-29", False), ("２０２７-03-31", False), ("2027-03-31\n", False),
])
def test_expiry_is_yyyy_mm_dd_only(value: object, ok: bool) -> None:
    if ok:
        assert expiry_text(value) == "2027-03-31"
    else:
        with pytest.raises(ValueError, match="date"):
            expiry_text(value)


def _register(tmp_path: Path, expires: date) -> Baseline:
    rules = write(tmp_path, "tiny.yml", RULES)
    register = write(tmp_path, "exceptions.yml", EXCEPTION.replace('"2030-01-31"', f'"{expires.isoformat()}"'))
    return Baseline(rules, register)


@pytest.mark.parametrize(("offset", "in_force"), [(-1, False), (0, True), (1, True)])
def test_an_exception_is_in_force_through_its_expiry_day(tmp_path: Path, offset: int, in_force: bool) -> None:
    today = date.today()
    baseline = _register(tmp_path, today + timedelta(days=offset))
    (item, _where), = baseline.exceptions
    assert exception_in_force(item, today) is in_force


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_the_controller_resurfaces_a_failure_whose_exception_expired(tmp_path: Path, offset: int) -> None:
    """A host whose clock is behind still says `excepted` for an exception that lapsed
    yesterday: the rule counts as failing again, and the exception is shown as expired."""
    from patchwave.baseline.assessment import record_result
    from patchwave.store import Store

    expires = date.today() + timedelta(days=offset)
    compiled = _register(tmp_path, expires).compile(WEB1)
    host_says = {"results": [{"id": "telnet", "status": "excepted", "exception": "EXC-1", "duration": 0.1,
                              "evidence": {"expected": "telnet not installed", "observed": "telnet 0.17"}},
                             {"id": "ports", "status": "pass", "duration": 0.1, "evidence": {}}],
                 "summary": {"facts": {}}, "snapshot": {}}
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    entry = record_result(store, "b1", "web1", "tiny", compiled, "assess", host_says)
    telnet = {r["id"]: r for r in entry["results"]}["telnet"]
    if offset < 0:
        assert telnet["status"] == "fail" and telnet["exception_expired"] == "EXC-1" and telnet["exception"] is None
        assert telnet["evidence"]["note"] == f"exception EXC-1 expired on {expires.isoformat()}"
        assert telnet["evidence"]["observed"] == "telnet 0.17"
        assert (entry["summary"]["fail"], entry["summary"]["excepted"]) == (1, 0)
        assert (entry["score"], entry["score_with_exceptions"]) == (50.0, 50.0)
    else:
        assert telnet["status"] == "excepted" and telnet["exception"] == "EXC-1"
        assert (entry["score"], entry["score_with_exceptions"]) == (50.0, 100.0)


def test_an_exception_the_register_does_not_grant_is_not_taken_from_the_host(tmp_path: Path) -> None:
    compiled = _register(tmp_path, date.today() + timedelta(days=30)).compile(WEB1)
    claimed = [{"id": "ports", "status": "excepted", "exception": "EXC-1", "evidence": {}},
               {"id": "telnet", "status": "excepted", "exception": "EXC-9", "evidence": {}}]
    ports, telnet = confirm_exceptions(claimed, compiled, date.today())
    assert ports["status"] == telnet["status"] == "fail"
    assert "does not grant" in ports["evidence"]["note"] and "exception" not in telnet
