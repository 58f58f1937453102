"""Playbook runs and their task events (what ansible-runner reported, per host)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    insert,
    select,
    update,
)

from patchwave.clock import now
from patchwave.store.base import StoreBase, primary_key
from patchwave.store.schema import runs, task_events


class RunRecords(StoreBase):
    def start_run(self, cycle_id: str | None, ident: str, playbook: str, hosts: list[str]) -> int:
        with self.engine.begin() as conn:
            return int(primary_key(conn.execute(insert(runs).values(
                cycle_id=cycle_id, ident=ident, playbook=playbook, hosts=hosts, started_at=now(), status="running"))))

    def add_task_event(self, run_id: int, host: str, task: str, action: str, kind: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(task_events).values(run_id=run_id, at=now(), host=host, task=task, action=action,
                                                    kind=kind, message=message[:2000]))

    def finish_run(self, run_id: int, status: str, rc: int, seconds: float, handler_seconds: float = 0.0) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(
                finished_at=now(), seconds=seconds, handler_seconds=handler_seconds, status=status, rc=rc))

    def runs(self, cycle_id: str | None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(runs).where(runs.c.cycle_id == cycle_id)
                                                  .order_by(runs.c.id)).mappings()]

    def task_events(self, run_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(task_events).where(task_events.c.run_id == run_id)
                                                  .order_by(task_events.c.id)).mappings()]
