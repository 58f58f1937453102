"""Report definitions (YAML): a sheet is a dataset, its columns, filters, grouping, sorting and
an optional chart. A workbook definition lists sheets. The shipped standard workbooks are
definitions too (reports/standard/); users add their own in reports/. Validated with file:line
errors like every other Patchwave file."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from patchwave import yamlsrc
from patchwave.errors import InputError
from patchwave.reporting.datasets import DATASETS

DOCS = "docs/reports.md"
SHEET_NAME = r"^[^\[\]:*?/\\]{1,31}$"


class DefinitionError(InputError):
    pass


class _Model(BaseModel):
    model_config = yamlsrc.STRICT


def _not_a_formula(value: str) -> str:
    """Text that goes into a cell: openpyxl writes a string that starts with `=` as a formula,
    which the spreadsheet then runs (`=HYPERLINK(...)`, `=cmd|...`)."""
    if value.lstrip().startswith("="):
        raise ValueError(f"{value[:40]!r} starts with '=': a spreadsheet would run it as a formula")
    return value


class Column(_Model):
    field: str
    header: str | None = None
    width: Annotated[int, Field(ge=4, le=120)] | None = None
    fills: dict[str, Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{6}$")]] = {}  # cell value -> RGB fill

    @field_validator("header")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else _not_a_formula(value)


class Filter(_Model):
    field: str
    op: Literal["eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "contains", "empty", "not_empty"] = "eq"
    value: str | int | float | bool | list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _value(self) -> Filter:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op} needs a list value")
        if self.op not in ("empty", "not_empty") and self.value is None:
            raise ValueError(f"op {self.op} needs a value")
        return self


class Aggregate(_Model):
    fn: Literal["count", "sum", "avg", "min", "max", "count_true"]
    field: str | None = None  # not for count
    header: str

    @field_validator("header")
    @classmethod
    def _text(cls, value: str) -> str:
        return _not_a_formula(value)

    @model_validator(mode="after")
    def _field(self) -> Aggregate:
        if self.fn != "count" and self.field is None:
            raise ValueError(f"{self.fn} needs a field")
        return self


class Chart(_Model):
    type: Literal["bar", "line"]
    title: str
    x: str  # a column header (or field) for the categories
    y: Annotated[list[str], Field(min_length=1)]  # column headers (or fields) with numbers
    y_title: str = ""

    @field_validator("title", "y_title")
    @classmethod
    def _text(cls, value: str) -> str:
        return _not_a_formula(value)


class Sheet(_Model):
    name: Annotated[str, Field(pattern=SHEET_NAME)]
    title: str
    about: Annotated[str, Field(min_length=3)]  # shown on the workbook's first sheet
    dataset: str
    columns: list[Column] = []
    filters: list[Filter] = []
    group_by: list[str] = []
    aggregates: list[Aggregate] = []
    sort: list[str] = []  # field or -field
    chart: Chart | None = None

    @field_validator("name", "title", "about")
    @classmethod
    def _text(cls, value: str) -> str:
        return _not_a_formula(value)

    @model_validator(mode="after")
    def _shape(self) -> Sheet:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; use one of {', '.join(sorted(DATASETS))}")
        if self.aggregates and not self.group_by:
            raise ValueError("aggregates need group_by")
        if not self.columns and not self.group_by:
            raise ValueError("a sheet needs columns (or group_by with aggregates)")
        return self

    def fields(self) -> dict[str, str]:
        """The sheet's output fields and their kinds (after grouping)."""
        kinds = DATASETS[self.dataset].fields
        if not self.group_by:
            return {c.field: kinds[c.field] for c in self.columns}
        out = {f: kinds[f] for f in self.group_by}
        for agg in self.aggregates:
            source = kinds.get(str(agg.field), "float")
            if agg.fn in ("count", "count_true"):
                out[agg.header] = "int"
            elif agg.fn == "avg":
                out[agg.header] = "percent" if source == "percent" else "float"
            else:
                out[agg.header] = source
        return out


    def headers(self) -> list[str]:
        """The column titles, in order: a column's header, else its field made readable."""
        named = {c.field: c.header for c in self.columns if c.header}
        return [named.get(f) or (f if f in {a.header for a in self.aggregates} else f.replace("_", " ").capitalize())
                for f in self.fields()]


class Workbook(_Model):
    version: Literal[1] = 1
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    title: str
    sheets: Annotated[list[Sheet], Field(min_length=1)]

    @field_validator("title")
    @classmethod
    def _text(cls, value: str) -> str:
        return _not_a_formula(value)


_NUMBERS = ("int", "float", "percent")
_COMPARE = ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge")


def _iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _filter_problem(item: Filter, kind: str) -> str | None:
    """A filter value that can never match its field, or that the comparison would fail on
    (a number against text) while the workbook is being written."""
    if item.op not in _COMPARE:
        return None
    values = item.value if isinstance(item.value, list) else [item.value]
    for value in values:
        if kind in _NUMBERS and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"{item.field} is a number: compare it with a number, not {value!r}"
        if kind == "bool" and not isinstance(value, bool):
            return f"{item.field} is true or false: compare it with true or false, not {value!r}"
        if kind in ("date", "datetime") and not _iso(value):
            return f"{item.field} is a date: compare it with a quoted date 'YYYY-MM-DD' (or an ISO time), not {value!r}"
        if kind == "text" and not isinstance(value, str):
            return f"{item.field} is text: compare it with text (quote {value!r})"
    return None


def _check_fields(path: Path, data: Any, sheet: Sheet, loc: tuple[str | int, ...]) -> None:
    """Every field a sheet names must be in its dataset (with the line that names it)."""
    known = DATASETS[sheet.dataset].fields
    places: list[tuple[tuple[str | int, ...], str]] = []
    places += [((*loc, "columns", i, "field"), c.field) for i, c in enumerate(sheet.columns)]
    places += [((*loc, "filters", i, "field"), f.field) for i, f in enumerate(sheet.filters)]
    places += [((*loc, "group_by", i), g) for i, g in enumerate(sheet.group_by)]
    places += [((*loc, "aggregates", i, "field"), str(a.field)) for i, a in enumerate(sheet.aggregates) if a.field]
    headers = {a.header for a in sheet.aggregates}
    places += [((*loc, "sort", i), s.lstrip("-")) for i, s in enumerate(sheet.sort) if s.lstrip("-") not in headers]
    for where, name in places:
        if name not in known:
            raise DefinitionError(f"{yamlsrc.where(path, data, where)}: {yamlsrc.loc_text(where)}: dataset "
                                  f"{sheet.dataset} has no field {name!r}; it has {', '.join(known)}")
    for index, item in enumerate(sheet.filters):
        problem = _filter_problem(item, known[item.field])
        if problem:
            where = (*loc, "filters", index, "value")
            raise DefinitionError(f"{yamlsrc.where(path, data, where)}: {yamlsrc.loc_text(where)}: {problem}")
    if sheet.group_by and sheet.columns:
        raise DefinitionError(f"{yamlsrc.where(path, data, (*loc, 'columns'))}: {yamlsrc.loc_text((*loc, 'columns'))}: "
                              "a grouped sheet's columns are its group_by fields and aggregates; drop columns")
    if sheet.chart is not None:
        headers = set(sheet.fields()) | set(sheet.headers())
        for index, name in enumerate([sheet.chart.x, *sheet.chart.y]):
            if name not in headers:
                where = (*loc, "chart", "x") if index == 0 else (*loc, "chart", "y", index - 1)
                raise DefinitionError(f"{yamlsrc.where(path, data, where)}: {yamlsrc.loc_text(where)}: {name!r} is not "
                                      f"a column of this sheet")


def load_workbook_definition(path: Path) -> Workbook:
    """A workbook (name, title, sheets) or a single sheet definition (which becomes a workbook
    of that one sheet)."""
    data = yamlsrc.load_mapping(path, "report definition", DOCS, DefinitionError)
    if "sheets" in data:
        book = yamlsrc.validate(Workbook, data, path, "workbook", DOCS, DefinitionError)
        for index, sheet in enumerate(book.sheets):
            _check_fields(path, data, sheet, ("sheets", index))
        return book
    sheet = yamlsrc.validate(Sheet, data, path, "report", DOCS, DefinitionError)
    _check_fields(path, data, sheet, ())
    name = re.sub(r"[^a-z0-9_-]", "-", path.stem.lower())[:31]
    return Workbook(name=name if name[:1].isalpha() else f"r{name}"[:32], title=sheet.title, sheets=[sheet])


STANDARD = ("compliance", "patch", "owner", "vendor", "trend", "cycle")


def standard(reports_dir: Path, kind: str) -> tuple[Workbook, Path]:
    path = reports_dir / "standard" / f"{kind}.yml"
    if not path.is_file():
        raise DefinitionError(f"{path}: the standard {kind} report definition is missing")
    return load_workbook_definition(path), path
