"""Turns workbook definitions into .xlsx files: rows from a dataset, filtered, grouped, sorted,
written in openpyxl's write-only mode (constant memory), split before Excel's row limit, cells
cut at Excel's cell-size limit with a note; a first sheet explains the others, the time range
and the source. The only importer of openpyxl besides workbook.py; every cell either writes goes
through xlsx_cell(), so that text from the store or a host is never a formula."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook as XlsxWorkbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from patchwave.reporting.datasets import DATASETS, Context, Dataset, Row
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
    "patched-pending-restart": "FFEB9C",
    "rolled-back": "FFEB9C", "never assessed": "EDEDED", "not_applicable": "EDEDED", "excluded": "EDEDED",
    "skipped": "EDEDED",
}
Progress = Callable[[str, int], None]
# a first character that makes a spreadsheet take text for a formula (the CSV-injection list)
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def _printable_text(text: str) -> str:
    """Control characters (an escape sequence in a host's output) cannot be stored in a sheet:
    each is shown as its Unicode control picture (ESC as ␛), so the length stays the same."""
    return ILLEGAL_CHARACTERS_RE.sub(lambda found: chr(0x2400 + ord(found.group())), text)


def xlsx_cell(ws: Any, value: Any, font: Font | None = None, fill: PatternFill | None = None,
              number_format: str | None = None, alignment: Alignment | None = None) -> Any:
    """The one way a cell is written. Text is data, never code: a string a spreadsheet would take
    for a formula (FORMULA_LEADS first) or for an error value (#N/A) is stored as a string with
    the quote prefix, which also keeps it text when someone edits the cell. Numbers, dates and
    booleans are written as they are (a negative number stays a number). With no style and no such
    text the plain value comes back, which openpyxl writes much faster than a cell object."""
    literal = False
    if isinstance(value, list | tuple | dict | set):  # evidence is free-form: shown as its text
        value = str(value)
    if isinstance(value, str):
        if ILLEGAL_CHARACTERS_RE.search(value):
            value = _printable_text(value)
        literal = value.startswith(FORMULA_LEADS) or value in ERROR_CODES
    if not literal and font is None and fill is None and number_format is None and alignment is None:
        return value
    cell = WriteOnlyCell(ws, value=value)
    if literal:
        cell.data_type = "s"
        cell.quotePrefix = True
    if font is not None:
        cell.font = font
    if fill is not None:
        cell.fill = fill
    if number_format is not None:
        cell.number_format = number_format
    if alignment is not None:
        cell.alignment = alignment
    return cell


def _matches(row: Row, sheet: Sheet) -> bool:  # noqa: PLR0911 - one comparison per filter operator
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


def _narrowing(dataset: Dataset, sheets: list[Sheet]) -> dict[str, list[Any]]:
    """The fields on which every sheet fed by the dataset keeps only some values (an eq or in
    filter), with the union of those values: what the store may leave out for all of them."""
    narrow: dict[str, list[Any]] = {}
    for name in dataset.narrowable:
        values: list[Any] = []
        for sheet in sheets:
            kept = next((f.value if isinstance(f.value, list) else [f.value] for f in sheet.filters
                         if f.field == name and f.op in ("eq", "in")), None)
            if kept is None:
                break
            values += [v for v in kept if v not in values]
        else:
            narrow[name] = values
    return narrow


class Grouping:
    """Aggregates kept as running totals: memory grows with the number of groups, not rows."""

    def __init__(self, sheet: Sheet) -> None:
        self.sheet = sheet
        self.groups: dict[tuple[Any, ...], list[Any]] = {}

    def add(self, row: Row) -> None:
        sheet = self.sheet
        state = self.groups.setdefault(tuple(row.get(f) for f in sheet.group_by),
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

    def rows(self) -> list[Row]:
        out = []
        for key, state in self.groups.items():
            item: Row = dict(zip(self.sheet.group_by, key, strict=True))
            for index, agg in enumerate(self.sheet.aggregates):
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


class SheetSink:
    """One sheet being written: rows arrive as the dataset streams; a grouped or sorted sheet
    collects first and writes when the stream ends."""

    def __init__(self, writer: Writer, xlsx: Any, sheet: Sheet) -> None:
        self.writer, self.xlsx, self.sheet = writer, xlsx, sheet
        self.kinds = sheet.fields()
        self.order = list(self.kinds)
        self.titles = sheet.headers()
        self.fills = {c.field: c.fills for c in sheet.columns}
        self.widths = [max(10, min(60, len(t) + 2)) for t in self.titles]
        for column in sheet.columns:
            if column.width:
                self.widths[self.order.index(column.field)] = column.width
        self.grouping = Grouping(sheet) if sheet.group_by else None
        self.buffer: list[Row] | None = [] if sheet.sort and not sheet.group_by else None
        self.part, self.count = 1, 0
        self.parts: list[tuple[str, int]] = []
        self.ws = writer._new_sheet(xlsx, sheet.name, self.titles, self.widths)  # tab order = definition order

    def feed(self, row: Row) -> None:
        if not _matches(row, self.sheet):
            return
        if self.grouping is not None:
            self.grouping.add(row)
        elif self.buffer is not None:
            self.buffer.append(row)
        else:
            self._write(row)

    def _write(self, row: Row) -> None:
        if self.count >= self.writer.max_rows:
            self.writer._finish(self.ws, len(self.order), self.count, self.sheet, self.titles, None)
            self.parts.append((self.ws.title, self.count))
            self.part += 1
            self.ws = self.writer._new_sheet(self.xlsx, f"{self.sheet.name[:27]} ({self.part})", self.titles,
                                             self.widths)
            self.count = 0
        ws, cell = self.ws, self.writer._cell
        ws.append([cell(ws, row.get(f), self.kinds[f], self.fills.get(f) or {}) for f in self.order])
        self.count += 1

    def close(self) -> list[tuple[str, int]]:
        pending = self.grouping.rows() if self.grouping is not None else self.buffer
        if pending is not None:
            for row in _sorted(pending, self.sheet) if self.sheet.sort else pending:
                self._write(row)
        self.writer._finish(self.ws, len(self.order), self.count, self.sheet, self.titles, self.order)
        return [*self.parts, (self.ws.title, self.count)]


class Writer:
    def __init__(self, progress: Progress | None = None, max_rows: int = EXCEL_ROWS - 1,
                 progress_every: int = 100_000) -> None:
        self.progress = progress or (lambda _m, _n: None)
        self.max_rows = max_rows  # data rows per sheet (the header takes one)
        self.progress_every = progress_every  # rows read between two progress messages
        self.truncated = 0
        self._styles: dict[tuple[str | None, str | None], tuple[str | None, PatternFill | None]] = {}

    def write(self, book: Workbook, ctx: Context, path: Path, source: str) -> dict[str, Any]:
        """Write the workbook; returns what was written (sheets and their row counts)."""
        xlsx = XlsxWorkbook(write_only=True)
        about = xlsx.create_sheet("About")
        sinks = [SheetSink(self, xlsx, sheet) for sheet in book.sheets]
        # one pass over each dataset feeds every sheet built on it
        started = time.monotonic()
        for dataset in dict.fromkeys(sheet.dataset for sheet in book.sheets):
            mine = [sink for sink in sinks if sink.sheet.dataset == dataset]
            narrowed = replace(ctx, narrow=_narrowing(DATASETS[dataset], [sink.sheet for sink in mine]))
            self.progress(f"{book.name}: reading {dataset}", 0)
            count = 0
            for count, row in enumerate(DATASETS[dataset].rows(narrowed), start=1):
                for sink in mine:
                    sink.feed(row)
                if count % self.progress_every == 0:
                    self.progress(f"{book.name}: {dataset}: {count:,} rows so far", count)
            self.progress(f"{book.name}: {dataset}: {count:,} rows read", count)
        written: list[dict[str, Any]] = []
        for sink in sinks:
            for name, count in sink.close():
                written.append({"sheet": name, "rows": count, "about": sink.sheet.about, "title": sink.sheet.title})
        self._about(about, book, ctx, source, written)
        path.parent.mkdir(parents=True, exist_ok=True)
        xlsx.save(path)
        seconds = round(time.monotonic() - started, 1)
        self.progress(f"{book.name}: written to {path} in {seconds} s", 0)
        return {"workbook": str(path), "sheets": written, "truncated_cells": self.truncated, "seconds": seconds}

    def _about(self, ws: Any, book: Workbook, ctx: Context, source: str, written: list[dict[str, Any]]) -> None:
        first, last = ctx.store.span()
        self._printable(ws)
        ws.column_dimensions["A"].width = 28
        ws.column_dimensions["B"].width = 100
        bold = Font(bold=True)

        def line(label: str, value: Any, style: Font | None = None) -> None:
            ws.append([xlsx_cell(ws, label, font=style or bold), xlsx_cell(ws, value)])

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
            ws.append([xlsx_cell(ws, item["sheet"]),
                       xlsx_cell(ws, f"{item['title']}: {item['about']} ({item['rows']:,} rows)",
                                 alignment=Alignment(wrap_text=True, vertical="top"))])

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
        font, fill = Font(bold=True), PatternFill("solid", start_color="DDEBF7", end_color="DDEBF7")
        alignment = Alignment(wrap_text=True, vertical="top")
        ws.append([xlsx_cell(ws, title, font=font, fill=fill, alignment=alignment) for title in titles])
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
        if isinstance(value, list | tuple | dict | set):
            value = str(value)  # before the cut: the text is what must fit
        if isinstance(value, str) and len(value) > CELL_LIMIT:
            value = value[: CELL_LIMIT - len(TRUNCATED)] + TRUNCATED
            self.truncated += 1
        colour = fills.get(str(value)) or (STATE_FILLS.get(value) if isinstance(value, str) else None)
        style = FORMATS.get(kind) if value is not None else None
        if colour is None and (style is None or (kind == "int" and isinstance(value, int) and abs(value) < 1000)):
            return xlsx_cell(ws, value)
        key = (style, colour)
        if key not in self._styles:
            self._styles[key] = (style, PatternFill("solid", start_color=colour, end_color=colour) if colour else None)
        number_format, fill = self._styles[key]
        return xlsx_cell(ws, value, fill=fill, number_format=number_format)
