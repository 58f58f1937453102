"""Per-release records in the store: each scan's and decision's ecosystem, catch-ups that carry
approvals only to hosts of the release they were made for, and the changelogs of staged
packages (urgency, CVEs) kept per cycle, host and package, shown by `cycle status` and the
workbooks next to (never mixed with) the advisories' CVEs. Stores are built through the Store
API only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import end_cycle
from openpyxl import load_workbook

from patchwave.fleet import scheduler
from patchwave.fleet.schedule import Schedule
from patchwave.models import Changelog, Host, PendingUpdate
from patchwave.patching import changelogs, manifest
from patchwave.patching.policy import Approval
from patchwave.patching.scan import updates_from_scan
from patchwave.patching.status import status_report
from patchwave.paths import Paths
from patchwave.reporting.datasets import DATASETS, Context
from patchwave.reporting.definitions import load_workbook_definition
from patchwave.reporting.engine import Writer
from patchwave.reporting.workbook import write_cycle_workbook
from patchwave.store import Store
from patchwave.store.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, tzinfo=UTC)

# a stage result as stage_updates returns it, with the `changelog` of each staged package
STAGED = {"changed": True, "staged": [
    {"name": "libssl3", "version": "3.0.17-1~deb12u3", "file": "/var/cache/apt/archives/libssl3_3.0.17-1~deb12u3_amd64.deb",
     "downloaded": True, "changelog": {"urgency": "high", "cves": ["CVE-2025-9232", "CVE-2025-9230", "CVE-2025-9230"],
                                       "versions": ["3.0.17-1~deb12u3", "3.0.17-1~deb12u2"]}},
    {"name": "tzdata", "version": "2025b-0+deb12u2", "file": "/var/cache/apt/archives/tzdata_2025b-0+deb12u2_all.deb",
     "downloaded": True, "changelog": {"urgency": "medium", "cves": [], "versions": ["2025b-0+deb12u2"]}},
    {"name": "pw-blob", "version": "1.0-2", "file": "/var/cache/apt/archives/pw-blob_1.0-2_all.deb",
     "downloaded": True, "changelog": None},  # the package has no changelog
]}


def scan(ecosystem: str, *updates: tuple[str, str, str, str]) -> dict[str, Any]:
    """A pending_updates result: `os` from the host's os-release, then (name, installed, candidate, source)."""
    return {"os": {"id": "debian", "version_id": ecosystem.partition(":")[2], "version_codename": "",
                   "name": "Debian GNU/Linux", "ecosystem": ecosystem},
            "updates": [{"name": n, "installed": i, "candidate": c, "source": s, "security": True,
                         "origins": [{"label": "Debian-Security", "suite": "bookworm-security"}]}
                        for n, i, c, s in updates]}


def test_the_scan_gives_each_update_its_hosts_ecosystem() -> None:
    (up,) = updates_from_scan("web1", scan("Debian:12", ("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "openssl")))
    assert (up.ecosystem, up.source) == ("Debian:12", "openssl")
    old = scan("", ("libssl3", "1", "2", "openssl"))
    del old["os"]  # a scan from before scans said their release
    assert updates_from_scan("web1", old)[0].ecosystem == ""
    # what a host claims is text of a sane size, or nothing
    assert updates_from_scan("web1", {**old, "os": {"ecosystem": ["Debian:12"]}})[0].ecosystem == ""
    assert updates_from_scan("web1", {**old, "os": {"ecosystem": "Debian:12\n" * 20}})[0].ecosystem == ""


def _cycle(store: Store, cycle_id: str, hosts: dict[str, dict[str, Any]], approval: Approval | None = None,
           carry: tuple[str, list[tuple[str, str, str]]] | None = None) -> None:
    """A cycle through the Store API: scans, the manifest built from them, end states."""
    store.create_cycle(cycle_id, "inv.yml", {"name": "p"}, {"hosts": sorted(hosts)})
    updates: list[PendingUpdate] = []
    for host, result in hosts.items():
        found = updates_from_scan(host, result) if result else []
        store.add_scan(cycle_id, host, "scan", bool(result), result or {"msg": "unreachable", "unreachable": True},
                       found)
        updates += found
    store.save_manifest(manifest.build(cycle_id, updates, [], approval or Approval(other=True), NOW, carry=carry))


def test_decisions_and_pending_updates_keep_the_release(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    _cycle(store, "c1", {"web1": scan("Debian:12", ("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "openssl"))})
    (decision,) = store.decisions("c1")
    assert (decision.ecosystem, decision.approved) == ("Debian:12", True)
    (row,) = store.rows("pending_updates")
    assert (row["name"], row["source"], row["ecosystem"]) == ("libssl3", "openssl", "Debian:12")


def test_a_catch_up_carries_approvals_only_to_hosts_of_the_same_release(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """ws1 (Debian 12) was patched with openssl 3.0.17-1~deb12u3 and a tzdata both releases share
    the version of; ws2 (Debian 11) missed the cycle. Its catch-up gets nothing of it."""
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    _cycle(store, "missed", {
        "ws1": scan("Debian:12", ("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "openssl"),
                    ("tzdata", "2025a-0+deb12u1", "2025b-0+deb11u1", "tzdata")),
        "ws2": {}})
    store.add_end_state("missed", "ws1", "patched", [], "")
    store.add_end_state("missed", "ws2", "unreachable", [], "host could not be reached")
    end_cycle(store, "missed", "failed")

    started: list[tuple[str, list[tuple[str, str, str]]]] = []

    def run(self: Any, policy: Any, advisories: Any = None, policy_dir: Any = None, **kwargs: Any) -> str:
        """What Cycle.run does with a catch-up, without hosts: ws2 answers its scan as Debian 11."""
        started.append(kwargs["carry_over"])
        _cycle(store, "catch", {"ws2": scan("Debian:11", ("libssl1.1", "1.1.1w-0+deb11u3", "1.1.1w-0+deb11u4", "openssl"),
                                            ("tzdata", "2025a-0+deb11u1", "2025b-0+deb11u1", "tzdata"))},
               carry=kwargs["carry_over"])
        store.add_end_state("catch", "ws2", "excluded", [], "no approved updates")
        return "catch"

    monkeypatch.setattr("patchwave.patching.cycle.Cycle.run", run)
    monkeypatch.setattr("patchwave.patching.scan.scan_only", lambda *a, **k: [{"host": "ws2", "unreachable": False,
                                                                       "message": ""}])
    schedule = Schedule.model_validate({"jobs": [{"name": "catch-up", "kind": "catch-up", "every": "1h"}],
                                        "retry": {"window_minutes": 0}})
    out = scheduler.catch_up(Paths(tmp_path), store, tmp_path / "inv.yml", schedule,
                             [Host("ws2", ("workstations",))], lambda _m: None)
    # the missed cycle's approvals go to the catch-up with the release each was made for
    assert started == [("missed", [("Debian:12", "libssl3", "3.0.17-1~deb12u3"),
                                   ("Debian:12", "tzdata", "2025b-0+deb11u1")])]
    (entry,) = out["catch_up"]
    assert (entry["approvals"], entry["carried"], entry["state"]) == (2, 0, "excluded")
    decisions = {d.name: d for d in store.decisions("catch")}
    assert not any(d.approved for d in decisions.values())
    # the same version string on both releases is still not carried
    assert decisions["tzdata"].reason == ("excluded: cycle missed approved tzdata 2025b-0+deb11u1 for Debian:12 only; "
                                          "no approval for Debian:11")
    assert decisions["libssl1.1"].reason == "excluded: cycle missed did not approve it"  # another binary name


def test_carried_over_by_release_and_name() -> None:
    approved = [("Debian:12", "openssl", "3.0.17-1~deb12u3"), ("Debian:11", "openssl", "1.1.1w-0+deb11u4"),
                ("Debian:11", "curl", "7.74.0-1.3+deb11u15")]

    def up(name: str, candidate: str, ecosystem: str) -> PendingUpdate:
        return PendingUpdate("h", name, "0", candidate, name, False, False, False, ecosystem=ecosystem)

    built = manifest.build("k", [up("openssl", "3.0.17-1~deb12u3", "Debian:12"), up("curl", "7.88.1-10+deb12u14",
                                                                                  "Debian:12")],
                           [], carry=("c9", approved), now=NOW)
    by_name = {d.name: d for d in built.decisions}
    assert by_name["openssl"].approved and by_name["openssl"].ecosystem == "Debian:12"
    assert by_name["curl"].reason == ("excluded: cycle c9 approved curl 7.74.0-1.3+deb11u15 for Debian:11 only; "
                                      "no approval for Debian:12")
    bullseye = manifest.build("k", [up("openssl", "1.1.1w-0+deb11u5", "Debian:11")], [], carry=("c9", approved),
                              now=NOW).decisions[0]
    assert bullseye.reason == ("excluded: cycle c9 approved openssl 1.1.1w-0+deb11u4, not 1.1.1w-0+deb11u5 "
                               "(a regular cycle decides)")
    unknown = manifest.build("k", [up("openssl", "3.0.17-1~deb12u3", "")], [], carry=("c9", approved),
                             now=NOW).decisions[0]
    assert not unknown.approved and unknown.reason.endswith("no approval for an unknown release")
    # pairs, as catch-ups recorded them before approvals were per release, are for an unknown release
    legacy = manifest.build("k", [up("openssl", "3.0.17-1~deb12u3", "")], [],
                            carry=("c9", [["openssl", "3.0.17-1~deb12u3"]]), now=NOW).decisions[0]
    assert legacy.approved


def test_changelogs_from_the_stage_result_keep_only_what_is_expected() -> None:
    found = changelogs.from_stage_result("web1", STAGED)
    assert found == [
        Changelog("web1", "libssl3", "3.0.17-1~deb12u3", "high", ("CVE-2025-9230", "CVE-2025-9232"),
                  ("3.0.17-1~deb12u3", "3.0.17-1~deb12u2")),
        Changelog("web1", "tzdata", "2025b-0+deb12u2", "medium", (), ("2025b-0+deb12u2",))]
    hostile = {"staged": [
        {"name": "a", "version": "1", "changelog": {"urgency": "=cmd|' /C calc'!A0", "cves": ["CVE-1", "=1+1", 7,
                                                                                         "CVE-2025-1234"],
                                                    "versions": ["1", "$(reboot)", None]}},
        {"name": "$(x)", "version": "1", "changelog": {"urgency": "high"}},
        {"name": "b", "version": "1", "changelog": "high"},
        "not a dict"]}
    assert changelogs.from_stage_result("web1", hostile) == [Changelog("web1", "a", "1", None, ("CVE-2025-1234",),
                                                                       ("1",))]
    assert changelogs.from_stage_result("web1", {"staged": "x"}) == []
    assert changelogs.from_stage_result("web1", {}) == []  # a stage module from before: nothing recorded


def _staged_cycle(tmp_path: Path) -> Store:
    """web1 patched libssl3 (an advisory's CVEs) and tzdata (no advisory: its changelog's CVEs only)."""
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    _cycle(store, "c1", {"web1": scan("Debian:12", ("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "openssl"),
                                      ("tzdata", "2025a-0+deb12u1", "2025b-0+deb12u2", "tzdata"),
                                      ("pw-blob", "1.0-1", "1.0-2", "pw-blob"))})
    # staged twice (a resumed cycle): the later result wins
    store.add_changelogs("c1", [Changelog("web1", "libssl3", "3.0.17-1~deb12u3", "low", ("CVE-2025-1",))])
    store.add_changelogs("c1", changelogs.from_stage_result("web1", STAGED))
    store.add_end_state("c1", "web1", "patched", [
        {"name": "libssl3", "before": "3.0.16-1~deb12u1", "wanted": "3.0.17-1~deb12u3", "after": "3.0.17-1~deb12u3",
         "severity": "high", "advisories": ["DSA-9901-1"], "cves": ["CVE-2025-90011"], "reason": "approved",
         "sla_due": ""},
        {"name": "tzdata", "before": "2025a-0+deb12u1", "wanted": "2025b-0+deb12u2", "after": "2025b-0+deb12u2",
         "severity": "", "advisories": [], "cves": [], "reason": "approved", "sla_due": ""},
        {"name": "pw-blob", "before": "1.0-1", "wanted": "1.0-2", "after": "1.0-2", "severity": "",
         "advisories": [], "cves": [], "reason": "approved", "sla_due": ""}], "all 3 package(s) at the approved version")
    end_cycle(store, "c1", "completed")
    return store


def test_changelogs_are_stored_per_cycle_host_and_package(tmp_path: Path) -> None:
    store = _staged_cycle(tmp_path)
    logs = store.changelogs("c1")
    assert logs[("web1", "libssl3")].cves == ("CVE-2025-9230", "CVE-2025-9232")  # the latest staging
    assert logs[("web1", "tzdata")].urgency == "medium"
    assert ("web1", "pw-blob") not in logs
    packages = {p["name"]: p for p in status_report(store, "c1")["hosts"][0]["packages"]}
    assert (packages["libssl3"]["cves"], packages["libssl3"]["changelog_cves"]) == (
        ["CVE-2025-90011"], ["CVE-2025-9230", "CVE-2025-9232"])
    assert (packages["tzdata"]["changelog_urgency"], packages["pw-blob"]["changelog_urgency"]) == ("medium", None)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version FROM schema_info").scalar() == SCHEMA_VERSION >= 10


def test_cycle_status_shows_the_changelog_labelled(tmp_path: Path) -> None:
    from patchwave.cli.cycle import _package_line

    packages = {p["name"]: p for p in status_report(_staged_cycle(tmp_path), "c1")["hosts"][0]["packages"]}
    assert _package_line(packages["libssl3"]) == ("libssl3 3.0.16-1~deb12u1 → 3.0.17-1~deb12u3; advisories: "
                                                  "CVE-2025-90011; changelog: urgency high, CVE-2025-9230, CVE-2025-9232")
    assert _package_line(packages["pw-blob"]) == "pw-blob 1.0-1 → 1.0-2"


def test_the_workbooks_show_changelog_cves_apart_from_the_advisories(tmp_path: Path) -> None:
    store = _staged_cycle(tmp_path)
    rows = {r["package"]: r for r in DATASETS["patch_packages"].rows(Context(store, [Host("web1")]))}
    assert (rows["libssl3"]["cves"], rows["libssl3"]["changelog_cves"], rows["libssl3"]["changelog_urgency"]) == (
        "CVE-2025-90011", "CVE-2025-9230, CVE-2025-9232", "high")
    assert (rows["tzdata"]["cves"], rows["tzdata"]["changelog_urgency"]) == ("", "medium")
    assert (rows["pw-blob"]["changelog_cves"], rows["pw-blob"]["changelog_urgency"]) == ("", None)

    book = Writer().write(load_workbook_definition(ROOT / "reports/standard/patch.yml"), Context(store, [Host("web1")]),
                          tmp_path / "patch.xlsx", "test")["workbook"]
    sheet = list(load_workbook(book)["Patches"].iter_rows(values_only=True))
    header = sheet[0]
    patches = {r[header.index("Package")]: dict(zip(header, r, strict=True)) for r in sheet[1:]}
    assert patches["libssl3"]["CVEs (changelog)"] == "CVE-2025-9230, CVE-2025-9232"
    assert patches["libssl3"]["CVEs"] == "CVE-2025-90011"
    assert patches["tzdata"]["Urgency (changelog)"] == "medium" and patches["tzdata"]["CVEs"] in (None, "")

    cycle = write_cycle_workbook(status_report(store, "c1"), [Host("web1")], tmp_path / "cycle.xlsx")
    per_host = list(load_workbook(cycle)["web1"].iter_rows(values_only=True))
    header = next(r for r in per_host if r and r[0] == "Package")
    by_name = {r[0]: dict(zip(header, r, strict=True)) for r in per_host[per_host.index(header) + 1:]}
    assert (by_name["libssl3"]["CVEs"], by_name["libssl3"]["CVEs (changelog)"],
            by_name["libssl3"]["Urgency (changelog)"]) == ("CVE-2025-90011", "CVE-2025-9230, CVE-2025-9232", "high")
    assert (by_name["tzdata"]["CVEs"], by_name["tzdata"]["Urgency (changelog)"]) == (None, "medium")


def test_a_schema_9_store_gets_releases_and_changelogs(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    url = f"sqlite:///{tmp_path / 'v9.db'}"
    with create_engine(url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE schema_info (version INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO schema_info VALUES (9)")
        conn.exec_driver_sql(
            "CREATE TABLE decisions (id INTEGER PRIMARY KEY, cycle_id VARCHAR(64) NOT NULL, host VARCHAR(255) NOT NULL,"
            " name VARCHAR(255) NOT NULL, installed VARCHAR(255), version VARCHAR(255) NOT NULL,"
            " approved BOOLEAN NOT NULL, reason TEXT NOT NULL, advisories JSON NOT NULL, severity VARCHAR(16) NOT NULL,"
            " cves JSON, published VARCHAR(32), sla_due VARCHAR(32))")
        conn.exec_driver_sql("INSERT INTO decisions VALUES (1, 'old', 'h', 'p', '1', '2', 1, 'approved', '[]', '',"
                             " '[]', '', '')")
        conn.exec_driver_sql(
            "CREATE TABLE pending_updates (id INTEGER PRIMARY KEY, scan_id INTEGER NOT NULL, host VARCHAR(255) NOT NULL,"
            " name VARCHAR(255) NOT NULL, installed VARCHAR(255), candidate VARCHAR(255) NOT NULL,"
            " source VARCHAR(255) NOT NULL, security BOOLEAN NOT NULL, held BOOLEAN NOT NULL,"
            " new_install BOOLEAN NOT NULL)")
    store = Store(url)
    assert "ecosystem" in {c["name"] for c in inspect(store.engine).get_columns("decisions")}
    assert "ecosystem" in {c["name"] for c in inspect(store.engine).get_columns("pending_updates")}
    (old,) = store.decisions("old")
    assert old.ecosystem == "" and old.approved  # made before releases were recorded: unknown
    assert store.changelogs("old") == {}
