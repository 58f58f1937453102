"""The patch cycle workbook: a summary, one row per host, and one sheet per host. Every cell goes
through engine.xlsx_cell: host names, package names and messages come from hosts and the store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from patchwave.models import Host
from patchwave.reporting.engine import STATE_FILLS, xlsx_cell

_BOLD = Font(bold=True)


def _sheet_title(name: str, used: set[str]) -> str:
    base = re.sub(r"[\[\]:*?/\\\x00-\x1f]", "_", name)[:28] or "host"  # a tab or CR is no part of a sheet's name
    title, n = base, 2
    while title.lower() in used:
        title, n = f"{base[:25]}~{n}", n + 1
    used.add(title.lower())
    return title


def _append(ws: Worksheet, row: list[Any]) -> None:
    ws.append([xlsx_cell(ws, value) for value in row])


def _table(ws: Worksheet, header: list[str], rows: list[list[Any]]) -> None:
    ws.append([xlsx_cell(ws, title, font=_BOLD) for title in header])
    for row in rows:
        _append(ws, row)
    for index, column in enumerate(header, start=1):
        width = max([len(str(column))] + [len(str(r[index - 1] or "")) for r in rows]) + 2
        ws.column_dimensions[get_column_letter(index)].width = min(width, 70)
    ws.freeze_panes = f"A{ws.max_row - len(rows) + 1}"


def write_cycle_workbook(status: dict[str, Any], hosts: list[Host], path: Path) -> Path:
    by_name = {h.name: h for h in hosts}
    wb = Workbook()
    summary = wb.active
    if summary is None:  # a new Workbook always has one sheet; this keeps the type checker honest
        summary = wb.create_sheet("Summary")
    summary.title = "Summary"
    _append(summary, ["Patchwave patch cycle"])
    summary["A1"].font = Font(bold=True, size=14)
    counts: dict[str, int] = {}
    for item in status["hosts"]:
        counts[item["state"]] = counts.get(item["state"], 0) + 1
    rows: list[list[Any]] = [
        ["Cycle", status["cycle_id"]],
        ["Status", status["status"]],
        ["Started", str(status["created_at"])],
        ["Finished", str(status["finished_at"])],
        ["Hosts", len(status["hosts"])],
    ]
    rows += [[f"Hosts {state}", n] for state, n in sorted(counts.items())]
    for w in status["waves"]:
        gate = (w.get("gate") or {}).get("reason", "")
        rows.append([f"Wave {w['index']} ({w['name']})",
                     f"{w['status']}: {', '.join(w['hosts'])}" + (f" — gate: {gate}" if gate else "")])
    rows += [[f"Approval of {a['wave']}", f"{'approved' if a['approved'] else 'rejected'} by {a['by']} at {a['at']}"
              + (f": {a['comment']}" if a["comment"] else "")] for a in status.get("approvals", [])]
    for row in rows:
        _append(summary, row)
        summary.cell(row=summary.max_row, column=1).font = _BOLD
    summary.column_dimensions["A"].width = 24
    summary.column_dimensions["B"].width = 60

    overview = wb.create_sheet("Hosts")
    host_rows = []
    for item in status["hosts"]:
        host = by_name.get(item["host"], Host(item["host"]))
        host_rows.append([item["host"], ", ".join(host.groups), host.device_type, host.owner, host.release,
                          item["state"], len(item["packages"]), item["detail"]])
    _table(overview, ["Host", "Groups", "Device type", "Owner", "Release", "End state", "Packages", "Detail"], host_rows)
    for row in overview.iter_rows(min_row=2, min_col=6, max_col=6):
        for cell in row:
            fill = STATE_FILLS.get(str(cell.value))
            if fill:
                cell.fill = PatternFill("solid", start_color=fill, end_color=fill)

    used = {"summary", "hosts"}
    for item in status["hosts"]:
        ws = wb.create_sheet(_sheet_title(item["host"], used))
        _append(ws, [f"Host {item['host']}: {item['state']}", item["detail"]])
        ws["A1"].font = Font(bold=True, size=12)
        ws.append([])
        # the changelog's CVEs and urgency next to the advisories', labelled: the package's own
        # account shows even when no advisory names a CVE
        _table(ws, ["Package", "Before", "Wanted", "After", "Severity", "Advisories", "CVEs", "CVEs (changelog)",
                    "Urgency (changelog)", "SLA due", "Decision"],
               [[p["name"], p["before"], p["wanted"], p["after"], p.get("severity") or None,
                 ", ".join(p["advisories"]) or None, ", ".join(p.get("cves", [])) or None,
                 ", ".join(p.get("changelog_cves") or []) or None, p.get("changelog_urgency") or None,
                 p.get("sla_due") or None, p["reason"]]
                for p in item["packages"]])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def write_assessment_workbook(report: dict[str, Any], hosts: list[Host], path: Path) -> Path:
    """A baseline assessment: scores per host, then every failing or erroring rule with its
    evidence (the full compliance workbook set reads the store; this is one run's record)."""
    by_name = {h.name: h for h in hosts}
    wb = Workbook()
    summary = wb.active
    if summary is None:
        summary = wb.create_sheet("Hosts")
    summary.title = "Hosts"
    rows = []
    for item in report["hosts"]:
        host = by_name.get(item["host"], Host(item["host"]))
        if not item["ok"]:
            rows.append([item["host"], ", ".join(host.groups), host.device_type, host.owner, None, None,
                         None, None, None, None, None, f"not assessed: {item['message']}"])
            continue
        s = item["summary"]
        rows.append([item["host"], ", ".join(host.groups), host.device_type, host.owner, item["score"],
                     item["score_with_exceptions"], s["pass"], s["fail"], s["error"], s["not_applicable"],
                     s["excepted"], "; ".join((item.get("drift") or {}).get("critical", []))])
    _table(summary, ["Host", "Groups", "Device type", "Owner", "Score %", "Score % with exceptions", "Pass", "Fail",
                     "Error", "Not applicable", "Excepted", "Critical drift"], rows)
    failing = wb.create_sheet("Failing rules")
    fail_rows = []
    for item in report["hosts"]:
        for r in item.get("results", []):
            if r["status"] in ("fail", "error", "excepted"):
                ev = r.get("evidence") or {}
                fail_rows.append([item["host"], r["id"], r.get("title"), r.get("severity"), r["status"],
                                  r.get("exception"), ev.get("expected"), ev.get("observed") or ev.get("error"),
                                  ev.get("where"), ev.get("note")])
    _table(failing, ["Host", "Rule", "Title", "Severity", "Status", "Exception", "Expected", "Observed", "Where",
                     "Note"], fail_rows)
    for row in failing.iter_rows(min_row=2, min_col=5, max_col=5):
        for cell in row:
            fill = {"fail": "FFC7CE", "error": "FFC7CE", "excepted": "FFEB9C"}.get(str(cell.value))
            if fill:
                cell.fill = PatternFill("solid", start_color=fill, end_color=fill)
    failing.auto_filter.ref = failing.dimensions
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path
