"""Workbooks from a store filled with known rows: every number read back with openpyxl equals
what the test computes from the same rows on its own; SLA figures match a hand-computed fixture;
bad definitions are refused with file:line; big sheets split and long cells are cut."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from reportdata import HOSTS, at, fill

from patchwave.errors import InputError
from patchwave.paths import Paths
from patchwave.reporting.datasets import DATASETS, Context
from patchwave.reporting.definitions import STANDARD, Sheet, load_workbook_definition
from patchwave.reporting.engine import CELL_LIMIT, Writer, _narrowing
from patchwave.reporting.reports import write_reports
from patchwave.store import Store
from patchwave.store.history import rebuild_rule_failures

ROOT = Path(__file__).resolve().parents[2]


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
    store.save_ticket("jira:rule:web2:r1", channel="jira", kind="rule", host="web2", subject="r1", state="open",
                      external_id="OPS-3", number="OPS-3", reopened=1)
    result = Writer().write(definition, Context(store, HOSTS), tmp_path / "c.xlsx", "test")
    book = load_workbook(result["workbook"])
    assert book.sheetnames == ["About", "Summary", "Hosts", "Rules", "Failing evidence", "Exceptions", "Tickets",
                               "Asset changes"]
    (ticket,) = sheet(book, "Tickets")
    assert (ticket["Ticket"], ticket["Host"], ticket["Times re-opened"], ticket["State"]) == ("OPS-3", "web2", 1, "open")
    assert ticket["Flag"] == "closed in the ticket system while still failing"
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
    assert book["Hosts"].freeze_panes == "A2" and book["Hosts"].auto_filter.ref == "A1:Q5"
    # freshness: every host was scanned in the cycle on Nov 10; db1 never assessed, never patched
    assert hosts["db1"]["Last scanned (UTC)"] == datetime(2026, 11, 10, 10, 0) and hosts["db1"]["Last patched (UTC)"] is None
    assert hosts["web1"]["Last patched (UTC)"] == datetime(2026, 11, 12, 10, 0)


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
    assert (fix["Rule id"], fix["Failures"], fix["Fixed"], fix["Mean days to fix"]) == ("crit", 1, 1, 1.0)
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


def test_rule_failures_and_fix_times_from_a_rule_history(tmp_path: Path) -> None:
    """One critical rule on one host through eight assessments: the store keeps when it started
    failing and when it passed again, and the fix times pair them (written out by hand below);
    the same failures come back when they are made again from the rule results alone."""
    made = Store(f"sqlite:///{tmp_path / 'h.db'}")
    statuses = ["pass", "fail", "error", "not_applicable", "fail", "pass", "pass", "error"]
    for aid, status in enumerate(statuses, start=1):
        made.add_assessment(f"b{aid}", "web1", "t", "assess", True, False, "", {}, (0.0, 0.0), {}, None,
                            [{"id": "crit", "title": "c", "severity": "critical", "status": status}], at=at(aid))
    # 1 pass (nothing to end), 2 fail (starts), 3 error (still failing), 4 n/a, 5 fail (still
    # failing), 6 pass (ends), 7 pass, 8 error (starts again)
    expected = [(2, 6), (8, None)]
    kept = [(f.failing_since.day, f.fixed_at.day if f.fixed_at else None) for f in made.rule_failures("critical")]
    assert kept == expected
    assert list(made.rule_failures("high")) == []
    assert [f.failing_since.day for f in made.rule_failures("critical", since=at(3))] == [8]
    with made.engine.begin() as conn:
        assert rebuild_rule_failures(conn) == 2
    assert [(f.failing_since.day, f.fixed_at.day if f.fixed_at else None)
            for f in made.rule_failures("critical")] == expected
    fixes = list(DATASETS["config_fix_times"].rows(Context(made, HOSTS)))
    assert [(f["failing_since"].day, f["fixed_at"].day if f["fixed_at"] else None, f["days_to_fix"])
            for f in fixes] == [(2, 6, 4.0), (8, None, None)]


def test_a_store_from_before_rule_failures_gets_them_from_its_history(tmp_path: Path) -> None:
    """Schema 10 kept no rule failures: opening such a store makes them from the rule results."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url)
    for aid, status in enumerate(["fail", "pass", "error"], start=1):
        old.add_assessment(f"b{aid}", "web1", "t", "assess", True, False, "", {}, (0.0, 0.0), {}, None,
                           [{"id": "crit", "title": "c", "severity": "critical", "status": status}], at=at(aid))
    with old.engine.begin() as conn:  # as a schema-10 store was: the table empty (create_all made it)
        conn.exec_driver_sql("DELETE FROM rule_failures")
        conn.exec_driver_sql("UPDATE schema_info SET version = 10")
    reopened = Store(url)
    assert [(f.failing_since.day, f.fixed_at.day if f.fixed_at else None)
            for f in reopened.rule_failures("critical")] == [(1, 2), (3, None)]


def test_latest_per_host_from_the_store(store: Store) -> None:
    latest = {r["host"]: r["id"] for r in store.rows("assessments", columns=("id", "host"), latest_per="host")}
    assert latest == {"web1": 2, "web2": 3, "ws1": 4}
    since = {r["host"] for r in store.rows("assessments", at(3), columns=("id", "host"), latest_per="host")}
    assert since == {"web2", "ws1"}


def test_sheets_that_all_filter_a_field_narrow_the_store_query() -> None:
    def sheet_with(filters: list[dict[str, Any]]) -> Any:
        return Sheet.model_validate({"name": "S", "title": "t", "about": "a b c", "dataset": "rule_results",
                                     "columns": [{"field": "host"}], "filters": filters})

    failing = sheet_with([{"field": "status", "op": "in", "value": ["fail", "error"]}])
    excepted = sheet_with([{"field": "status", "op": "eq", "value": "excepted"},
                           {"field": "severity", "op": "ne", "value": "low"}])
    everything = sheet_with([])
    rules = DATASETS["rule_results"]
    assert _narrowing(rules, [failing, excepted]) == {"status": ["fail", "error", "excepted"]}
    assert _narrowing(rules, [failing, everything]) == {}  # one sheet needs every status
    assert _narrowing(DATASETS["cycles"], [sheet_with([{"field": "status", "op": "eq", "value": "x"}])]) == {}


def test_progress_reaches_the_caller_from_every_worker_process(store: Store, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    web: {hosts: {web1: {}, web2: {}}}\n    data: {hosts: {db1: {}}}\n")
    heard: list[str] = []
    result = write_reports(Paths(ROOT), store, inventory, "all", [], tmp_path / "out", None, None, None,
                           progress=lambda text, _n: heard.append(text))
    names = [Path(b["workbook"]).name.split("-")[0] for b in result["workbooks"]]
    assert sorted(names) == sorted(STANDARD)
    for name in STANDARD:  # each workbook's own process reported reading, sheets and the file
        assert any(t.startswith(f"{name}: reading ") for t in heard), name
        assert any(t.startswith(f"{name}: written to ") for t in heard), name
    assert heard[0].startswith("reading the inventory")
    lines: list[str] = []
    Writer(lambda t, _n: lines.append(t), progress_every=2).write(
        load_workbook_definition(ROOT / "reports/standard/compliance.yml"), Context(store, HOSTS),
        tmp_path / "c.xlsx", "t")
    assert "compliance: rule_results: 2 rows so far" in lines
