"""Workbooks from a store filled with known rows: every number read back with openpyxl equals
what the test computes from the same rows on its own; SLA figures match a hand-computed fixture;
bad definitions are refused with file:line; big sheets split and long cells are cut."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert

from patchwave.errors import InputError
from patchwave.models import Host
from patchwave.paths import Paths
from patchwave.reporting.datasets import Context
from patchwave.reporting.definitions import load_workbook_definition
from patchwave.reporting.engine import CELL_LIMIT, Writer
from patchwave.reporting.reports import write_reports
from patchwave.store import (
    Store,
    assessments,
    cycles,
    decisions,
    end_states,
    host_results,
    rule_results,
    scans,
    waves,
)

ROOT = Path(__file__).resolve().parents[2]
HOSTS = [Host("web1", ("web",), "server", "team-web"), Host("web2", ("web",), "server", "team-web"),
         Host("ws1", ("workstations",), "workstation", "alice"), Host("db1", ("db",), "server", "team-data")]


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def fill(store: Store) -> None:
    """Two assessments of web1 (the later wins), one of web2 and ws1, none of db1; one cycle."""
    results = {
        ("web1", 1): [("r1", "fail"), ("r2", "pass")],
        ("web1", 2): [("r1", "pass"), ("r2", "pass"), ("r3", "excepted")],
        ("web2", 3): [("r1", "fail"), ("r2", "error"), ("r3", "pass")],
        ("ws1", 4): [("r1", "pass"), ("r2", "not_applicable")],
    }
    with store.engine.begin() as conn:
        for (host, aid), rows in results.items():
            counts = {s: sum(1 for _r, st in rows if st == s) for s in ("pass", "fail", "error", "not_applicable",
                                                                        "excepted")}
            applicable = counts["pass"] + counts["fail"] + counts["error"] + counts["excepted"]
            conn.execute(insert(assessments).values(
                id=aid, batch=f"b{aid}", host=host, baseline="t", kind="assess", at=at(aid), ok=True,
                unreachable=False, message="", summary=counts, score=100 * counts["pass"] / applicable,
                score_with_exceptions=100 * (counts["pass"] + counts["excepted"]) / applicable, snapshot={},
                drift=None))
            for rule, status in rows:
                conn.execute(insert(rule_results).values(
                    assessment_id=aid, host=host, rule_id=rule, title=f"rule {rule}", severity="high",
                    criticality="normal", status=status, duration=0.01,
                    exception_id="EXC-1" if status == "excepted" else None,
                    evidence={"expected": "x", "observed": "y" * (CELL_LIMIT + 10) if rule == "r2" and
                              status == "error" else "y", "where": "/etc/x:1"}))
        conn.execute(insert(cycles).values(id="c1", created_at=at(10), finished_at=at(10, 12), status="completed",
                                           inventory="inv", policy={"name": "p"}, options={}))
        conn.execute(insert(waves).values(cycle_id="c1", idx=0, name="canary", hosts=["web1"], status="passed",
                                          started_at=at(10), finished_at=at(10, 11), gate={"reason": "within budget"}))
        conn.execute(insert(waves).values(cycle_id="c1", idx=1, name="broad", hosts=["web2", "db1"], status="passed",
                                          started_at=at(11), finished_at=at(11, 11), gate={"reason": "within budget"}))
        # installs: web1 on Nov 10 (within both SLAs), web2 on Nov 11 (one SLA due Nov 10: breached), db1 failed
        for host, day, ok in (("web1", 10, True), ("web2", 11, True), ("db1", 11, False)):
            conn.execute(insert(host_results).values(cycle_id="c1", host=host, stage="deploy", wave=0, at=at(day),
                                                     ok=ok, unreachable=False, message="", data={}))

        def pkg(name: str, after: str | None, due: str) -> dict[str, Any]:
            return {"name": name, "before": "1", "wanted": "2", "after": after, "severity": "critical",
                    "advisories": ["PWSA-1"], "cves": ["CVE-1"], "reason": "approved", "sla_due": due}
        # publication dates for mean time to patch (all at 10:00 UTC, like the installs)
        for host, name, day in (("web1", "a", 5), ("web1", "b", 8), ("web2", "a", 5), ("web2", "b", 8),
                                ("db1", "a", 5)):
            conn.execute(insert(decisions).values(cycle_id="c1", host=host, name=name, installed="1", version="2",
                                                  approved=True, reason="approved", advisories=["PWSA-1"],
                                                  severity="critical", cves=["CVE-1"],
                                                  published=f"2026-11-{day:02d}T10:00:00Z", sla_due=""))
            conn.execute(insert(scans).values(cycle_id="c1", host=host, kind="scan", at=at(10), ok=True, result={
                "updates": [{"name": name, "source": f"{name}-src", "candidate": "2",
                             "origins": [{"label": "Debian-Security", "suite": "s"}]}]}))
        # a critical rule on web1: failing in assessment 1 (Nov 1), passing in assessment 2 (Nov 2)
        for aid, status in ((1, "fail"), (2, "pass")):
            conn.execute(insert(rule_results).values(assessment_id=aid, host="web1", rule_id="crit", title="critical",
                                                     severity="critical", criticality="critical", status=status,
                                                     duration=0.0, evidence={}))
        for host, state, packages in (
                ("web1", "patched", [pkg("a", "2", "2026-11-10"), pkg("b", "2", "2026-11-20")]),
                ("web2", "patched", [pkg("a", "2", "2026-11-10"), pkg("b", "2", "2026-11-20")]),
                ("db1", "failed", [pkg("a", "1", "2026-11-10")])):
            conn.execute(insert(end_states).values(cycle_id="c1", host=host, at=at(12), state=state,
                                                   packages=packages, detail=""))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    made = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    fill(made)
    return made


def sheet(book: Any, name: str) -> list[dict[str, Any]]:
    rows = list(book[name].iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_compliance_workbook_numbers_equal_the_store(store: Store, tmp_path: Path) -> None:
    definition = load_workbook_definition(ROOT / "reports/standard/compliance.yml")
    result = Writer().write(definition, Context(store, HOSTS), tmp_path / "c.xlsx", "test")
    book = load_workbook(result["workbook"])
    assert book.sheetnames == ["About", "Summary", "Hosts", "Rules", "Failing evidence", "Exceptions"]
    about = [r[0] for r in book["About"].iter_rows(values_only=True)]
    assert "Data from" in about and "Time range" in about and "Summary" in about
    hosts = {r["Host"]: r for r in sheet(book, "Hosts")}
    # computed here from the fixture: web1's later assessment has 2 pass + 1 excepted of 3 applicable
    assert (hosts["web1"]["Status"], hosts["web1"]["Score"], hosts["web1"]["Score with exceptions"]) == (
        "compliant with exceptions", round(2 / 3, 4), 1.0)
    assert (hosts["web2"]["Status"], hosts["web2"]["Fail"], hosts["web2"]["Error"]) == ("non-compliant", 1, 1)
    assert hosts["db1"]["Status"] == "never assessed" and hosts["db1"]["Score"] is None
    summary = {(r["Dimension"], r["Name"]): r for r in sheet(book, "Summary")}
    web = summary[("group", "web")]
    assert (web["Hosts"], web["Assessed"], web["Compliant hosts"], web["% compliant"],
            web["% compliant with exceptions"]) == (2, 2, 0, 0, 0.5)
    assert summary[("all hosts", "all")]["Never assessed"] == 1
    assert web["Average score"] == round((round(2 / 3, 4) + round(1 / 3, 4)) / 2, 4)
    rules = {r["Rule id"]: r for r in sheet(book, "Rules")}
    assert (rules["r1"]["Hosts assessed"], rules["r1"]["Failing"], rules["r1"]["Passing"]) == (3, 1, 2)
    evidence = sheet(book, "Failing evidence")
    assert sorted((r["Host"], r["Rule"], r["Status"]) for r in evidence) == [
        ("web1", "r3", "excepted"), ("web2", "r1", "fail"), ("web2", "r2", "error")]
    long = next(r for r in evidence if r["Rule"] == "r2")["Observed"]
    assert len(long) == CELL_LIMIT and long.endswith("cell limit]")
    assert result["truncated_cells"] == 1
    assert len(book["Summary"]._charts) == 1
    assert book["Hosts"].freeze_panes == "A2" and book["Hosts"].auto_filter.ref == "A1:N5"


def test_patch_workbook_sla_against_a_hand_computed_fixture(store: Store, tmp_path: Path) -> None:
    definition = load_workbook_definition(ROOT / "reports/standard/patch.yml")
    book = load_workbook(Writer().write(definition, Context(store, HOSTS), tmp_path / "p.xlsx", "t")["workbook"])
    patches = {(r["Host"], r["Package"]): r for r in sheet(book, "Patches")}
    # by hand: web1 installed Nov 10 (a due Nov 10: met; b due Nov 20: met); web2 installed Nov 11 (a: breached,
    # b: met); db1 failed (a: not installed, breached)
    assert {k: v["Within SLA"] for k, v in patches.items()} == {
        ("web1", "a"): True, ("web1", "b"): True, ("web2", "a"): False, ("web2", "b"): True, ("db1", "a"): False}
    assert patches[("web2", "a")]["Installed (UTC)"] == datetime(2026, 11, 11, 10, 0)
    assert patches[("web1", "a")]["SLA due"] == datetime(2026, 11, 10)
    breaches = sorted((r["Host"], r["Package"]) for r in sheet(book, "SLA breaches"))
    assert breaches == [("db1", "a"), ("web2", "a")]
    assert [(r["Host"], r["Package"]) for r in sheet(book, "Missing")] == [("db1", "a")]
    hosts = {r["Host"]: r for r in sheet(book, "Hosts")}
    assert (hosts["web2"]["Approved packages"], hosts["web2"]["Installed"], hosts["web2"]["Within SLA"]) == (2, 2, 1)


def test_cycle_workbook_and_group_and_since_filters(store: Store, tmp_path: Path) -> None:
    definition = load_workbook_definition(ROOT / "reports/standard/cycle.yml")
    book = load_workbook(Writer().write(definition, Context(store, HOSTS), tmp_path / "y.xlsx", "t")["workbook"])
    (cycle,) = sheet(book, "Cycles")
    assert (cycle["Hosts"], cycle["Patched"], cycle["Failed"]) == (3, 2, 1)
    assert [r["Wave"] for r in sheet(book, "Waves")] == ["canary", "broad"]
    compliance = load_workbook_definition(ROOT / "reports/standard/compliance.yml")
    only_web = load_workbook(Writer().write(compliance, Context(store, HOSTS, group="web"), tmp_path / "w.xlsx",
                                            "t")["workbook"])
    assert sorted(r["Host"] for r in sheet(only_web, "Hosts")) == ["web1", "web2"]
    later = load_workbook(Writer().write(compliance, Context(store, HOSTS, since=at(3)), tmp_path / "l.xlsx",
                                         "t")["workbook"])
    assessed = {r["Host"] for r in sheet(later, "Hosts") if r["Status"] != "never assessed"}
    assert assessed == {"web2", "ws1"}  # web1's assessments are older than the range


def test_big_sheets_split_before_the_row_limit(store: Store, tmp_path: Path) -> None:
    definition = load_workbook_definition(ROOT / "reports/standard/compliance.yml")
    book = load_workbook(Writer(max_rows=2).write(definition, Context(store, HOSTS), tmp_path / "s.xlsx",
                                                  "t")["workbook"])
    assert {"Hosts", "Hosts (2)"} <= set(book.sheetnames)
    assert len(sheet(book, "Hosts")) == 2 and len(sheet(book, "Hosts (2)")) == 2


def test_a_custom_definition_becomes_a_sheet(store: Store, tmp_path: Path) -> None:
    custom = ROOT / "reports/critical-failures.yml"
    paths = Paths(tmp_path)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    web: {hosts: {web1: {}, web2: {}}}\n")
    result = write_reports(paths, store, inventory, "all", [custom], tmp_path / "x.xlsx", None, None, None)
    (written,) = result["workbooks"]
    book = load_workbook(written["workbook"])
    assert book.sheetnames == ["About", "Failing rules"]
    assert {r["Host"] for r in sheet(book, "Failing rules")} == {"web2"}


BAD = [
    ("unknown dataset", "name: X\ntitle: t\nabout: a b c\ndataset: nope\ncolumns: [{field: host}]\n",
     r":1: report: .*unknown dataset 'nope'"),
    ("unknown field", "name: X\ntitle: t\nabout: a b c\ndataset: compliance_hosts\ncolumns:\n  - {field: hots}\n",
     r":6: columns\[0\].field: dataset compliance_hosts has no field 'hots'"),
    ("unknown key", "name: X\ntitle: t\nabout: a b c\ndataset: cycles\ncolumns: [{field: status}]\ncolour: red\n",
     r":6: colour: unknown key"),
    ("bad sheet name", "name: 'a/b'\ntitle: t\nabout: a b c\ndataset: cycles\ncolumns: [{field: status}]\n",
     r":1: name: String should match"),
    ("filter without value", "name: X\ntitle: t\nabout: a b c\ndataset: cycles\ncolumns: [{field: status}]\n"
     "filters:\n  - {field: status, op: in}\n", r":7: filters\[0\]: .*op in needs a list value"),
    ("chart on a missing column", "name: X\ntitle: t\nabout: a b c\ndataset: cycles\ncolumns: [{field: status}]\n"
     "chart: {type: bar, title: t, x: Status, y: [Hosts]}\n", r":6: chart.y\[0\]: 'Hosts' is not a column"),
    ("aggregates without group_by", "name: X\ntitle: t\nabout: a b c\ndataset: cycles\ncolumns: [{field: status}]\n"
     "aggregates: [{fn: count, header: n}]\n", r"aggregates need group_by"),
]


@pytest.mark.parametrize(("kind", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_definitions_are_refused_with_file_and_line(tmp_path: Path, kind: str, text: str, message: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(InputError, match=message) as caught:
        load_workbook_definition(path)
    assert str(caught.value).startswith(f"{path}:"), kind


def test_shipped_definitions_all_load() -> None:
    for path in sorted((ROOT / "reports").rglob("*.yml")):
        assert load_workbook_definition(path).sheets, path


def test_trend_owner_and_vendor_workbooks_against_hand_computed_figures(store: Store, tmp_path: Path) -> None:
    trend = load_workbook(Writer().write(load_workbook_definition(ROOT / "reports/standard/trend.yml"),
                                         Context(store, HOSTS), tmp_path / "t.xlsx", "t")["workbook"])
    (cycle,) = sheet(trend, "Patching")
    # by hand: installed after 5, 2, 6 and 3 days -> 4.0; db1's fix stayed unpatched from Nov 5 10:00 to the
    # cycle's end, Nov 10 12:00 -> 5.08 days; 4 of 5 installed; 2 SLA breaches (web2/a late, db1/a missing)
    assert (cycle["MTTP days"], cycle["MTTP critical"], cycle["MTTP high"]) == (4.0, 4.0, None)
    assert (cycle["Coverage"], cycle["Unpatched age days"], cycle["SLA breaches"]) == (0.8, 5.08, 2)
    assert len(trend["Patching"]._charts) == 1
    runs = sheet(trend, "Compliance")
    assert [r["Hosts"] for r in runs] == [1, 1, 1, 1]  # four assessment runs of one host each
    (fix,) = sheet(trend, "Critical fixes")
    assert (fix["Host"], fix["Rule"], fix["Days to fix"]) == ("web1", "crit", 1.0)
    owner = load_workbook(Writer().write(load_workbook_definition(ROOT / "reports/standard/owner.yml"),
                                         Context(store, HOSTS), tmp_path / "o.xlsx", "t")["workbook"])
    owners = {r["Owner"]: r for r in sheet(owner, "Owners")}
    assert (owners["team-web"]["Hosts"], owners["team-web"]["Approved patches"], owners["team-web"]["Installed"],
            owners["team-web"]["SLA breaches"]) == (2, 4, 4, 1)
    assert (owners["team-data"]["Missing"], owners["team-data"]["Assessed"]) == (1, 0)
    vendor = load_workbook(Writer().write(load_workbook_definition(ROOT / "reports/standard/vendor.yml"),
                                          Context(store, HOSTS), tmp_path / "v.xlsx", "t")["workbook"])
    (origin,) = sheet(vendor, "Vendors")
    assert (origin["Origin"], origin["Packages"], origin["Host updates pending"],
            origin["Host updates installed"]) == ("Debian-Security", 2, 5, 4)
