"""The fleet: assets and their discovery events, schedule runs (claimed per slot), agent tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    insert,
    select,
    update,
)

from patchwave.clock import aware, now
from patchwave.states import PATCHED_STATES
from patchwave.store.base import StoreBase, primary_key, runner_alive
from patchwave.store.schema import agent_tokens, assessments, asset_events, assets, end_states, host_results, scans, schedule_runs


class FleetRecords(StoreBase):
    # --- assets and schedules ---------------------------------------------------------------
    def assets(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(assets).order_by(assets.c.host)).mappings()]

    def record_discovery(self, inventory: str, shapes: dict[str, dict[str, Any]], changes: list[dict[str, Any]],
                         at: datetime) -> None:
        """One transaction: the assets as the inventory shows them now, and every change seen."""
        with self.engine.begin() as conn:
            known = {r["host"] for r in conn.execute(select(assets.c.host)).mappings()}
            for name, shape in shapes.items():
                values = {"inventory": inventory, "last_discovered": at, "gone_at": None, **shape}
                if name in known:
                    conn.execute(update(assets).where(assets.c.host == name).values(**values))
                else:
                    conn.execute(insert(assets).values(host=name, first_seen=at, **values))
            for change in changes:
                if change["kind"] == "gone":
                    conn.execute(update(assets).where(assets.c.host == change["host"]).values(gone_at=at))
                conn.execute(insert(asset_events).values(at=at, host=change["host"], kind=change["kind"],
                                                         detail=change["detail"], decision=change["decision"]))

    def asset_events(self, kind: str | None = None, pending: bool = False) -> list[dict[str, Any]]:
        query = select(asset_events).order_by(asset_events.c.id)
        if kind is not None:
            query = query.where(asset_events.c.kind == kind)
        if pending:
            query = query.where(asset_events.c.decision.is_not(None) & asset_events.c.done_at.is_(None))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def finish_asset_event(self, event_id: int, outcome: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(asset_events).where(asset_events.c.id == event_id).values(done_at=now(),
                                                                                          outcome=outcome))

    def last_times(self) -> dict[str, dict[str, datetime]]:
        """Per host: when it last answered (seen), was last scanned, assessed and patched."""
        from sqlalchemy import func, union_all

        out: dict[str, dict[str, datetime]] = {}
        seen = union_all(
            select(scans.c.host, func.max(scans.c.at).label("at")).where(scans.c.ok).group_by(scans.c.host),
            select(assessments.c.host, func.max(assessments.c.at).label("at")).where(assessments.c.ok)
            .group_by(assessments.c.host),
            select(host_results.c.host, func.max(host_results.c.at).label("at"))
            .where(host_results.c.ok | ~host_results.c.unreachable).group_by(host_results.c.host)).subquery()
        queries = {
            "seen": select(seen.c.host, func.max(seen.c.at)).group_by(seen.c.host),
            "scanned": select(scans.c.host, func.max(scans.c.at)).where(scans.c.ok & (scans.c.kind == "scan"))
            .group_by(scans.c.host),
            "assessed": select(assessments.c.host, func.max(assessments.c.at)).where(assessments.c.ok)
            .group_by(assessments.c.host),
            "patched": select(end_states.c.host, func.max(end_states.c.at))
            .where(end_states.c.state.in_(sorted(PATCHED_STATES))).group_by(end_states.c.host),
        }
        with self.engine.connect() as conn:
            for what, query in queries.items():
                for host, stamp in conn.execute(query):
                    if stamp is not None:
                        out.setdefault(host, {})[what] = aware(stamp)
        return out

    def last_slots(self) -> dict[str, datetime]:
        """Per job, the slot of its latest run (whatever became of it)."""
        from sqlalchemy import func

        with self.engine.connect() as conn:
            rows = conn.execute(select(schedule_runs.c.job, func.max(schedule_runs.c.slot))
                                .group_by(schedule_runs.c.job)).all()
        return {job: aware(slot) for job, slot in rows}

    def claim_slot(self, job: str, slot: datetime, runner: str) -> int | None:
        """Record that this process runs the job's slot, unless another run of the job is still
        going or the slot was taken already (the unique (job, slot) pair decides a race). Returns
        the run's id, or None when the job must not run now."""
        from sqlalchemy.exc import IntegrityError

        with self.claiming(schedule_runs) as conn:
            running = conn.execute(select(schedule_runs.c.runner).where(
                (schedule_runs.c.job == job) & (schedule_runs.c.status == "running"))).scalars().all()
            if any(runner_alive(r) for r in running):
                return None
            try:
                return int(primary_key(conn.execute(insert(schedule_runs).values(
                    job=job, slot=slot, started_at=now(), status="running", runner=runner, detail={}))))
            except IntegrityError:
                return None

    def finish_slot(self, run_id: int, status: str, detail: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(schedule_runs).where(schedule_runs.c.id == run_id).values(
                finished_at=now(), status=status, detail=detail))

    def schedule_runs(self, job: str | None = None) -> list[dict[str, Any]]:
        equal: dict[str, Any] = {} if job is None else {"job": job}
        return list(self.rows("schedule_runs", **equal))

    def set_agent_token(self, host: str, token_sha256: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(agent_tokens.delete().where(agent_tokens.c.host == host))
            conn.execute(insert(agent_tokens).values(host=host, token_sha256=token_sha256, created_at=now()))

    def agent_token(self, host: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(agent_tokens.c.token_sha256).where(agent_tokens.c.host == host)).scalar()
        return str(found) if found else None
