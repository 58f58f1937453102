"""Events from what the store holds: after a cycle, an assessment, a remediation, and the
periodic digests. Each is derived from stored results (never from memory alone) with a key that
names it for good, so deriving again — after a crash, a resume, a second run — queues nothing new."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from patchwave.notify.config import TICKET_TYPES
from patchwave.notify.outbox import Event, Notifier
from patchwave.states import FAILED_STATES, HOST_FAILED_STATES, PATCHED_STATES, CycleStatus, HostState, WaveStatus

RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "unknown": 4, "": 5}


def _worst(severities: list[str], default: str = "high") -> str:
    present = [s for s in severities if s]
    return min(present, key=lambda s: RANK.get(s, 5)) if present else default


def after_cycle(notifier: Notifier, cycle_id: str) -> int:
    """patch_failed (and its ticket) per host that itself failed, gate_halted per wave whose gate
    failed, rollback_done when hosts were rolled back (on demand, or automatically after a failed
    gate), cycle_completed; tickets of hosts this cycle patched are closed (the confirming scan
    passed). Hosts the rollout never reached get no ticket of their own: the gate's alert names them."""
    store = notifier.store
    cycle = store.cycle(cycle_id)
    if cycle is None or cycle["finished_at"] is None:
        return 0  # still running, or waiting for an approval: nothing final to say yet
    added = 0
    states = store.end_states(cycle_id)
    # hosts whose own deploy or health check failed: a rolled-back one among them failed too
    own_failures = store.deploy_failures(cycle_id)
    for host, state in sorted(states.items()):
        packages = state["packages"] or []
        end = HostState(state["state"])
        if end in HOST_FAILED_STATES or (end is HostState.ROLLED_BACK and host in own_failures):
            missing = [p["name"] for p in packages if p.get("after") != p.get("wanted")]
            detail = state["detail"] if end is not HostState.ROLLED_BACK else (
                f"{own_failures[host]}; rolled back: {state['detail']}")
            text = (f"Host {host} ended patch cycle {cycle_id} {end}.\n{detail}\n"
                    f"Not installed: {', '.join(missing) or 'none'}")
            added += notifier.emit(Event("patch_failed", f"patch_failed|{cycle_id}|{host}",
                                         _worst([p.get("severity", "") for p in packages]),
                                         f"{host}: patch cycle {cycle_id} {end}", text, (host,),
                                         {"cycle": cycle_id, "state": str(end), "missing": missing},
                                         ("patch", host, cycle_id)))
        elif end in PATCHED_STATES:
            for ticket in store.tickets(kind="patch", host=host):
                if ticket["subject"] != cycle_id:
                    added += notifier.ticket_progress(
                        "patch", host, ticket["subject"], f"patched|{cycle_id}|{host}",
                        f"Cycle {cycle_id} patched {host}: its confirming scan shows every approved fix installed "
                        f"({end}).", resolved=True)
    every = tuple(sorted(states))
    for wave in store.waves(cycle_id):
        if wave["status"] == WaveStatus.FAILED:
            gate = wave["gate"] or {}
            stopped = sorted({h for w in store.waves(cycle_id) if w["status"] == WaveStatus.SKIPPED for h in w["hosts"]})
            added += notifier.emit(Event(
                "gate_halted", f"gate_halted|{cycle_id}|{wave['idx']}", "high",
                f"cycle {cycle_id}: wave {wave['name']} halted",
                f"The gate of wave {wave['name']} stopped cycle {cycle_id}: {gate.get('reason', '')}\n"
                f"Failed hosts: {', '.join(gate.get('failed', [])) or 'none'}\n"
                f"Not reached (their waves never started): {', '.join(stopped) or 'none'}", tuple(wave["hosts"]),
                {"cycle": cycle_id, "wave": wave["name"], "gate": gate, "not_reached": stopped}))
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state["state"]] = counts.get(state["state"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no hosts"
    rolled = store.latest_results(cycle_id, "rollback")
    if cycle["status"] == CycleStatus.ROLLED_BACK or rolled:
        back = sorted(h for h, r in rolled.items() if r["ok"])
        failed_back = sorted(h for h, r in rolled.items() if not r["ok"])
        added += notifier.emit(Event("rollback_done", f"rollback_done|{cycle_id}|{cycle['status']}", "high",
                                     f"cycle {cycle_id}: rollback {cycle['status']}",
                                     f"Rollback in cycle {cycle_id} ({cycle['status']}): rolled back "
                                     f"{', '.join(back) or 'none'}"
                                     + (f"; rollback FAILED on {', '.join(failed_back)}" if failed_back else "")
                                     + f"\nHosts: {summary}", tuple(sorted(rolled)) or every,
                                     {"cycle": cycle_id, "status": cycle["status"], "states": counts,
                                      "rolled_back": back, "rollback_failed": failed_back}))
    failed = sum(n for s, n in counts.items() if s in FAILED_STATES)
    added += notifier.emit(Event("cycle_completed", f"cycle_completed|{cycle_id}|{cycle['status']}",
                                 "high" if failed or cycle["status"] != CycleStatus.COMPLETED else "low",
                                 f"cycle {cycle_id} {cycle['status']}: {summary}",
                                 f"Patch cycle {cycle_id} finished {cycle['status']}.\nHosts: {summary}",
                                 every, {"cycle": cycle_id, "status": cycle["status"], "states": counts}))
    return added


def after_assessment(notifier: Notifier, batch: str, kind: str | None = None) -> int:
    """critical_drift at once; rule_failed for each failing rule (a message when it is newly
    failing; a ticket, or a check that its ticket is still open, every time); tickets of rules
    that now pass (or are excepted, or no longer apply) close with the evidence."""
    store = notifier.store
    added = 0
    for assessment in store.assessments(batch):
        if kind is not None and assessment["kind"] != kind:
            continue
        if not assessment["ok"]:
            continue  # an unreachable host proves nothing: its tickets stay as they are
        host, aid = assessment["host"], assessment["id"]
        drift = assessment["drift"] or {}
        if drift.get("critical"):
            added += notifier.emit(Event("critical_drift", f"critical_drift|{aid}", "critical",
                                         f"{host}: critical drift", "\n".join(drift["critical"]), (host,),
                                         {"assessment": aid, "drift": drift["critical"]}))
        newly = set(drift.get("newly_failing", [])) if assessment["drift"] is not None else None
        for result in store.rows("rule_results", assessment_id=aid):
            rule = result["rule_id"]
            evidence = result["evidence"] or {}
            if result["status"] in ("fail", "error"):
                text = (f"Rule {rule} ({result['title']}) {result['status']}s on {host} "
                        f"(assessment {aid}, {assessment['at']:%Y-%m-%d %H:%M} UTC).\n"
                        f"Expected: {evidence.get('expected', '')}\nObserved: "
                        f"{evidence.get('observed') or evidence.get('error') or ''}\nWhere: {evidence.get('where', '')}")
                event = Event("rule_failed", f"rule_failed|{host}|{rule}|{aid}", result["severity"],
                              f"{host}: {rule} {result['title']}", text, (host,),
                              {"rule": rule, "assessment": aid, "status": result["status"]}, ("rule", host, rule))
                if newly is None or rule in newly:
                    added += notifier.emit(event)
                else:  # still failing: no new message, but the ticket must be there and open
                    added += tickets_only(notifier, event)
            else:
                why = {"pass": "passes", "excepted": f"is excepted ({result['exception_id']})",
                       "not_applicable": "no longer applies"}.get(result["status"], result["status"])
                added += notifier.ticket_progress(
                    "rule", host, rule, f"resolved|{aid}",
                    f"Rule {rule} {why} on {host}: confirming assessment {aid} at "
                    f"{assessment['at']:%Y-%m-%d %H:%M} UTC.", resolved=True)
    return added


def tickets_only(notifier: Notifier, event: Event) -> int:
    added = 0
    for route in notifier.policy.routes:
        if any(notifier.policy.channels[c].type in TICKET_TYPES for c in route.channels):
            ticket_route = route.model_copy(update={"channels": [
                c for c in route.channels if notifier.policy.channels[c].type in TICKET_TYPES]})
            added += notifier.emit(event, only=ticket_route)
    return added


def after_remediation(notifier: Notifier, batch: str) -> int:
    """Comment on each open ticket whose rule a remediation worked on; the confirming
    assessment of the same batch then closes what passes (after_assessment)."""
    added = 0
    for row in notifier.store.remediations(batch):
        for result in (row["data"] or {}).get("results") or []:
            if result.get("status") in (None, "skipped"):
                continue
            actions = "; ".join(result.get("actions") or []) or result.get("message", "")
            mode = " (check mode: nothing changed)" if row["check_mode"] else ""
            added += notifier.ticket_progress(
                "rule", row["host"], result["id"], f"remediation|{batch}|{row['host']}|{result['id']}",
                f"Remediation {batch}{mode} on {row['host']}: {result['status']}: {actions}", resolved=False)
    return added


def digest(notifier: Notifier, today: date | None = None) -> int:
    """The periodic messages: hosts still non-compliant (per route, the hosts it covers) and
    fixes about to breach or past their SLA. Keys carry the day: once a day at most."""
    store = notifier.store
    day = today or datetime.now(UTC).date()
    latest = {r["host"]: r for r in store.rows("assessments", ok=True, latest_per="host",
                                                columns=("id", "host", "at", "summary", "score"))}
    added = 0
    for route in notifier.policy.routes:
        if "non_compliant_digest" not in route.events:
            continue
        failing = sorted((h, r) for h, r in latest.items()
                         if (r["summary"] or {}).get("fail", 0) + (r["summary"] or {}).get("error", 0)
                         and (not (route.groups or route.device_types or route.owners)
                              or notifier.host_matches(route, h)))
        if not failing:
            continue
        lines = [f"{h}: {r['summary'].get('fail', 0)} failing, {r['summary'].get('error', 0)} erroring rule(s); "
                 f"score {r['score']}% (assessed {r['at']:%Y-%m-%d})" for h, r in failing]
        added += notifier.emit(Event("non_compliant_digest", f"non_compliant_digest|{day}", "medium",
                                     f"{len(failing)} host(s) still non-compliant ({day})", "\n".join(lines),
                                     tuple(h for h, _r in failing), {"hosts": [h for h, _r in failing]}),
                               only=route)
    added += _sla(notifier, day)
    return added


def _sla(notifier: Notifier, day: date) -> int:
    """Approved fixes not installed in each host's latest cycle: due within sla_warning_days
    (sla_warning) or past due (sla_breached)."""
    store = notifier.store
    latest = {r["host"]: r["cycle_id"] for r in store.rows("end_states", columns=("cycle_id", "host"),
                                                            latest_per="host")}
    added = 0
    for cycle_id in sorted(set(latest.values())):
        states = store.end_states(cycle_id)
        for host, state in sorted(states.items()):
            if latest.get(host) != cycle_id:
                continue
            for package in state["packages"] or []:
                if package.get("after") == package.get("wanted") or not package.get("sla_due"):
                    continue
                due = date.fromisoformat(package["sla_due"])
                if due < day:
                    kind, text = "sla_breached", f"past its SLA since {due}"
                elif due - day <= timedelta(days=notifier.policy.sla_warning_days):
                    kind, text = "sla_warning", f"due {due} ({(due - day).days} day(s) left)"
                else:
                    continue
                severity = package.get("severity") or "unknown"
                added += notifier.emit(Event(
                    kind, f"{kind}|{host}|{package['name']}|{package.get('wanted')}|{due}", severity,
                    f"{host}: {package['name']} {text}",
                    f"The {severity} fix {package['name']} {package.get('wanted')} (advisories "
                    f"{', '.join(package.get('advisories', [])) or 'none'}) is not installed on {host}: {text}. "
                    f"Latest cycle: {cycle_id} ({state['state']}).", (host,),
                    {"package": package["name"], "due": str(due), "cycle": cycle_id}))
    return added
