"""Queries over the whole history for reports: rows streamed from one table, failure transitions, rule
counts, the span of time recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    select,
)

from patchwave.store.base import StoreBase
from patchwave.store.schema import assessments, cycles, rule_results, scans


class HistoryQueries(StoreBase):
    # --- reads for reports: every row, in id order, optionally since a date -----------------

    def failure_transitions(self, severity: str) -> Any:
        """The rule results of one severity that start or end a failure of a host's rule: a fail or
        error after anything else (or first), a pass after anything else; as (host, rule_id,
        title, assessment_id, status), in order per host and rule. The database walks the history
        (a window function over the covering index), so millions of results come back as their
        transitions."""
        from sqlalchemy import and_, func, or_

        failing = ("fail", "error")
        previous = func.lag(rule_results.c.status).over(partition_by=(rule_results.c.host, rule_results.c.rule_id),
                                                        order_by=rule_results.c.assessment_id).label("previous")
        inner = (select(rule_results.c.id, rule_results.c.host, rule_results.c.rule_id, rule_results.c.assessment_id,
                        rule_results.c.status, previous)
                 .where(rule_results.c.severity == severity).subquery())
        titled = rule_results.alias("titled")  # the title is not in the index: read only for what comes back
        query = (select(inner.c.host, inner.c.rule_id, titled.c.title, inner.c.assessment_id, inner.c.status)
                 .join(titled, titled.c.id == inner.c.id)
                 .where(or_(and_(inner.c.status.in_(failing),
                                 or_(inner.c.previous.is_(None), inner.c.previous.not_in(failing))),
                            and_(inner.c.status == "pass", inner.c.previous != "pass")))
                 .order_by(inner.c.host, inner.c.rule_id, inner.c.assessment_id))
        with self.engine.connect() as conn:
            yield from conn.execution_options(stream_results=True, yield_per=5000).execute(query)

    def span(self) -> tuple[datetime | None, datetime | None]:
        """The earliest and latest time anything was recorded (cycles, scans, assessments)."""
        from sqlalchemy import func

        lows, highs = [], []
        with self.engine.connect() as conn:
            for column in (cycles.c.created_at, scans.c.at, assessments.c.at):
                low, high = conn.execute(select(func.min(column), func.max(column))).one()
                if low is not None:
                    lows.append(low)
                    highs.append(high)
        return (min(lows) if lows else None, max(highs) if highs else None)
