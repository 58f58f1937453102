"""Queries over the whole history for reports: rows streamed from one table, failure transitions, rule
counts, the span of time recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    select,
)
from sqlalchemy.engine import Connection

from patchwave.clock import aware
from patchwave.store.base import StoreBase
from patchwave.store.schema import assessments, cycles, rule_failures, rule_results, scans


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """A rule failing on a host from one assessment until the first passing one after it (if any)."""

    host: str
    rule_id: str
    title: str
    failing_since: datetime
    fixed_at: datetime | None


class HistoryQueries(StoreBase):
    # --- reads for reports: every row, in id order, optionally since a date -----------------

    def rule_failures(self, severity: str, since: datetime | None = None) -> Iterator[RuleFailure]:
        """Each time a rule of this severity started failing on a host (since `since`), and when it
        passed again, in host, rule and time order: kept by the store as assessments come in."""
        query = (select(rule_failures.c.host, rule_failures.c.rule_id, rule_failures.c.title,
                        rule_failures.c.opened_at, rule_failures.c.closed_at)
                 .where(rule_failures.c.severity == severity)
                 .order_by(rule_failures.c.host, rule_failures.c.rule_id, rule_failures.c.opened_id))
        if since is not None:
            query = query.where(rule_failures.c.opened_at >= since)
        with self.engine.connect() as conn:
            for host, rule_id, title, opened, closed in conn.execution_options(
                    stream_results=True, yield_per=5000).execute(query):
                yield RuleFailure(host, rule_id, title, aware(opened), aware(closed))

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


def rebuild_rule_failures(conn: Connection) -> int:
    """Make the rule failures again from every rule result in the store, in one pass the
    database orders (for a store from before they were kept, and for data loaded in bulk);
    returns how many there are."""
    from sqlalchemy import delete, insert

    conn.execute(delete(rule_failures))
    query = (select(rule_results.c.host, rule_results.c.rule_id, rule_results.c.title, rule_results.c.severity,
                    rule_results.c.status, rule_results.c.assessment_id, assessments.c.at)
             .join(assessments, assessments.c.id == rule_results.c.assessment_id)
             .where(rule_results.c.status.in_(("fail", "error", "pass")))
             .order_by(rule_results.c.host, rule_results.c.rule_id, rule_results.c.assessment_id))
    current: tuple[str, str] | None = None
    episode: dict[str, Any] | None = None
    batch: list[dict[str, Any]] = []
    total = 0
    for host, rule_id, title, severity, status, assessment_id, at in conn.execute(query):
        if (host, rule_id) != current:
            current, episode = (host, rule_id), None
        if status != "pass" and episode is None:
            episode = dict(host=host, rule_id=rule_id, title=title, severity=severity, opened_id=assessment_id,
                           opened_at=at, closed_id=None, closed_at=None)
            batch.append(episode)
        elif status == "pass" and episode is not None:
            episode.update(closed_id=assessment_id, closed_at=at)
            episode = None
        if len(batch) >= 20_000 and episode is None:
            conn.execute(insert(rule_failures), batch)
            total += len(batch)
            batch = []
    if batch:
        conn.execute(insert(rule_failures), batch)
        total += len(batch)
    return total
