"""Baseline assessment of a fleet: compile each host's rules, run the assess playbook once,
store every rule result with its evidence, score with and without exceptions, and compare
with the host's previous assessment (drift). Remediation lives in remediation.py."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from patchwave.ansible.inventory import load_hosts
from patchwave.ansible.runner import PlaybookRunner
from patchwave.baseline.drift import drift
from patchwave.baseline.exceptions import exception_in_force
from patchwave.baseline.profile import Baseline, Compiled
from patchwave.errors import InputError
from patchwave.ids import new_cycle_id
from patchwave.models import Host
from patchwave.paths import Paths
from patchwave.progress import Display, quiet
from patchwave.store import Store

ASSESS = "patchwave.endpoint.assess_baseline"


def select_hosts(inventory: Path, limit: list[str] | None) -> list[Host]:
    hosts = load_hosts(inventory)
    if not limit:
        return hosts
    names = {h.name for h in hosts}
    unknown = sorted(set(limit) - names)
    if unknown:
        raise InputError(f"--limit: unknown host(s) {', '.join(unknown)}; the inventory has {', '.join(sorted(names))}")
    return [h for h in hosts if h.name in limit]


def compile_rules(baseline: Baseline, hosts: list[Host]) -> dict[str, Compiled]:
    return {h.name: baseline.compile(h) for h in hosts}


def rules_document(compiled: dict[str, Compiled]) -> dict[str, Any]:
    """What playbooks/assess.yml reads: per host the rules for assess_baseline."""
    return {"hosts": {name: {"rules": c.module_rules(), "disabled": c.disabled} for name, c in sorted(compiled.items())}}


def scores(counts: dict[str, int]) -> tuple[float | None, float | None]:
    """(% passing without exceptions, % with excepted rules counted as passing) of the
    applicable rules; None when no rule applied."""
    applicable = sum(counts.get(s, 0) for s in ("pass", "fail", "error", "excepted"))
    if not applicable:
        return None, None
    passed = counts.get("pass", 0)
    return round(100 * passed / applicable, 1), round(100 * (passed + counts.get("excepted", 0)) / applicable, 1)


def confirm_exceptions(results: list[dict[str, Any]], compiled: Compiled, today: date) -> list[dict[str, Any]]:
    """The host's results with every `excepted` checked against the register: the exception
    must be the one Patchwave attached to that rule for this host and still be in force today
    (through its expiry date, lapsed from the next day). A host whose clock is behind, or an
    agent that claims an exception, does not keep a failure excepted; it counts as failing
    again, with the exception shown as expired."""
    out = []
    for result in results:
        granted = compiled.exceptions.get(str(result.get("id")))
        claimed = result.get("exception")
        note, expired = "", None
        if result.get("status") == "excepted":
            if granted is None or granted.id != claimed:
                note = f"the host reported exception {claimed}, which the register does not grant here"
            elif not exception_in_force(granted, today):
                note, expired = f"exception {granted.id} expired on {granted.expires}", granted.id
        if not note:
            out.append(result)
            continue
        lapsed = {k: v for k, v in result.items() if k != "exception"}
        lapsed.update(status="fail", evidence={**(result.get("evidence") or {}), "note": note})
        if expired:
            lapsed["exception_expired"] = expired
        out.append(lapsed)
    return out


def record_result(store: Store, batch: str, host: str, baseline_name: str, compiled: Compiled, kind: str,
                  data: dict[str, Any] | None, unreachable: bool = False, message: str = "") -> dict[str, Any]:
    """Store one host's assess_baseline result (or its failure, when `message`) with scores and
    drift; the same for results fetched over SSH and results an agent delivered."""
    if message or data is None:
        store.add_assessment(batch, host, baseline_name, kind, False, unreachable, message or "no result", {},
                             (None, None), None, None, [])
        return {"host": host, "ok": False, "unreachable": unreachable, "message": message or "no result"}
    rules = {r.id: r for r in compiled.rules}
    results = [dict(r, title=rules[r["id"]].title, severity=rules[r["id"]].severity,
                    criticality=rules[r["id"]].criticality) for r in data.get("results", []) if r.get("id") in rules]
    results = confirm_exceptions(results, compiled, date.today())
    results += [{"id": d["id"], "status": "not_applicable", "title": d["id"], "severity": "info",
                 "criticality": "normal", "evidence": {"reason": f"disabled at {d['layer']}: {d['reason']}"},
                 "duration": 0.0} for d in compiled.disabled]
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("pass", "fail", "error", "not_applicable", "excepted")}
    snapshot = data.get("snapshot") or {}
    previous = store.last_assessment(host)
    changes = drift(previous, results, snapshot, rules)
    score, score_with = scores(counts)
    summary = {**counts, "total": len(results), "facts": data.get("summary", {}).get("facts", {}),
               "duration": data.get("summary", {}).get("duration")}
    assessment_id = store.add_assessment(batch, host, baseline_name, kind, True, False, "", summary,
                                         (score, score_with), snapshot, changes, results)
    return {"host": host, "ok": True, "unreachable": False, "message": "", "assessment": assessment_id,
            "summary": summary, "score": score, "score_with_exceptions": score_with, "drift": changes,
            "results": [{k: r.get(k) for k in ("id", "status", "title", "severity", "evidence", "exception",
                                               "duration")}
                        | ({"exception_expired": r["exception_expired"]} if r.get("exception_expired") else {})
                        for r in results]}


def run_assessment(paths: Paths, store: Store, inventory: Path, baseline: Baseline, hosts: list[Host],
                   display: Display | None = None, kind: str = "assess", batch: str | None = None) -> dict[str, Any]:
    """Assess `hosts`; every host's result is stored before the report is returned."""
    compiled = compile_rules(baseline, hosts)
    batch = batch or new_cycle_id()
    work = paths.state / "assessments" / batch
    work.mkdir(parents=True, exist_ok=True)
    rules_file = work / "rules.json"
    rules_file.write_text(json.dumps(rules_document(compiled), indent=1, sort_keys=True) + "\n")
    runner = PlaybookRunner(paths.root, work / "runs", recorder=store, cycle_id=None, observer=display or quiet(),
                            retention=paths.retention)
    result = runner.run("assess.yml", inventory, ident=f"assess-{kind}", limit=[h.name for h in hosts],
                        extravars={"patchwave_rules_file": str(rules_file)})
    report = []
    for host in hosts:
        data = result.result(ASSESS, host.name)
        outcome = result.hosts.get(host.name)
        unreachable = bool(outcome and outcome.unreachable)
        message = ""
        if data is None or data.get("failed") or (outcome is not None and not outcome.ok):
            message = (outcome.message if outcome and outcome.message else str((data or {}).get("msg", "")))
            message = message or "no result from the host"
        report.append(record_result(store, batch, host.name, baseline.profile.name, compiled[host.name], kind, data,
                                    unreachable, message))
    return {"batch": batch, "baseline": baseline.profile.name, "hosts": report}
