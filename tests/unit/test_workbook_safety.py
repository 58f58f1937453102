"""Workbooks never hold live formulas from data: text from hosts, agents and the store that a
spreadsheet would take for a formula (=, +, -, @, a tab or a carriage return first) or for an
error value is written as text, read back as the literal string, and no sheet of the file holds
an <f> element; numbers stay numbers; the store URL appears with its password masked, and the
password is nowhere in the file."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook as XlsxWorkbook
from openpyxl import load_workbook
from openpyxl.cell.cell import Cell
from reportdata import HOSTS, fill
from sqlalchemy import insert

from patchwave.models import Host
from patchwave.paths import Paths
from patchwave.reporting import reports
from patchwave.reporting.datasets import Context
from patchwave.reporting.definitions import STANDARD, load_workbook_definition
from patchwave.reporting.engine import Writer, xlsx_cell
from patchwave.reporting.workbook import write_assessment_workbook, write_cycle_workbook
from patchwave.store import Store
from patchwave.store.base import display_url
from patchwave.store.schema import rule_results

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ['=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "#N/A"]
STORE_URL = "postgresql://u:topsecret@h/db"


def cells(path: Path) -> Iterator[Cell]:
    book = load_workbook(path)
    for ws in book.worksheets:
        for row in ws.iter_rows():
            yield from row


def assert_no_formulas(path: Path) -> list[Any]:
    """No cell reads back as a formula, no sheet part holds an <f> element; every value read."""
    values = []
    for cell in cells(path):
        assert cell.data_type != "f", (cell.coordinate, cell.value)
        if isinstance(cell.value, str) and cell.value in HOSTILE:
            assert cell.data_type == "s" and cell.quotePrefix, (cell.coordinate, cell.value)
        values.append(cell.value)
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                assert not re.search(rb"<(\w+:)?f[\s>/]", archive.read(name)), name
    return values


def parts_containing(path: Path, secret: bytes) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return [name for name in archive.namelist() if secret in archive.read(name)]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """The reporting fixture, and hostile text wherever a host or the store supplies it: rule ids,
    titles and evidence of web2's latest assessment, a cycle's event messages, a ticket."""
    made = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    fill(made)
    with made.engine.begin() as conn:
        for text in HOSTILE:
            conn.execute(insert(rule_results).values(
                assessment_id=3, host="web2", rule_id=text, title=text, severity="high", criticality="normal",
                status="fail", duration=-2.5, evidence={"expected": text, "observed": text, "where": text,
                                                        "note": text}))
    for number, text in enumerate(HOSTILE):
        made.log("c1", "gate", text)
        made.save_ticket(f"jira:rule:web2:{number}", channel="jira", kind="rule", host="web2", subject="r1",
                         state="open", external_id=text, number=text, note=text)
    return made


def test_standard_workbooks_write_data_as_text_and_mask_the_store_password(store: Store, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # `patchwave report --store postgresql://u:topsecret@h/db`: the workbook is written from the
    # test's SQLite copy (no PostgreSQL here), everything else goes the ordinary way
    opened: list[str] = []
    real_write = reports._write

    def from_the_copy(url: str, *rest: Any) -> dict[str, Any]:
        opened.append(url)
        return real_write(store.url, *rest)

    monkeypatch.setattr(reports, "_write", from_the_copy)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    web: {hosts: {web1: {}, web2: {}}}\n    workstations: {hosts: {ws1: {}}}"
                         "\n    db: {hosts: {db1: {}}}\n")
    seen: set[Any] = set()
    for kind in STANDARD:
        (written,) = reports.write_reports(Paths(ROOT), Store(STORE_URL), inventory, kind, [], tmp_path / "out",
                                           None, None, None)["workbooks"]
        book = Path(written["workbook"])
        seen |= set(assert_no_formulas(book))
        assert parts_containing(book, b"topsecret") == [], kind
        about = {r[0]: r[1] for r in load_workbook(book)["About"].iter_rows(values_only=True) if r[0]}
        assert about["Source"].startswith(display_url(STORE_URL) + " (definition ")
        assert "***" in about["Source"]
    assert opened == [STORE_URL] * len(STANDARD)
    assert set(HOSTILE) <= seen  # each hostile text is in some workbook, as the literal string
    # numbers stay numbers (the counts come from the assessment's stored summary)
    compliance = load_workbook(next((tmp_path / "out").glob("compliance-*.xlsx")))
    rows = list(compliance["Hosts"].iter_rows(values_only=True))
    web2 = dict(zip(rows[0], next(r for r in rows if r[0] == "web2"), strict=True))
    assert web2["Fail"] == 1 and isinstance(web2["Score"], float)


def test_host_names_and_owners_from_the_inventory_are_text(store: Store, tmp_path: Path) -> None:
    hostile_hosts = [Host(text, ("web",), "server", text) for text in HOSTILE]
    definition = load_workbook_definition(ROOT / "reports/standard/compliance.yml")
    book = Writer().write(definition, Context(store, [*HOSTS, *hostile_hosts]), tmp_path / "c.xlsx",
                          f"{store.shown} (test)")["workbook"]
    values = assert_no_formulas(Path(book))
    assert set(HOSTILE) <= set(values)


def test_cycle_and_assessment_workbooks_write_data_as_text(tmp_path: Path) -> None:
    hosts = [Host(text, ("web",), "server", text) for text in HOSTILE]
    package = {"name": HOSTILE[1], "before": HOSTILE[2], "wanted": HOSTILE[3], "after": HOSTILE[4],
               "severity": HOSTILE[5], "advisories": [HOSTILE[0]], "cves": [], "sla_due": HOSTILE[6],
               "reason": HOSTILE[0], "changelog_cves": [HOSTILE[1]], "changelog_urgency": HOSTILE[2]}
    status = {"cycle_id": "c1", "status": "completed", "created_at": datetime(2026, 11, 10, tzinfo=UTC),
              "finished_at": None,
              "hosts": [{"host": h.name, "state": "failed", "packages": [package], "detail": h.name} for h in hosts],
              "waves": [{"index": 0, "name": HOSTILE[0], "status": "passed", "hosts": [HOSTILE[1]],
                         "gate": {"reason": HOSTILE[2]}}],
              "approvals": [{"wave": HOSTILE[3], "approved": True, "by": HOSTILE[4], "at": "2026-11-10",
                             "comment": HOSTILE[5]}]}
    cycle = write_cycle_workbook(status, hosts, tmp_path / "cycle.xlsx")
    values = assert_no_formulas(cycle)
    assert set(HOSTILE) <= set(values)

    report = {"hosts": [
        {"host": h.name, "ok": True, "score": -2.5, "score_with_exceptions": -1, "drift": {"critical": [h.name]},
         "summary": {"pass": 0, "fail": 1, "error": 0, "not_applicable": 0, "excepted": 0},
         "results": [{"id": text, "title": text, "severity": text, "status": "fail", "exception": text,
                      "evidence": {"expected": text, "observed": {"raw": text}, "where": text,
                                   "note": "\x1b[31mred\x1b[0m " + text}}]}
        for h, text in zip(hosts, HOSTILE, strict=True)]
        + [{"host": "down1", "ok": False, "message": HOSTILE[0]}]}
    assessment = write_assessment_workbook(report, hosts, tmp_path / "assessment.xlsx")
    values = assert_no_formulas(assessment)
    assert set(HOSTILE) <= set(values)
    rows = list(load_workbook(assessment)["Hosts"].iter_rows(values_only=True))
    assert {r[4] for r in rows[1:-1]} == {-2.5} and {r[5] for r in rows[1:-1]} == {-1}  # numbers, negative ones too
    notes = [r[-1] for r in load_workbook(assessment)["Failing rules"].iter_rows(values_only=True)]
    assert "␛[31mred␛[0m +1" in notes  # a host's escape sequence is shown, not stored (nor refused)


def test_only_strings_change() -> None:
    ws = XlsxWorkbook(write_only=True).create_sheet("x")
    stamp = datetime(2026, 1, 1)
    for value in (-2, -2.5, 0, True, None, stamp, "web1", "", "a - b", "2026-01-01"):
        assert xlsx_cell(ws, value) is value
    for text in HOSTILE:
        cell = xlsx_cell(ws, text)
        assert (cell.value, cell.data_type, cell.quotePrefix) == (text, "s", True)
    styled = xlsx_cell(ws, -3, number_format="#,##0")
    assert (styled.value, styled.data_type) == (-3, "n")
