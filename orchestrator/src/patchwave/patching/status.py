"""A cycle as the store holds it: waves, approvals, runs, and each host's end state with its packages.
"""

from __future__ import annotations

from typing import Any

from patchwave.errors import InputError
from patchwave.models import Changelog, Decision
from patchwave.states import CycleStatus
from patchwave.store import Store


def package_rows(approved: list[Decision], after: dict[str, str]) -> list[dict[str, Any]]:
    """Per approved package: before, wanted, after (from the rescan) and why it was approved."""
    return [{"name": d.name, "before": d.installed, "wanted": d.version, "after": after.get(d.name),
             "severity": d.severity, "advisories": list(d.advisories), "cves": list(d.cves), "reason": d.reason,
             "sla_due": d.sla_due}
            for d in approved]


def status_report(store: Store, cycle_id: str) -> dict[str, Any]:
    cycle = store.cycle(cycle_id)
    if cycle is None:
        raise InputError(f"no cycle {cycle_id!r} in the store")
    states = store.end_states(cycle_id)
    finish = store.events(cycle_id, "approval" if cycle["status"] == CycleStatus.AWAITING_APPROVAL else "finish")
    logs = store.changelogs(cycle_id)
    return {
        "cycle_id": cycle_id,
        "status": cycle["status"],
        "reason": finish[-1]["message"] if finish else "",
        "created_at": cycle["created_at"],
        "finished_at": cycle["finished_at"],
        "waves": [{"index": w["idx"], "name": w["name"], "hosts": w["hosts"], "status": w["status"],
                   "started_at": w["started_at"], "finished_at": w["finished_at"], "gate": w["gate"]}
                  for w in store.waves(cycle_id)],
        "approvals": [{"wave": a["wave_name"], "approved": a["approved"], "by": a["by"], "at": a["at"],
                       "comment": a["comment"]} for a in store.approvals(cycle_id)],
        "runs": [{"run": r["ident"], "status": r["status"], "hosts": len(r["hosts"]), "seconds": r["seconds"]}
                 for r in store.runs(cycle_id)],
        "hosts": [{"host": h, "state": s["state"], "detail": s["detail"],
                   "packages": [with_changelog(p, logs.get((h, p.get("name", "")))) for p in s["packages"]]}
                  for h, s in sorted(states.items())],
    }


def with_changelog(package: dict[str, Any], log: Changelog | None) -> dict[str, Any]:
    """A package row of an end state with what its staged changelog said, kept apart from the
    advisories' CVEs (`cves`): `changelog_cves` and `changelog_urgency` (empty when the package
    had no changelog, or was never staged)."""
    return {**package, "changelog_urgency": log.urgency if log else None,
            "changelog_cves": list(log.cves) if log else []}
