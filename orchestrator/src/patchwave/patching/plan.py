"""What a cycle would do now, without storing anything or changing a host."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from patchwave.ansible.inventory import load_hosts
from patchwave.ansible.runner import PlaybookRunner
from patchwave.errors import InputError
from patchwave.ids import new_cycle_id
from patchwave.models import Advisory, PendingUpdate
from patchwave.patching import manifest as manifest_mod
from patchwave.patching import waves as waves_mod
from patchwave.patching import windows as windows_mod
from patchwave.patching.policy import Policy
from patchwave.patching.scan import SCAN, updates_from_scan
from patchwave.paths import Paths
from patchwave.progress import Display, quiet


def plan(paths: Paths, inventory: Path, policy: Policy, advisories: list[Advisory],
         display: Display | None = None) -> dict[str, Any]:
    """What a cycle would do now: the manifest and the waves with their windows. Scans without
    refreshing package lists and stores nothing: no host and no record changes."""
    hosts = waves_mod.targeted(load_hosts(inventory), policy.targets)
    if not hosts:
        raise InputError(f"{inventory}: the policy's targets match no host")
    waves_mod.plan(hosts, policy.waves)
    work = paths.state / "plans" / new_cycle_id()
    runner = PlaybookRunner(paths.root, work, observer=display or quiet(), retention=paths.retention)
    scan = runner.run("scan.yml", inventory, ident="scan", limit=[h.name for h in hosts],
                      extravars={"scan_update_cache": False})
    updates: list[PendingUpdate] = []
    unscanned = []
    for host in hosts:
        res = scan.result(SCAN, host.name)
        if res is None or res.get("failed"):
            unscanned.append(host.name)
        else:
            updates.extend(updates_from_scan(host.name, res))
    manifest = manifest_mod.build("plan", updates, advisories, policy.approval, sla_days=policy.sla_days)
    with_packages = [h for h in hosts if h.name in manifest.hosts_with_packages()]
    now = datetime.now(UTC)
    planned = []
    for wave in waves_mod.plan(with_packages, policy.waves):
        members = [h for h in hosts if h.name in wave.hosts]
        governing = windows_mod.governing(policy.windows, members)
        minutes = next(s.duration_minutes for s in policy.waves if s.name == wave.name)
        opening = windows_mod.next_start(governing, now, minutes)
        planned.append({"index": wave.index, "name": wave.name, "hosts": list(wave.hosts),
                        "window_open_now": opening == now,
                        "next_opening": windows_mod.describe(governing, opening) if opening != now else "now"})
    return {
        "policy": policy.name,
        "hosts": [h.name for h in hosts],
        "unscanned": unscanned,
        "decisions": [{"host": d.host, "name": d.name, "installed": d.installed, "version": d.version,
                       "ecosystem": d.ecosystem, "approved": d.approved, "reason": d.reason, "severity": d.severity,
                       "advisories": list(d.advisories), "sla_due": d.sla_due} for d in manifest.decisions],
        "waves": planned,
    }
