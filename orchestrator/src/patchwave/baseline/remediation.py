"""Baseline remediation of a fleet: assess, fix the failing rules that declare a remediation
(check mode with a diff first when asked), store what each host did, then reassess to confirm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from patchwave.ansible.runner import PlaybookRunner
from patchwave.baseline.assessment import run_assessment
from patchwave.baseline.profile import Baseline
from patchwave.ids import new_cycle_id
from patchwave.models import Host
from patchwave.paths import Paths
from patchwave.progress import Display, quiet
from patchwave.store import Store

REMEDIATE = "patchwave.endpoint.remediate_baseline"


def fixes_document(baseline: Baseline, assessed: dict[str, Any], batch: str,
                   hosts: list[Host]) -> dict[str, Any]:
    """Per host the failing rules that have a remediation, with their (host-specific) check."""
    out: dict[str, Any] = {"batch": batch, "hosts": {}}
    for host in hosts:
        entry = next((h for h in assessed["hosts"] if h["host"] == host.name), None)
        if entry is None or not entry["ok"]:
            continue
        compiled = {r.id: r for r in baseline.compile(host).rules}
        failing = [r["id"] for r in entry["results"] if r["status"] == "fail"]
        rules = []
        for rid in failing:
            rule = compiled.get(rid)
            if rule is not None and rule.remediation is not None:
                rules.append({"id": rid, "remediation": rule.remediation.model_dump(exclude_none=True),
                              "check": rule.check.model_dump(exclude_none=True)})
        out["hosts"][host.name] = {"rules": rules}
    return out


def run_remediation(paths: Paths, store: Store, inventory: Path, baseline: Baseline, hosts: list[Host],
                    check: bool, display: Display | None = None) -> dict[str, Any]:
    batch = new_cycle_id()
    shown = display or quiet()
    before = run_assessment(paths, store, inventory, baseline, hosts, shown, kind="assess", batch=batch)
    fixes = fixes_document(baseline, before, batch, hosts)
    work = paths.state / "remediations" / batch
    work.mkdir(parents=True, exist_ok=True)
    fixes_file = work / "fixes.json"
    fixes_file.write_text(json.dumps(fixes, indent=1, sort_keys=True) + "\n")
    targets = [h for h in hosts if fixes["hosts"].get(h.name, {}).get("rules")]
    report: dict[str, Any] = {"batch": batch, "baseline": baseline.profile.name, "check_mode": check, "hosts": []}
    outcome: dict[str, dict[str, Any]] = {}
    if targets:
        runner = PlaybookRunner(paths.root, work / "runs", recorder=store, cycle_id=None, observer=shown,
                                retention=paths.retention)
        result = runner.run("remediate.yml", inventory, ident="remediate-check" if check else "remediate",
                            limit=[h.name for h in targets], extravars={"patchwave_fixes_file": str(fixes_file)},
                            check=check, diff=True)
        for host in targets:
            data = result.result(REMEDIATE, host.name)
            status = result.hosts.get(host.name)
            ok = data is not None and not data.get("failed") and (status is None or status.ok)
            message = "" if ok else (status.message if status and status.message else str((data or {}).get("msg", "")))
            payload = {k: (data or {}).get(k) for k in ("results", "diff", "sshd_reloaded", "backup_dir")}
            store.add_remediation(batch, host.name, check, ok, bool((data or {}).get("changed")), message, payload)
            outcome[host.name] = {"ok": ok, "changed": bool((data or {}).get("changed")), "message": message, **payload}
    after = None
    if not check and targets:
        after = run_assessment(paths, store, inventory, baseline, targets, shown, kind="confirm", batch=batch)
    for host in hosts:
        first = next(h for h in before["hosts"] if h["host"] == host.name)
        confirm = next((h for h in after["hosts"] if h["host"] == host.name), None) if after else None
        done = outcome.get(host.name, {"ok": True, "changed": False, "message": "", "results": []})
        report["hosts"].append({
            "host": host.name, "assessed": first["ok"], "ok": done["ok"] and first["ok"],
            "message": done["message"] or first.get("message", ""), "changed": done["changed"],
            "score_before": first.get("score"), "score_after": confirm.get("score") if confirm else None,
            "results": done.get("results") or [], "diff": done.get("diff") or [],
            "still_failing": [r["id"] for r in (confirm or {}).get("results", []) if r["status"] == "fail"],
        })
    return report
