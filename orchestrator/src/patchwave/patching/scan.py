"""Scan: pending updates per host, each result stored (a failed scan with why) before anyone acts on
it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patchwave.ansible.inventory import load_hosts
from patchwave.ansible.runner import Runner
from patchwave.ids import new_cycle_id
from patchwave.models import Host, PendingUpdate
from patchwave.patching.runs import playbook_runner
from patchwave.paths import Paths
from patchwave.progress import Display, quiet
from patchwave.store import Store

SCAN = "patchwave.endpoint.pending_updates"


def scan_ecosystem(result: dict[str, Any]) -> str:
    """The OSV ecosystem a scan gives for its host (pending_updates' `os.ecosystem`, from the
    host's os-release); '' when it gives none, as scans from before it did."""
    release = result.get("os")
    found = release.get("ecosystem") if isinstance(release, dict) else None
    return found if isinstance(found, str) and len(found) <= 64 and found.isprintable() else ""


def updates_from_scan(host: str, result: dict[str, Any]) -> list[PendingUpdate]:
    ecosystem = scan_ecosystem(result)
    return [
        PendingUpdate(
            host=host, name=u["name"], installed=u.get("installed"), candidate=u["candidate"],
            source=u.get("source") or u["name"], security=bool(u.get("security")), held=bool(u.get("held")),
            new_install=bool(u.get("new_install")),
            suites=tuple(o.get("suite", "") for o in u.get("origins", [])),
            required_by=tuple(u.get("required_by", [])),
            ecosystem=ecosystem,
        )
        for u in result.get("updates", [])
    ]


def scan_hosts(store: Store, runner: Runner, inventory: Path, hosts: list[Host],
               cycle_id: str | None, links: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Scan `hosts` and store every result (a failed scan with why) before returning them;
    `links` are the thin links (download limit, relay) of the hosts behind one."""
    scan = runner.run("scan.yml", inventory, ident=f"01-scan-{new_cycle_id()}", limit=[h.name for h in hosts],
                      extravars={"patchwave_thin_links": links} if links else None)
    results = []
    for host in hosts:
        res = scan.result(SCAN, host.name)
        outcome = scan.hosts.get(host.name)
        ok = res is not None and not res.get("failed") and (outcome is None or outcome.ok)
        found = updates_from_scan(host.name, res) if ok and res else []
        if not ok:
            res = {**(res or {}), "msg": outcome.message if outcome else "no scan result",
                   "unreachable": bool(outcome and outcome.unreachable)}
        store.add_scan(cycle_id, host.name, "scan", ok, res or {}, found)
        results.append({"host": host.name, "ok": ok, "result": res or {}, "updates": found})
    return results


def scan_only(paths: Paths, store: Store, inventory: Path, display: Display | None = None,
              hosts: list[Host] | None = None, links: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """A scan outside any cycle (of every host, or `hosts`): stored (history for trends), nothing
    approved or installed. `links`: the thin links of hosts behind one (a schedule's)."""
    runner = playbook_runner(paths, store, display or quiet(), paths.state / "scans", None)
    report = []
    for entry in scan_hosts(store, runner, inventory, hosts if hosts is not None else load_hosts(inventory), None,
                            links):
        res = entry["result"]
        report.append({
            "host": entry["host"], "ok": entry["ok"], "unreachable": bool(res.get("unreachable")),
            "message": "" if entry["ok"] else str(res.get("msg", "")),
            "updates": [{"name": u.name, "installed": u.installed, "candidate": u.candidate, "security": u.security,
                         "held": u.held, "new_install": u.new_install} for u in entry["updates"]],
            "reboot_required": bool(entry["ok"] and res.get("reboot_required", {}).get("required")),
        })
    return report
