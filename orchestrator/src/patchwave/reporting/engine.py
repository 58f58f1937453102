"""Turns workbook definitions into .xlsx files: rows from a dataset, filtered, grouped, sorted,
written in openpyxl's write-only mode (constant memory), split before Excel's row limit, cells
cut at Excel's cell-size limit with a note; a first sheet explains the others, the time range
and the source. The only importer of openpyxl besides workbook.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook as XlsxWorkbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from patchwave.reporting.datasets import DATASETS, Context, Row
from patchwave.reporting.definitions import Sheet, Workbook

EXCEL_ROWS = 1_048_576
CELL_LIMIT = 32_767
TRUNCATED = " … [cut at Excel's 32,767-character cell limit]"
FORMATS = {"int": "#,##0", "float": "#,##0.00", "percent": "0.0%", "date": "yyyy-mm-dd",
           "datetime": "yyyy-mm-dd hh:mm"}
STATE_FILLS = {  # the same colours in every sheet
    "pass": "C6EFCE", "compliant": "C6EFCE", "patched": "C6EFCE", "passed": "C6EFCE", "approved": "C6EFCE",
    "completed": "C6EFCE",
    "fail": "FFC7CE", "error": "FFC7CE", "non-compliant": "FFC7CE", "failed": "FFC7CE", "unreachable": "FFC7CE",
    "not-reached": "FFC7CE", "partially-patched": "FFC7CE", "halted": "FFC7CE", "rejected": "FFC7CE",
    "excepted": "FFEB9C", "compliant with exceptions": "FFEB9C", "patched-pending-reboot": "FFEB9C",
    "rolled-back": "FFEB9C", "never assessed": "EDEDED", "not_applicable": "EDEDED", "excluded": "EDEDED",
    "skipped": "EDEDED",
}
Progress = Callable[[str, int], None]


def _matches(row: Row, sheet: Sheet) -> bool:
    for f in sheet.filters:
        value = row.get(f.field)
        target = f.value
        if isinstance(value, datetime | date) and isinstance(target, str):
            value = value.isoformat()
        if f.op == "eq" and value != target:
            return False
        if f.op == "ne" and value == target:
            return False
        if f.op == "in" and value not in (target or []):  # type: ignore[operator]
            return False
        if f.op == "not_in" and value in (target or []):  # type: ignore[operator]
            return False
        if f.op == "contains" and str(target) not in str(value or ""):
            return False
        if f.op == "empty" and value not in (None, ""):
            return False
        if f.op == "not_empty" and value in (None, ""):
            return False
        if f.op in ("lt", "le", "gt", "ge"):
            if value is None:
                return False
            ok = {"lt": value < target, "le": value <= target, "gt": value > target,
                  "ge": value >= target}[f.op]
            if not ok:
                return False
    return True


def _grouped(rows: Iterable[Row], sheet: Sheet) -> list[Row]:
    """Aggregates kept as running totals: memory grows with the number of groups, not rows."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        state = groups.setdefault(tuple(row.get(f) for f in sheet.group_by),
                                  [[0, 0.0, None, None] for _ in sheet.aggregates] + [0])
        state[-1] += 1
        for index, agg in enumerate(sheet.aggregates):
            value = row.get(agg.field) if agg.field else None
            if value is None:
                continue
            acc = state[index]  # count of values, sum (or trues), min, max
            acc[0] += 1
            acc[1] += (1 if value else 0) if agg.fn == "count_true" else (value if agg.fn in ("sum", "avg") else 0)
            acc[2] = value if acc[2] is None or value < acc[2] else acc[2]
            acc[3] = value if acc[3] is None or value > acc[3] else acc[3]
    out = []
    for key, state in groups.items():
        item: Row = dict(zip(sheet.group_by, key, strict=True))
        for index, agg in enumerate(sheet.aggregates):
            count, total, low, high = state[index]
            item[agg.header] = {"count": state[-1], "count_true": int(total), "sum": total,
                                "avg": round(total / count, 4) if count else None, "min": low, "max": high}[agg.fn]
        out.append(item)
    return out


def _sorted(rows: list[Row], sheet: Sheet) -> list[Row]:
    for key in reversed(sheet.sort):
        field, reverse = key.lstrip("-"), key.startswith("-")
        rows.sort(key=lambda r, f=field: (r.get(f) is None, r.get(f) if r.get(f) is not None else 0),  # type: ignore[misc]
                  reverse=reverse)
    return rows


def sheet_rows(sheet: Sheet, ctx: Context) -> Iterator[Row]:
    rows: Iterable[Row] = (r for r in DATASETS[sheet.dataset].rows(ctx) if _matches(r, sheet))
    if sheet.group_by:
        rows = _grouped(rows, sheet)
    if sheet.sort:
        rows = _sorted(list(rows), sheet)
    yield from rows


class Writer:
    def __init__(self, progress: Progress | None = None, max_rows: int = EXCEL_ROWS - 1) -> None:
        self.progress = progress or (lambda _m, _n: None)
        self.max_rows = max_rows  # data rows per sheet (the header takes one)
        self.truncated = 0
        self._styles: dict[tuple[str | None, str | None], tuple[str | None, PatternFill | None]] = {}

    def write(self, book: Workbook, ctx: Context, path: Path, source: str) -> dict[str, Any]:
        """Write the workbook; returns what was written (sheets and their row counts)."""
        xlsx = XlsxWorkbook(write_only=True)
        about = xlsx.create_sheet("About")
        written: list[dict[str, Any]] = []
        for sheet in book.sheets:
            for name, count in self._sheet(xlsx, sheet, ctx):
                written.append({"sheet": name, "rows": count, "about": sheet.about, "title": sheet.title})
        self._about(about, book, ctx, source, written)
        path.parent.mkdir(parents=True, exist_ok=True)
        xlsx.save(path)
        return {"workbook": str(path), "sheets": written, "truncated_cells": self.truncated}

    def _about(self, ws: Any, book: Workbook, ctx: Context, source: str, written: list[dict[str, Any]]) -> None:
        first, last = ctx.store.span()
        self._printable(ws)
        ws.column_dimensions["A"].width = 28
        ws.column_dimensions["B"].width = 100
        bold = Font(bold=True)

        def line(label: str, value: Any, style: Font | None = None) -> None:
            cell = WriteOnlyCell(ws, value=label)
            cell.font = style or bold
            ws.append([cell, value])

        line(book.title, "", Font(bold=True, size=14))
        line("Generated", datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
        line("Source", source)
        line("Data from", f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} (UTC)" if first and last
             else "the store holds no results yet")
        line("Time range", f"since {ctx.since:%Y-%m-%d}" if ctx.since else "everything in the store")
        line("Hosts", f"group {ctx.group}" if ctx.group else f"all {len(ctx.hosts)} hosts of the inventory")
        if self.truncated:
            line("Note", f"{self.truncated} cell(s) longer than Excel's 32,767 characters were cut, each ending "
                         "with a note; the store keeps the full text")
        ws.append([])
        line("Sheet", "What it shows")
        for item in written:
            text = WriteOnlyCell(ws, value=f"{item['title']}: {item['about']} ({item['rows']:,} rows)")
            text.alignment = Alignment(wrap_text=True, vertical="top")
            ws.append([item["sheet"], text])

    def _sheet(self, xlsx: Any, sheet: Sheet, ctx: Context) -> Iterator[tuple[str, int]]:
        kinds = sheet.fields()
        order = list(kinds)
        titles = sheet.headers()
        fills = {c.field: c.fills for c in sheet.columns}
        widths = [max(10, min(60, len(t) + 2)) for t in titles]
        for c in sheet.columns:
            if c.width:
                widths[order.index(c.field)] = c.width
        part, count, ws = 0, 0, None
        names: list[tuple[str, int]] = []
        for row in sheet_rows(sheet, ctx):
            if ws is None or count >= self.max_rows:
                if ws is not None:
                    self._finish(ws, len(order), count, sheet, titles, None)
                    names.append((ws.title, count))
                part += 1
                ws = self._new_sheet(xlsx, sheet.name if part == 1 else f"{sheet.name[:27]} ({part})", titles, widths)
                count = 0
            ws.append([self._cell(ws, row.get(f), kinds[f], fills.get(f) or {}) for f in order])
            count += 1
            if count % 50_000 == 0:
                self.progress(f"{sheet.name}: {count:,} rows", count)
        if ws is None:
            ws = self._new_sheet(xlsx, sheet.name, titles, widths)
        self._finish(ws, len(order), count, sheet, titles, order)
        names.append((ws.title, count))
        yield from names

    @staticmethod
    def _printable(ws: Any) -> None:
        """Landscape, as wide as the page, header row repeated: what a PDF or a printout needs."""
        ws.page_setup.orientation = "landscape"
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True

    def _new_sheet(self, xlsx: Any, name: str, titles: list[str], widths: list[int]) -> Any:
        ws = xlsx.create_sheet(name)
        self._printable(ws)
        ws.print_title_rows = "1:1"
        for index, width in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(index)].width = width
        ws.freeze_panes = "A2"
        header = []
        for title in titles:
            cell = WriteOnlyCell(ws, value=title)
            cell.font = Font(bold=True)
            cell.fill = PatternFill("solid", start_color="DDEBF7", end_color="DDEBF7")
            cell.alignment = Alignment(wrap_text=True, vertical="top")
            header.append(cell)
        ws.append(header)
        return ws

    def _finish(self, ws: Any, columns: int, count: int, sheet: Sheet, titles: list[str],
                order: list[str] | None) -> None:
        last = get_column_letter(max(columns, 1))
        ws.auto_filter.ref = f"A1:{last}{count + 1}"
        if sheet.chart is not None and order is not None and count:
            chart = BarChart() if sheet.chart.type == "bar" else LineChart()
            chart.title = sheet.chart.title
            chart.y_axis.title = sheet.chart.y_title
            chart.height, chart.width = 9, 18
            names = {t: i + 1 for i, t in enumerate(titles)} | {f: i + 1 for i, f in enumerate(order)}
            rows_in_chart = min(count, 500)
            for y in sheet.chart.y:
                data = Reference(ws, min_col=names[y], min_row=1, max_row=rows_in_chart + 1)
                chart.add_data(data, titles_from_data=True)
            chart.set_categories(Reference(ws, min_col=names[sheet.chart.x], min_row=2, max_row=rows_in_chart + 1))
            ws.add_chart(chart, f"{get_column_letter(columns + 2)}2")

    def _cell(self, ws: Any, value: Any, kind: str, fills: dict[str, str]) -> Any:
        """A plain value where no style is needed (much faster to write), else a styled cell."""
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.replace(tzinfo=None)  # Excel has no time zones; the store keeps UTC
        if isinstance(value, str) and len(value) > CELL_LIMIT:
            value = value[: CELL_LIMIT - len(TRUNCATED)] + TRUNCATED
            self.truncated += 1
        if isinstance(value, list | dict):
            value = str(value)
        colour = fills.get(str(value)) or (STATE_FILLS.get(value) if isinstance(value, str) else None)
        style = FORMATS.get(kind) if value is not None else None
        if colour is None and (style is None or (kind == "int" and isinstance(value, int) and abs(value) < 1000)):
            return value
        key = (style, colour)
        cell = WriteOnlyCell(ws, value=value)
        if key not in self._styles:
            self._styles[key] = (style, PatternFill("solid", start_color=colour, end_color=colour) if colour else None)
        number_format, fill = self._styles[key]
        if number_format:
            cell.number_format = number_format
        if fill is not None:
            cell.fill = fill
        return cell
