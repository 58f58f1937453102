"""The store: every scan, decision, wave and host result, appended with timestamps.

SQLAlchemy 2 Core; a SQLite file by default, any SQLAlchemy URL through --store/PATCHWAVE_STORE.
The modules of this package are the only ones that speak SQL: `schema` (the tables),
`migrations`, `base` (opening the store), and one module per aggregate. Rows are never updated
except a cycle's or wave's status; history is what trends and mean-time-to-patch are computed from.
"""

from __future__ import annotations

from patchwave.store.assessments import AssessmentRecords
from patchwave.store.base import display_url
from patchwave.store.cycles import CycleRecords
from patchwave.store.fleet import FleetRecords
from patchwave.store.history import HistoryQueries
from patchwave.store.outbox import OutboxRecords
from patchwave.store.runs import RunRecords
from patchwave.store.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Store", "display_url"]


class Store(CycleRecords, RunRecords, AssessmentRecords, OutboxRecords, FleetRecords, HistoryQueries):
    """Every aggregate's records through one object (one engine, one lock holder)."""
