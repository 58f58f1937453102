"""Asset revisits and freshness. Discovery reads the inventory (static files or dynamic inventory
plugins, through ansible-inventory) and compares it with what the store knows: hosts new, gone,
back, or with changed groups, device type or owner — each recorded with its time. A new host
gets the new-device policy of its groups (observe, remediate-now, patch-now, next-cycle), and that
decision is recorded too. Freshness says per host when it was last seen, scanned, assessed and
patched, and which hosts are overdue for their schedule or were never assessed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from patchwave.ansible.inventory import load_hosts
from patchwave.clock import aware
from patchwave.fleet.schedule import Schedule
from patchwave.models import Host
from patchwave.store import Store


def _shape(host: Host) -> dict[str, Any]:
    return {"groups": sorted(host.groups), "device_type": host.device_type, "owner": host.owner}


def discover(store: Store, inventory: Path, schedule: Schedule | None = None,
             now: datetime | None = None) -> dict[str, Any]:
    """Compare the inventory with the store's assets; record and return what changed. New hosts
    get their new-device decision (recorded; `act_on_new` carries it out)."""
    stamp = now or datetime.now(UTC)
    hosts = {h.name: h for h in load_hosts(inventory)}
    known = {a["host"]: a for a in store.assets()}
    changes: list[dict[str, Any]] = []
    for name, host in sorted(hosts.items()):
        shape = _shape(host)
        before = known.get(name)
        if before is None:
            action = schedule.new_devices.action(host.groups) if schedule else "observe"
            changes.append({"host": name, "kind": "new", "detail": shape, "decision": action})
        elif before["gone_at"] is not None:
            changes.append({"host": name, "kind": "returned", "detail": shape, "decision": None})
        else:
            old = {"groups": sorted(before["groups"] or []), "device_type": before["device_type"],
                   "owner": before["owner"]}
            diff = {k: {"from": old[k], "to": shape[k]} for k in shape if old[k] != shape[k]}
            if diff:
                changes.append({"host": name, "kind": "changed", "detail": diff, "decision": None})
    for name, before in sorted(known.items()):
        if name not in hosts and before["gone_at"] is None:
            changes.append({"host": name, "kind": "gone", "detail": {}, "decision": None})
    store.record_discovery(str(inventory), {n: _shape(h) for n, h in hosts.items()}, changes, stamp)
    return {"inventory": str(inventory), "at": stamp.isoformat(), "hosts": len(hosts), "changes": changes}


def freshness(store: Store, inventory: Path, schedule: Schedule | None = None,
              now: datetime | None = None) -> list[dict[str, Any]]:
    """Per host of the inventory: last seen / scanned / assessed / patched, and what it is overdue
    for (a job covering it whose period, times the schedule's overdue factor, has passed since
    the host's last success of that kind; never done counts as overdue)."""
    stamp = now or datetime.now(UTC)
    seen = store.last_times()
    rows = []
    for host in load_hosts(inventory):
        times = seen.get(host.name, {})
        overdue: list[str] = []
        if schedule is not None:
            for job in schedule.jobs:
                if job.kind not in ("scan", "assess") or not job.covers(host.groups, host.device_type):
                    continue
                last = times.get("scanned" if job.kind == "scan" else "assessed")
                limit = timedelta(seconds=job.period() * schedule.overdue_factor)
                if last is None or stamp - aware(last) > limit:
                    overdue.append(job.name)
        rows.append({"host": host.name, "groups": list(host.groups), "device_type": host.device_type,
                     "owner": host.owner, "last_seen": times.get("seen"), "last_scanned": times.get("scanned"),
                     "last_assessed": times.get("assessed"), "last_patched": times.get("patched"),
                     "never_assessed": times.get("assessed") is None, "overdue": overdue})
    return rows
