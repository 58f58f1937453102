"""Patch cycles: the cycle, its lock, scans, the manifest's decisions, waves, host results, end states,
approvals and the event log.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, insert, select, update
from sqlalchemy.engine import Connection

from patchwave.ansible.procs import alive
from patchwave.clock import aware, now
from patchwave.errors import PatchwaveError
from patchwave.models import Changelog, Decision, Manifest, PendingUpdate
from patchwave.states import CycleStatus, HostState, WaveStatus, cycle_sources, wave_sources
from patchwave.store.base import LOCK_LEASE, StoreBase, primary_key
from patchwave.store.schema import (
    approvals,
    changelogs,
    cycle_locks,
    cycles,
    decisions,
    end_states,
    events,
    host_results,
    pending,
    scans,
    waves,
)


class CycleRecords(StoreBase):
    # --- writes ---------------------------------------------------------------------------
    def create_cycle(self, cycle_id: str, inventory: str, policy: dict[str, Any],
                     options: dict[str, Any] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(cycles).values(id=cycle_id, created_at=now(), status=CycleStatus.STARTED,
                                               inventory=inventory, policy=policy, options=options or {}))

    def lock(self, cycle_id: str, lease: timedelta = LOCK_LEASE) -> None:
        """Take the cycle's lock, or fail naming who holds it. The database decides a race: the
        insert of a free lock, or the takeover of a stale one (its process gone on this machine,
        or its lease run out), is a single statement whose row count says who won. While held,
        a thread renews the lease; `unlock` ends both."""
        import os
        import secrets
        import socket

        from sqlalchemy.exc import IntegrityError

        holder = secrets.token_hex(16)
        stamp = now()
        me = {"cycle_id": cycle_id, "pid": os.getpid(), "hostname": socket.gethostname(), "acquired_at": stamp,
              "holder": holder, "lease_until": stamp + lease}
        for _attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(cycle_locks).values(**me))
                self._keep_lock(cycle_id, holder, lease)
                return
            except IntegrityError:
                pass
            with self.engine.connect() as conn:
                held = conn.execute(select(cycle_locks).where(cycle_locks.c.cycle_id == cycle_id)).mappings().first()
            if held is None:
                continue
            lease_until = aware(held["lease_until"])
            gone = held["hostname"] == me["hostname"] and not alive(int(held["pid"]))
            expired = lease_until is not None and lease_until < now()
            if not (gone or expired):
                raise PatchwaveError(f"cycle {cycle_id} is being driven by pid {held['pid']} on {held['hostname']} "
                                     f"since {held['acquired_at']}; wait for it, or stop it first")
            # take over exactly the stale lock that was read: if another process took it over
            # first, this matches no row and the next attempt reads the new holder
            with self.engine.begin() as conn:
                taken = conn.execute(update(cycle_locks).where(
                    (cycle_locks.c.cycle_id == cycle_id) & (cycle_locks.c.holder == held["holder"])
                    & (cycle_locks.c.pid == held["pid"]) & (cycle_locks.c.hostname == held["hostname"]))
                    .values(**{k: v for k, v in me.items() if k != "cycle_id"})).rowcount
            if taken == 1:
                self._keep_lock(cycle_id, holder, lease)
                why = "which is gone" if gone else f"whose lease ran out at {lease_until}"
                self.log(cycle_id, "lock", f"took over the lock of pid {held['pid']} on {held['hostname']}, {why}")
                return
        raise PatchwaveError(f"cannot take the lock of cycle {cycle_id}: another orchestrator took it first")

    def _keep_lock(self, cycle_id: str, holder: str, lease: timedelta) -> None:
        """Renew the lease every third of its length until unlock (or until the lock is lost)."""
        stop = threading.Event()

        def renew() -> None:
            from sqlalchemy.exc import SQLAlchemyError

            while not stop.wait(lease.total_seconds() / 3):
                try:
                    with self.engine.begin() as conn:
                        kept = conn.execute(update(cycle_locks).where(
                            (cycle_locks.c.cycle_id == cycle_id) & (cycle_locks.c.holder == holder))
                            .values(lease_until=now() + lease)).rowcount
                except SQLAlchemyError:
                    continue  # a busy or briefly unreachable store: the next renewal tries again, in time
                if kept != 1:
                    self.log(cycle_id, "lock", "this orchestrator lost the cycle's lock (its lease was taken over)")
                    return

        self._held[cycle_id] = (holder, stop)
        threading.Thread(target=renew, name=f"lease-{cycle_id}", daemon=True).start()

    def holds_lock(self, cycle_id: str) -> bool:
        held = self._held.get(cycle_id)
        if held is None:
            return False
        with self.engine.connect() as conn:
            return conn.execute(select(cycle_locks.c.holder).where(cycle_locks.c.cycle_id == cycle_id)).scalar() \
                == held[0]

    def unlock(self, cycle_id: str) -> None:
        held = self._held.pop(cycle_id, None)
        if held is None:
            return
        holder, stop = held
        stop.set()
        with self.engine.begin() as conn:
            conn.execute(cycle_locks.delete().where((cycle_locks.c.cycle_id == cycle_id)
                                                    & (cycle_locks.c.holder == holder)))

    def set_cycle_status(self, cycle_id: str, status: CycleStatus, finished: bool = False) -> None:
        """Move the cycle to `status`; a move the state table does not allow is refused (and
        nothing is written), decided by the database in the same statement."""
        values: dict[str, Any] = {"status": CycleStatus(status)}
        if finished:
            values["finished_at"] = now()
        with self.engine.begin() as conn:
            _move(conn, cycles, cycles.c.id == cycle_id, cycle_sources(CycleStatus(status)), values, f"cycle {cycle_id}")

    def log(self, cycle_id: str | None, kind: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(events).values(cycle_id=cycle_id, at=now(), kind=kind, message=message))

    def add_scan(self, cycle_id: str | None, host: str, kind: str, ok: bool, result: dict[str, Any],
                 updates: list[PendingUpdate]) -> int:
        with self.engine.begin() as conn:
            inserted = conn.execute(insert(scans).values(
                cycle_id=cycle_id, host=host, kind=kind, at=now(), ok=ok, result=result))
            scan_id = int(primary_key(inserted))
            if updates:
                conn.execute(insert(pending), [
                    dict(scan_id=scan_id, host=u.host, name=u.name, installed=u.installed, candidate=u.candidate,
                         source=u.source, security=u.security, held=u.held, new_install=u.new_install,
                         ecosystem=u.ecosystem)
                    for u in updates])
        return scan_id

    def save_manifest(self, manifest: Manifest) -> None:
        with self.engine.begin() as conn:
            _move(conn, cycles, cycles.c.id == manifest.cycle_id, cycle_sources(CycleStatus.APPROVED),
                  {"manifest": manifest.as_playbook_vars(), "status": CycleStatus.APPROVED}, f"cycle {manifest.cycle_id}")
            if manifest.decisions:
                conn.execute(insert(decisions), [
                    dict(cycle_id=manifest.cycle_id, host=d.host, name=d.name, installed=d.installed,
                         version=d.version, approved=d.approved, reason=d.reason,
                         advisories=list(d.advisories), severity=d.severity, cves=list(d.cves),
                         published=d.published, sla_due=d.sla_due, ecosystem=d.ecosystem)
                    for d in manifest.decisions])

    def add_changelogs(self, cycle_id: str, found: list[Changelog]) -> None:
        """What the changelogs of a host's staged packages say, appended (a host staged again
        gets new rows; the latest wins)."""
        if not found:
            return
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(insert(changelogs), [
                dict(cycle_id=cycle_id, host=c.host, name=c.name, version=c.version, at=stamp, urgency=c.urgency,
                     cves=list(c.cves), versions=list(c.versions))
                for c in found])

    def plan_waves(self, cycle_id: str, planned: list[tuple[int, str, list[str]]]) -> None:
        """Record every wave, pending, before the first one starts (resume replays this plan)."""
        with self.engine.begin() as conn:
            for idx, name, hosts in planned:
                conn.execute(insert(waves).values(cycle_id=cycle_id, idx=idx, name=name, hosts=hosts,
                                                  status=WaveStatus.PENDING))

    def start_wave(self, cycle_id: str, idx: int, name: str, hosts: list[str]) -> int:
        """Mark a planned wave running (or record a new one) and return its id."""
        with self.engine.begin() as conn:
            row = conn.execute(select(waves.c.id).where((waves.c.cycle_id == cycle_id) & (waves.c.idx == idx))).first()
            if row is not None:
                _move(conn, waves, waves.c.id == row[0], wave_sources(WaveStatus.RUNNING),
                      {"status": WaveStatus.RUNNING, "started_at": now()}, f"wave {name} of cycle {cycle_id}")
                return int(row[0])
            inserted = conn.execute(insert(waves).values(
                cycle_id=cycle_id, idx=idx, name=name, hosts=hosts, status=WaveStatus.RUNNING, started_at=now()))
            return int(primary_key(inserted))

    def set_wave_status(self, wave_id: int, status: WaveStatus, gate: dict[str, Any] | None = None) -> None:
        """A wave that is not over yet: awaiting-approval, soaking."""
        values: dict[str, Any] = {"status": WaveStatus(status)}
        if gate is not None:
            values["gate"] = gate
        with self.engine.begin() as conn:
            _move(conn, waves, waves.c.id == wave_id, wave_sources(WaveStatus(status)), values, f"wave {wave_id}")

    def finish_wave(self, wave_id: int, status: WaveStatus, gate: dict[str, Any]) -> None:
        if not WaveStatus(status).final:
            raise PatchwaveError(f"wave {wave_id}: {status} is not a status a wave ends in")
        with self.engine.begin() as conn:
            _move(conn, waves, waves.c.id == wave_id, wave_sources(WaveStatus(status)),
                  {"status": WaveStatus(status), "finished_at": now(), "gate": gate}, f"wave {wave_id}")

    def add_host_result(self, cycle_id: str, host: str, stage: str, ok: bool, unreachable: bool, message: str,
                        data: dict[str, Any], wave: int | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(host_results).values(
                cycle_id=cycle_id, host=host, stage=stage, wave=wave, at=now(), ok=ok,
                unreachable=unreachable, message=message, data=json.loads(json.dumps(data, default=str))))

    def add_end_state(self, cycle_id: str, host: str, state: HostState, packages: list[dict[str, Any]],
                      detail: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(end_states).values(cycle_id=cycle_id, host=host, at=now(), state=HostState(state),
                                                   packages=packages, detail=detail))

    def add_approval(self, cycle_id: str, wave: int, wave_name: str, approved: bool, by: str, comment: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(approvals).values(cycle_id=cycle_id, wave=wave, wave_name=wave_name,
                                                  approved=approved, by=by, at=now(), comment=comment))

    # --- reads ----------------------------------------------------------------------------
    def latest_cycle_id(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(cycles.c.id).order_by(cycles.c.created_at.desc()).limit(1)).scalar()

    def cycle(self, cycle_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(cycles).where(cycles.c.id == cycle_id)).mappings().first()
            return dict(row) if row else None

    def decisions(self, cycle_id: str) -> list[Decision]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(decisions).where(decisions.c.cycle_id == cycle_id)
                                .order_by(decisions.c.host, decisions.c.name)).mappings().all()
        return [Decision(host=r["host"], name=r["name"], installed=r["installed"], version=r["version"],
                         approved=r["approved"], reason=r["reason"], advisories=tuple(r["advisories"]),
                         severity=r["severity"], cves=tuple(r["cves"] or ()), published=r["published"] or "",
                         sla_due=r["sla_due"] or "", ecosystem=r["ecosystem"] or "")
                for r in rows]

    def changelogs(self, cycle_id: str) -> dict[tuple[str, str], Changelog]:
        """(host, package) -> what the staged package's changelog said (the latest staging wins)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(changelogs).where(changelogs.c.cycle_id == cycle_id)
                                .order_by(changelogs.c.id)).mappings().all()
        return {(r["host"], r["name"]): Changelog(host=r["host"], name=r["name"], version=r["version"],
                                                 urgency=r["urgency"], cves=tuple(r["cves"] or ()),
                                                 versions=tuple(r["versions"] or ()))
                for r in rows}

    def waves(self, cycle_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(waves).where(waves.c.cycle_id == cycle_id)
                                                  .order_by(waves.c.idx, waves.c.id)).mappings()]

    def end_states(self, cycle_id: str) -> dict[str, dict[str, Any]]:
        """The latest end state per host (later rows win: history is kept, not overwritten)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(end_states).where(end_states.c.cycle_id == cycle_id)
                                .order_by(end_states.c.id)).mappings().all()
        return {r["host"]: dict(r) for r in rows}

    def events(self, cycle_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        query = select(events).where(events.c.cycle_id == cycle_id)
        if kind is not None:
            query = query.where(events.c.kind == kind)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(events.c.id)).mappings()]

    def scans(self, cycle_id: str, kind: str) -> list[dict[str, Any]]:
        """The latest scan of each host of the cycle, of one kind (scan or confirm)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(scans).where((scans.c.cycle_id == cycle_id) & (scans.c.kind == kind))
                                .order_by(scans.c.id)).mappings().all()
        return list({r["host"]: dict(r) for r in rows}.values())

    def latest_results(self, cycle_id: str, stage: str) -> dict[str, dict[str, Any]]:
        """The latest result of each host for one stage (later rows win; history stays)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(host_results).where((host_results.c.cycle_id == cycle_id)
                                                           & (host_results.c.stage == stage))
                                .order_by(host_results.c.id)).mappings().all()
        return {r["host"]: dict(r) for r in rows}

    def deploy_failures(self, cycle_id: str) -> dict[str, str]:
        """{host: why} for the hosts whose own deploy or health check failed last in the cycle."""
        return {h: r["message"] for stage in ("deploy", "health")
                for h, r in self.latest_results(cycle_id, stage).items() if not r["ok"]}

    def host_results(self, cycle_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(host_results).where(host_results.c.cycle_id == cycle_id)
                                                  .order_by(host_results.c.id)).mappings()]

    def approvals(self, cycle_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(approvals).where(approvals.c.cycle_id == cycle_id)
                                                  .order_by(approvals.c.id)).mappings()]


def _move(conn: Connection, table: Table, which: ColumnElement[bool], sources: frozenset[str], values: dict[str, Any],
          what: str) -> None:
    """Update one row's status (and `values`) only if it is in one of `sources` now: the check and
    the write are one statement, so two writers cannot both move it from the same status."""
    moved = conn.execute(update(table).where(which & table.c.status.in_(sorted(sources))).values(**values)).rowcount
    if moved != 1:
        current = conn.execute(select(table.c.status).where(which)).scalar()
        if current is None:
            raise PatchwaveError(f"{what}: not in the store")
        raise PatchwaveError(f"{what}: cannot move from {current} to {values['status']}")
