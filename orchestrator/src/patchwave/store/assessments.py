"""Baseline assessments with their rule results, and remediations."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from patchwave.clock import now
from patchwave.store.base import StoreBase, primary_key
from patchwave.store.schema import assessments, remediations, rule_failures, rule_results


class AssessmentRecords(StoreBase):
    def add_assessment(self, batch: str, host: str, baseline: str, kind: str, ok: bool, unreachable: bool,
                       message: str, summary: dict[str, Any], scores: tuple[float | None, float | None],
                       snapshot: dict[str, Any] | None, drift: dict[str, Any] | None,
                       results: list[dict[str, Any]], at: datetime | None = None) -> int:
        """One host's assessment and all its rule results, in one transaction, with the host's
        rule failures opened and closed by them (`at`: when it was assessed, if not now)."""
        stamp = at or now()
        with self.engine.begin() as conn:
            assessment_id = int(primary_key(conn.execute(insert(assessments).values(
                batch=batch, host=host, baseline=baseline, kind=kind, at=stamp, ok=ok, unreachable=unreachable,
                message=message, summary=summary, score=scores[0], score_with_exceptions=scores[1],
                snapshot=snapshot, drift=drift))))
            if results:
                rows = [dict(assessment_id=assessment_id, host=host, rule_id=r["id"], title=r.get("title", ""),
                             severity=r.get("severity", ""), criticality=r.get("criticality", "normal"),
                             status=r["status"], evidence=r.get("evidence", {}), duration=r.get("duration"),
                             exception_id=r.get("exception")) for r in results]
                conn.execute(insert(rule_results), rows)
                _follow_failures(conn, host, assessment_id, stamp, rows)
        return assessment_id

    def add_remediation(self, batch: str, host: str, check_mode: bool, ok: bool, changed: bool, message: str,
                        data: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(remediations).values(batch=batch, host=host, at=now(), check_mode=check_mode, ok=ok,
                                                     changed=changed, message=message,
                                                     data=json.loads(json.dumps(data, default=str))))

    def last_assessment(self, host: str, before_id: int | None = None) -> dict[str, Any] | None:
        """The latest successful assessment of a host (before `before_id` when given), with its rule results."""
        query = select(assessments).where((assessments.c.host == host) & assessments.c.ok)
        if before_id is not None:
            query = query.where(assessments.c.id < before_id)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(assessments.c.id.desc()).limit(1)).mappings().first()
            if row is None:
                return None
            found = dict(row)
            found["results"] = [dict(r) for r in conn.execute(select(rule_results).where(
                rule_results.c.assessment_id == row["id"]).order_by(rule_results.c.id)).mappings()]
        return found

    def assessments(self, batch: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(assessments).where(assessments.c.batch == batch)
                                                  .order_by(assessments.c.id)).mappings()]

    def remediations(self, batch: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(remediations).where(remediations.c.batch == batch)
                                                  .order_by(remediations.c.id)).mappings()]

    def rule_counts(self, assessment_ids: list[int], chunk: int = 5000) -> dict[tuple[str, str, str], dict[str, int]]:
        """Per rule (id, title, severity) of these assessments: how many results have each status.
        The database counts (a million results come back as a few hundred rows); the ids go in
        chunks so that no statement carries more parameters than a database accepts."""
        from sqlalchemy import func

        counts: dict[tuple[str, str, str], dict[str, int]] = {}
        ids = sorted(set(assessment_ids))
        with self.engine.connect() as conn:
            for start in range(0, len(ids), chunk):
                query = (select(rule_results.c.rule_id, rule_results.c.title, rule_results.c.severity,
                                rule_results.c.status, func.count())
                         .where(rule_results.c.assessment_id.in_(ids[start:start + chunk]))
                         .group_by(rule_results.c.rule_id, rule_results.c.title, rule_results.c.severity,
                                   rule_results.c.status))
                for rule_id, title, severity, status, count in conn.execute(query):
                    per_status = counts.setdefault((rule_id, title, severity), {})
                    per_status[status] = per_status.get(status, 0) + count
        return counts


FAILING = ("fail", "error")


def _follow_failures(conn: Connection, host: str, assessment_id: int, at: datetime,
                     results: list[dict[str, Any]]) -> None:
    """A failing result of a rule with no open failure on the host opens one; a passing result
    closes the open one (not-applicable and excepted results leave it as it is)."""
    open_ids = dict(conn.execute(select(rule_failures.c.rule_id, rule_failures.c.id).where(
        (rule_failures.c.host == host) & rule_failures.c.closed_id.is_(None))).all())
    opened = [dict(host=host, rule_id=r["rule_id"], title=r["title"], severity=r["severity"], opened_id=assessment_id,
                   opened_at=at) for r in results if r["status"] in FAILING and r["rule_id"] not in open_ids]
    closed = [open_ids[r["rule_id"]] for r in results if r["status"] == "pass" and r["rule_id"] in open_ids]
    if opened:
        conn.execute(insert(rule_failures), opened)
    if closed:
        conn.execute(update(rule_failures).where(rule_failures.c.id.in_(closed))
                     .values(closed_id=assessment_id, closed_at=at))
