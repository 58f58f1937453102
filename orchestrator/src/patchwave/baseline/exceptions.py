"""The exceptions register: a rule excepted for some hosts or groups, with an owner, a justification, a
compensating control and an expiry.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from patchwave import yamlsrc
from patchwave.baseline.rules import DOCS, RULE_ID, BaselineError, read_mapping


class _Model(BaseModel):
    model_config = yamlsrc.STRICT


class Scope(_Model):
    hosts: list[str] = []
    groups: list[str] = []

    @model_validator(mode="after")
    def _some(self) -> Scope:
        if not self.hosts and not self.groups:
            raise ValueError("an exception's scope names hosts and/or groups")
        return self


class Exception_(_Model):
    id: Annotated[str, Field(pattern=RULE_ID)]
    rule: Annotated[str, Field(pattern=RULE_ID)]
    scope: Scope
    owner: Annotated[str, Field(min_length=1)]
    justification: Annotated[str, Field(min_length=3)]
    compensating_control: Annotated[str, Field(min_length=3)]
    expires: str  # YYYY-MM-DD: in force through that day, lapsed from the next

    @field_validator("expires", mode="before")
    @classmethod
    def _date(cls, value: object) -> str:
        return expiry_text(value)

    @property
    def expiry(self) -> date:
        return date.fromisoformat(self.expires)


def expiry_text(value: object) -> str:
    """An exception's expiry as YYYY-MM-DD: the text exactly so (date.fromisoformat alone also
    takes 20260101 and 2026-W01-1 on Python 3.11), or the date YAML makes of an unquoted
    2026-01-01; not a date and time, not a number."""
    if isinstance(value, datetime):
        raise ValueError(f"{value.isoformat()!r} is a date and time; expires is a date YYYY-MM-DD")
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date YYYY-MM-DD (write it like \"2027-03-31\")")
    if not _DAY.fullmatch(value):
        raise ValueError(f"{value!r} is not a date YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a date YYYY-MM-DD: {exc}") from exc
    return value


def exception_in_force(item: Exception_, today: date) -> bool:
    """An exception that expires on day D is in force through D and lapses on D+1."""
    return today <= item.expiry


class ExceptionsFile(_Model):
    version: Literal[1] = 1
    exceptions: list[Exception_] = []

    @model_validator(mode="after")
    def _unique(self) -> ExceptionsFile:
        yamlsrc.require_unique([e.id for e in self.exceptions], "exception ids")
        return self


def load_exceptions(path: Path) -> list[Exception_]:
    """The exceptions register alone (reports read it without a baseline)."""
    data = read_mapping(path, "exceptions register")
    return list(yamlsrc.validate(ExceptionsFile, data, path, "exceptions", DOCS, BaselineError).exceptions)


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
