"""Running what a schedule says is due: each job's slot is claimed in the store before it runs
(so it runs once, and never next to another run of the same job), the job runs, its outcome is
recorded. Scan and assessment jobs retry the hosts that did not answer, with backoff, within the
schedule's retry window; a host that stays away is reported and caught up by the next due run."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchwave.ansible.inventory import load_hosts
from patchwave.fleet import discover
from patchwave.fleet.schedule import Job, Schedule, due
from patchwave.models import CycleOptions, Host
from patchwave.patching.policy import Policy, thin_link_vars
from patchwave.paths import Paths
from patchwave.states import HostState
from patchwave.store import Store

if TYPE_CHECKING:
    from patchwave.baseline.profile import Baseline

Log = Callable[[str], None]


def inventory_of(schedule: Schedule, schedule_path: Path, paths: Paths) -> Path:
    return (schedule_path.parent / schedule.inventory) if schedule.inventory else paths.lab_inventory


def run_due(paths: Paths, store: Store, schedule: Schedule, schedule_path: Path, log: Log,
            now: datetime | None = None) -> list[dict[str, Any]]:
    """Run every job that is due now, once each; returns what happened to each."""
    stamp = now or datetime.now(UTC)
    runner = f"{socket.gethostname()}:{os.getpid()}"
    outcomes = []
    for job, slot in due(schedule, store.last_slots(), stamp):
        run_id = store.claim_slot(job.name, slot, runner)
        if run_id is None:
            log(f"schedule: {job.name} ({slot:%Y-%m-%d %H:%M} UTC) is running elsewhere or was taken: skipped")
            outcomes.append({"job": job.name, "slot": slot.isoformat(), "status": "skipped"})
            continue
        log(f"schedule: {job.name} ({job.kind}) for the slot of {slot:%Y-%m-%d %H:%M} UTC")
        try:
            detail = execute(paths, store, schedule, schedule_path, job, log)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded, and the other due jobs still run
            store.finish_slot(run_id, "failed", {"error": f"{type(exc).__name__}: {exc}"})
            outcomes.append({"job": job.name, "slot": slot.isoformat(), "status": "failed", "error": str(exc)})
            log(f"schedule: {job.name} failed: {exc}")
            continue
        status = "ok" if not detail.get("unreachable") else "partial"
        store.finish_slot(run_id, status, detail)
        outcomes.append({"job": job.name, "slot": slot.isoformat(), "status": status, **detail})
    return outcomes


def execute(paths: Paths, store: Store, schedule: Schedule, schedule_path: Path, job: Job, log: Log) -> dict[str, Any]:  # noqa: PLR0911 - one dispatch per job kind
    inventory = inventory_of(schedule, schedule_path, paths)
    if job.kind == "discover":
        found = discover.discover(store, inventory, schedule)
        return {"changes": found["changes"], "acted": act_on_new(paths, store, inventory, log, schedule, schedule_path)}
    if job.kind == "digest":
        from patchwave import notify
        from patchwave.notify import events

        sender = notify.notifier(store, inventory, log=log)
        if sender is None:
            return {"note": "no notification policy (PATCHWAVE_NOTIFY): nothing to send"}
        queued = events.digest(sender)
        return {"queued": queued, **sender.flush()}
    if job.kind == "ticket-sync":
        from patchwave import notify
        from patchwave.notify import sync

        sender = notify.notifier(store, inventory, log=log)
        if sender is None:
            return {"note": "no notification policy (PATCHWAVE_NOTIFY): no tickets to look up"}
        return sync.sync(paths, sender, inventory, organisation_baseline(schedule, schedule_path), log)
    hosts = [h for h in load_hosts(inventory) if job.covers(h.groups, h.device_type)]
    if job.kind == "catch-up":
        return catch_up(paths, store, inventory, schedule, hosts, log)
    return with_retries(schedule, hosts,
                        lambda batch: _run_kind(paths, store, inventory, schedule, job, schedule_path, batch, log), log)


def _run_kind(paths: Paths, store: Store, inventory: Path, schedule: Schedule, job: Job, schedule_path: Path,
              hosts: list[Host], log: Log) -> dict[str, bool]:
    """Run a scan or an assessment on `hosts`; host -> answered. An assessment goes through the
    baseline's service with the organisation's profile and exceptions (alerts, tickets, workbook)."""
    from patchwave.progress import quiet

    if job.kind == "scan":
        from patchwave.patching.scan import scan_only

        links = thin_link_vars(schedule.thin_links, hosts)
        return {r["host"]: not r["unreachable"] for r in scan_only(paths, store, inventory, quiet(), hosts, links)}
    from patchwave.baseline import service

    finished = service.assess(paths, store, inventory, organisation_baseline(schedule, schedule_path, job), hosts,
                              quiet(), log)
    return {h["host"]: not h["unreachable"] for h in finished.report["hosts"]}


def organisation_baseline(schedule: Schedule, schedule_path: Path, job: Job | None = None) -> Baseline:
    """The baseline a schedule's assessments use: the job's own profile, else the schedule's
    (the organisation's), else the shipped one; with the schedule's exceptions register. Paths
    are relative to the schedule file."""
    from patchwave.baseline.profile import DEFAULT_PROFILE, Baseline

    profile = (job.baseline if job is not None and job.baseline else None) or schedule.baseline
    register = schedule_path.parent / schedule.exceptions if schedule.exceptions else None
    return Baseline(schedule_path.parent / profile if profile else DEFAULT_PROFILE, register)


def with_retries(schedule: Schedule, hosts: list[Host], run: Callable[[list[Host]], dict[str, bool]],
                 log: Log) -> dict[str, Any]:
    """Run, then run again only for the hosts that did not answer, waiting longer each time
    (backoff doubling), until all answered or the retry window is over."""
    deadline = time.monotonic() + schedule.retry.window_minutes * 60
    pending, pause, tries = list(hosts), schedule.retry.backoff_seconds, 0
    answered: list[str] = []
    while pending:
        tries += 1
        result = run(pending)
        answered += [h.name for h in pending if result.get(h.name)]
        pending = [h for h in pending if not result.get(h.name)]
        if not pending or time.monotonic() + pause > deadline:
            break
        log(f"schedule: {len(pending)} host(s) did not answer ({', '.join(h.name for h in pending)}); "
            f"trying again in {pause:g} s")
        time.sleep(pause)
        pause *= 2
    return {"hosts": len(hosts), "answered": sorted(answered), "unreachable": sorted(h.name for h in pending),
            "tries": tries}


def act_on_new(paths: Paths, store: Store, inventory: Path, log: Log, schedule: Schedule | None = None,
               schedule_path: Path | None = None) -> list[dict[str, Any]]:
    """Carry out the recorded decision for each new host not handled yet, through the same
    services as every other run (alerts, tickets, workbooks), with the schedule's baseline and
    exceptions (the shipped profile without a schedule)."""
    from patchwave.baseline import service as baseline_service
    from patchwave.baseline.profile import DEFAULT_PROFILE, Baseline
    from patchwave.patching.scan import scan_only
    from patchwave.progress import quiet

    done = []
    hosts = {h.name: h for h in load_hosts(inventory)}
    for event in store.asset_events(kind="new", pending=True):
        host = hosts.get(event["host"])
        if host is None:
            store.finish_asset_event(event["id"], "the host left the inventory before anything was done")
            continue
        decision = event["decision"]
        log(f"new host {host.name}: {decision}")
        baseline = (organisation_baseline(schedule, schedule_path) if schedule is not None and schedule_path is not None
                    else Baseline(DEFAULT_PROFILE, None))
        if decision == "next-cycle":
            outcome = "nothing now: the next patch cycle includes it"
        elif decision == "observe":
            scanned = scan_only(paths, store, inventory, quiet(), [host])[0]
            report = baseline_service.assess(paths, store, inventory, baseline, [host], quiet(), log).report
            outcome = (f"scanned ({len(scanned['updates'])} pending update(s)) and assessed "
                       f"(score {report['hosts'][0].get('score')}%)")
        elif decision == "remediate-now":
            report = baseline_service.remediate(paths, store, inventory, baseline, [host], False, quiet(), log).report
            entry = report["hosts"][0]
            outcome = f"remediated: score {entry['score_before']}% -> {entry['score_after']}%"
        else:  # patch-now
            outcome = patch_now(paths, store, inventory, host, log)
        store.finish_asset_event(event["id"], outcome)
        done.append({"host": host.name, "decision": decision, "outcome": outcome})
    return done


def _one_host(row: dict[str, Any] | None, host: Host, wave: str, **changes: Any) -> Policy:
    """A cycle's policy (the default without one) narrowed to one host in one wave."""
    from patchwave.patching.policy import Targets, Wave

    policy = Policy.model_validate_json(json.dumps(row["policy"])) if row else Policy()
    return policy.model_copy(update={"targets": Targets(hosts=[host.name]), "waves": [Wave(name=wave)], **changes})


def patch_now(paths: Paths, store: Store, inventory: Path, host: Host, log: Log = lambda _msg: None) -> str:
    """An out-of-cycle mini cycle for one host under the latest cycle's policy (its approval
    rules and its advisory sources, found where that cycle found them), in one wave."""
    from patchwave.patching import service

    latest = store.latest_cycle_id()
    row = store.cycle(latest) if latest else None
    options = CycleOptions.from_stored((row or {}).get("options"))
    finished = service.run_cycle(paths, store, inventory, _one_host(row, host, "new-device", windows=[]),
                                 advisories=options.advisories, policy_dir=options.policy_dir, log=log)
    return f"patched out of cycle in {finished.report['cycle_id']} ({finished.report['status']})"


def catch_up(paths: Paths, store: Store, inventory: Path, schedule: Schedule, hosts: list[Host],
             log: Log) -> dict[str, Any]:
    """Hosts whose latest cycle could not reach them get a one-host catch-up cycle that carries
    over exactly what the missed cycle approved for hosts of the same release (no approval rule,
    manual gate or delay again), under that cycle's policy (its windows, gates, reboot rule, thin
    links). Approvals are per release: each decision keeps the ecosystem of the host it was made
    for, and a version approved for Debian 12 hosts is never carried to a Debian 11 one (its
    update is excluded, naming the release the approval was for). A host still away
    stays unreachable (a scan finds that out; no cycle is started) and is tried again, with the
    schedule's retries and at the next due run."""
    from patchwave.errors import GateHalt
    from patchwave.patching import service
    from patchwave.patching.scan import scan_only
    from patchwave.progress import quiet

    latest = {r["host"]: r for r in store.rows("end_states", latest_per="host", host=[h.name for h in hosts])}
    missed = [h for h in hosts if (latest.get(h.name) or {}).get("state") == HostState.UNREACHABLE]
    done: list[dict[str, Any]] = []

    def run(batch: list[Host]) -> dict[str, bool]:
        answered = {}
        for host in batch:
            row = store.cycle(latest[host.name]["cycle_id"]) or {}
            # a catch-up that could not reach the host either hands on the cycle it was catching up on
            handed_on = CycleOptions.from_stored(row.get("options")).carry_over
            source = handed_on[0] if handed_on else row.get("id")
            origin = store.cycle(str(source)) or row
            approved = sorted({(d.ecosystem, d.name, d.version) for d in store.decisions(str(source)) if d.approved})
            entry: dict[str, Any] = {"host": host.name, "missed": source, "approvals": len(approved)}
            if not approved:
                entry.update(state="nothing to carry over", detail=f"cycle {source} approved nothing")
                answered[host.name] = True
                done.append(entry)
                continue
            # a host still away gets no cycle (a scan says so, and is stored like any scan)
            probe = scan_only(paths, store, inventory, quiet(), [host])[0]
            if probe["unreachable"]:
                entry.update(state="unreachable", detail=probe["message"])
                answered[host.name] = False
                done.append(entry)
                continue
            options = CycleOptions.from_stored(origin.get("options"))
            log(f"catch-up: {host.name} missed cycle {source}; carrying over what it approved for hosts of the same "
                f"release ({len(approved)} approval(s) in all)")
            try:
                cycle_id = service.run_cycle(paths, store, inventory, _one_host(origin, host, "catch-up"),
                                             advisories=options.advisories, policy_dir=options.policy_dir,
                                             carry_over=(str(source), approved), log=log).report["cycle_id"]
            except GateHalt as exc:  # its maintenance window is closed: the next due run tries again
                entry.update(state="waiting", detail=str(exc))
                answered[host.name] = True
                done.append(entry)
                continue
            state = store.end_states(cycle_id).get(host.name, {})
            carried = sum(1 for d in store.decisions(cycle_id) if d.host == host.name and d.approved)
            entry.update(cycle=cycle_id, state=state.get("state"), detail=state.get("detail"), carried=carried)
            answered[host.name] = state.get("state") != HostState.UNREACHABLE
            done.append(entry)
        return answered

    result = with_retries(schedule, missed, run, log) if missed else {"hosts": 0, "answered": [], "unreachable": [],
                                                                     "tries": 0}
    return {**result, "catch_up": done}
