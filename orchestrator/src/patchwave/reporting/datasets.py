"""Datasets: named, typed row streams computed from the store (and the inventory for groups,
device types and owners). Report definitions pick a dataset and its columns; nothing here knows
about spreadsheets. Rows are dicts; every dataset declares its fields and their kinds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from patchwave.clock import aware
from patchwave.models import Changelog, Host
from patchwave.patching.manifest import published_at
from patchwave.states import FAILED_STATES, PATCHED_STATES
from patchwave.store import Store

Row = dict[str, Any]
# an assessment without its snapshot (every package of the host: only drift needs it)
ASSESSMENT_COLUMNS = ("id", "batch", "host", "baseline", "kind", "at", "summary", "score", "score_with_exceptions",
                      "drift")
KINDS = ("text", "int", "float", "percent", "date", "datetime", "bool")


@dataclass
class Context:
    """What every dataset may read: the store, the inventory's hosts, a time range and a group."""

    store: Store
    hosts: list[Host]
    since: datetime | None = None
    group: str | None = None
    exceptions: list[Any] = field(default_factory=list)  # baseline.Exception_ from a register, if given
    today: date = field(default_factory=lambda: datetime.now(UTC).date())
    # field -> the only values any sheet on the dataset keeps: a dataset that can filter those
    # fields in the store does (the sheets still apply their own filters)
    narrow: dict[str, list[Any]] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def by_name(self) -> dict[str, Host]:
        if "by_name" not in self._cache:
            self._cache["by_name"] = {h.name: h for h in self.hosts}
        result: dict[str, Host] = self._cache["by_name"]
        return result

    def host(self, name: str) -> Host:
        return self.by_name.get(name) or Host(name)

    def wanted(self, name: str) -> bool:
        """Is this host in the report (the --group filter)?"""
        return self.group is None or self.group in self.host(name).groups

    def latest_assessments(self) -> dict[str, Row]:
        """The latest successful assessment of each host (within the time range)."""
        if "latest" not in self._cache:
            latest: dict[str, Row] = {}
            for row in self.store.rows("assessments", self.since, columns=ASSESSMENT_COLUMNS, latest_per="host",
                                       ok=True):
                if self.wanted(row["host"]):
                    latest[row["host"]] = row
            self._cache["latest"] = latest
        result: dict[str, Row] = self._cache["latest"]
        return result


@dataclass(frozen=True)
class Dataset:
    name: str
    about: str
    fields: dict[str, str]  # field -> kind
    rows: Callable[[Context], Iterator[Row]]
    narrowable: tuple[str, ...] = ()  # fields it can filter in the store (see Context.narrow)


def _host_fields(host: Host) -> Row:
    return {"host": host.name, "groups": ", ".join(host.groups), "device_type": host.device_type,
            "owner": host.owner}


HOST_FIELDS = {"host": "text", "groups": "text", "device_type": "text", "owner": "text"}


# --- compliance -----------------------------------------------------------------------------

def _compliance_hosts(ctx: Context) -> Iterator[Row]:
    latest = ctx.latest_assessments()
    if "times" not in ctx._cache:
        ctx._cache["times"] = ctx.store.last_times()
    times: dict[str, dict[str, datetime]] = ctx._cache["times"]
    for host in sorted(ctx.hosts, key=lambda h: h.name):
        if not ctx.wanted(host.name):
            continue
        row = latest.get(host.name)
        summary = (row or {}).get("summary") or {}
        drift = (row or {}).get("drift") or {}
        yield {**_host_fields(host), "assessed_at": row["at"] if row else None,
               "baseline": row["baseline"] if row else None,
               "score": _pct(row["score"]) if row else None,
               "score_with_exceptions": _pct(row["score_with_exceptions"]) if row else None,
               "pass": summary.get("pass"), "fail": summary.get("fail"), "error": summary.get("error"),
               "not_applicable": summary.get("not_applicable"), "excepted": summary.get("excepted"),
               "critical_drift": "; ".join(drift.get("critical", [])), "status": _status(row, summary),
               "last_seen": _naive(times.get(host.name, {}).get("seen")),
               "last_scanned": _naive(times.get(host.name, {}).get("scanned")),
               "last_patched": _naive(times.get(host.name, {}).get("patched"))}


def _naive(stamp: datetime | None) -> datetime | None:
    return stamp.replace(tzinfo=None) if stamp is not None else None


def _status(row: Row | None, summary: dict[str, int]) -> str:
    if row is None:
        return "never assessed"
    if summary.get("fail", 0) + summary.get("error", 0):
        return "non-compliant"
    return "compliant with exceptions" if summary.get("excepted", 0) else "compliant"


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value / 100, 4)


def _asset_changes(ctx: Context) -> Iterator[Row]:
    for event in ctx.store.asset_events():
        if (ctx.since is None or aware(event["at"]) >= aware(ctx.since)) and ctx.wanted(event["host"]):
            yield {"at": event["at"], "host": event["host"], "change": event["kind"],
                   "detail": json.dumps(event["detail"], sort_keys=True) if event["detail"] else "",
                   "decision": event["decision"], "done_at": event["done_at"], "outcome": event["outcome"]}


def _compliance_summary(ctx: Context) -> Iterator[Row]:
    """Per group and per device type: hosts, assessed, compliant (with and without exceptions)."""
    rows = list(_compliance_hosts(ctx))
    dims: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        host = ctx.host(row["host"])
        dims.setdefault(("all hosts", "all"), []).append(row)
        for group in host.groups:
            dims.setdefault(("group", group), []).append(row)
        if host.device_type:
            dims.setdefault(("device type", host.device_type), []).append(row)
    for (dimension, name), members in sorted(dims.items(), key=lambda kv: (kv[0][0] != "all hosts", kv[0])):
        assessed = [m for m in members if m["assessed_at"] is not None]
        compliant = [m for m in assessed if m["status"] == "compliant"]
        with_exc = [m for m in assessed if m["status"] in ("compliant", "compliant with exceptions")]
        yield {"dimension": dimension, "name": name, "hosts": len(members), "assessed": len(assessed),
               "never_assessed": len(members) - len(assessed), "compliant_hosts": len(compliant),
               "compliant": round(len(compliant) / len(assessed), 4) if assessed else None,
               "compliant_with_exceptions": round(len(with_exc) / len(assessed), 4) if assessed else None,
               "average_score": _avg([m["score"] for m in assessed]),
               "average_score_with_exceptions": _avg([m["score_with_exceptions"] for m in assessed])}


def _avg(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def _rule_results(ctx: Context) -> Iterator[Row]:
    latest = ctx.latest_assessments()
    by_id = {row["id"]: row for row in latest.values()}
    if not by_id:
        return
    narrow: dict[str, Any] = {f: ctx.narrow[f] for f in RULE_RESULT_FILTERS if f in ctx.narrow}
    for result in ctx.store.rows("rule_results", at_least=("assessment_id", min(by_id)), raw=("evidence",),
                                 **narrow):
        assessment = by_id.get(result["assessment_id"])
        if assessment is None:
            continue
        # evidence matters for what did not pass: decode only that (most rows pass)
        evidence = json.loads(result["evidence"] or "{}") if result["status"] != "pass" else {}
        yield {**_host_fields(ctx.host(result["host"])), "rule_id": result["rule_id"], "title": result["title"],
               "severity": result["severity"], "criticality": result["criticality"], "status": result["status"],
               "exception_id": result["exception_id"], "expected": evidence.get("expected"),
               "observed": evidence.get("observed") or evidence.get("error") or evidence.get("reason"),
               "where": evidence.get("where"), "note": evidence.get("note"), "duration": result["duration"],
               "assessed_at": assessment["at"], "failing": result["status"] in ("fail", "error"),
               "passing": result["status"] == "pass", "excepted": result["status"] == "excepted"}


RULE_RESULT_FILTERS = ("status", "severity", "rule_id")


def _rule_summary(ctx: Context) -> Iterator[Row]:
    """Per rule: how many hosts' latest assessments pass, fail, error, are excepted (counted by
    the database, not row by row)."""
    counts = ctx.store.rule_counts([row["id"] for row in ctx.latest_assessments().values()])
    for (rule_id, title, severity), by_status in sorted(counts.items()):
        yield {"rule_id": rule_id, "title": title, "severity": severity, "hosts": sum(by_status.values()),
               "failing": by_status.get("fail", 0) + by_status.get("error", 0), "passing": by_status.get("pass", 0),
               "erroring": by_status.get("error", 0), "excepted": by_status.get("excepted", 0),
               "not_applicable": by_status.get("not_applicable", 0)}


def _exceptions(ctx: Context) -> Iterator[Row]:
    if not ctx.exceptions:
        return
    latest = {row["id"] for row in ctx.latest_assessments().values()}
    used: dict[str, int] = {}
    for row in ctx.store.rows("rule_results", at_least=("assessment_id", min(latest, default=0)),
                              columns=("assessment_id", "exception_id"), status="excepted"):
        if row["assessment_id"] in latest:
            used[row["exception_id"]] = used.get(row["exception_id"], 0) + 1
    for item in ctx.exceptions:
        expires = date.fromisoformat(item.expires)
        yield {"exception_id": item.id, "rule_id": item.rule,
               "scope": ", ".join([*item.scope.hosts, *(f"group {g}" for g in item.scope.groups)]),
               "owner": item.owner, "justification": item.justification,
               "compensating_control": item.compensating_control, "expires": expires,
               "days_to_expiry": (expires - ctx.today).days, "expired": expires < ctx.today,
               "hosts_excepted": used.get(item.id, 0)}


def _tickets(ctx: Context) -> Iterator[Row]:
    """Every ticket Patchwave opened, with how often it was found closed while still failing."""
    for ticket in ctx.store.tickets():
        if not ctx.wanted(ticket["host"]):
            continue
        yield {**_host_fields(ctx.host(ticket["host"])), "ticket": ticket["number"] or "(being opened)",
               "system": ticket["channel"], "about": ticket["kind"], "subject": ticket["subject"],
               "state": ticket["state"], "opened_at": ticket["opened_at"], "closed_at": ticket["closed_at"],
               "reopened": ticket["reopened"],
               "flag": "closed in the ticket system while still failing" if ticket["reopened"] else "",
               "note": ticket["note"]}


# --- patching -------------------------------------------------------------------------------

def _cycles_in_range(ctx: Context) -> list[Row]:
    if "cycles" not in ctx._cache:
        ctx._cache["cycles"] = list(ctx.store.rows("cycles", ctx.since))
    result: list[Row] = ctx._cache["cycles"]
    return result


def _latest_cycle_of_hosts(ctx: Context) -> dict[str, str]:
    """Each host's latest cycle in the range (the one its patch status is about)."""
    within: dict[str, Any] = {"cycle_id": [c["id"] for c in _cycles_in_range(ctx)]} if ctx.since is not None else {}
    latest: dict[str, str] = {}
    for row in ctx.store.rows("end_states", columns=("cycle_id", "host"), latest_per="host", **within):
        latest[row["host"]] = row["cycle_id"]
    return latest


def _patch_status(ctx: Context) -> Iterator[Row]:
    """patch_packages of each host's latest cycle only: where every host stands now."""
    yield from _patch_packages(ctx, _latest_cycle_of_hosts(ctx))


def _patch_packages(ctx: Context, only: dict[str, str] | None = None) -> Iterator[Row]:
    """One row per cycle, host and approved package, with when it was installed and the SLA
    (`only`: host -> the one cycle to report for it). `cves` are the advisories'; what the staged
    package's changelog said is in `changelog_cves` and `changelog_urgency`, so a fix no advisory
    names still shows its CVEs, labelled as the changelog's."""
    logs: tuple[str, dict[tuple[str, str], Changelog]] = ("", {})
    for cycle, host, state, package, done, at, due in _outcomes(ctx, only):
        if logs[0] != cycle["id"]:  # outcomes come cycle by cycle: one read of each cycle's changelogs
            logs = (cycle["id"], ctx.store.changelogs(cycle["id"]))
        log = logs[1].get((host, package["name"]))
        yield {"cycle_id": cycle["id"], "cycle_started": cycle["created_at"],
               **_host_fields(ctx.host(host)), "package": package["name"], "before": package.get("before"),
               "wanted": package.get("wanted"), "after": package.get("after"),
               "severity": package.get("severity") or None, "cves": ", ".join(package.get("cves", [])),
               "changelog_cves": ", ".join(log.cves) if log else "",
               "changelog_urgency": log.urgency if log else None,
               "advisories": ", ".join(package.get("advisories", [])), "sla_due": due,
               "installed": done, "installed_at": at, "wave": state["wave"],
               "end_state": state["state"], "sla_met": None if due is None else (at is not None and at.date() <= due),
               "reason": package.get("reason")}


Outcome = tuple[Row, str, Row, dict[str, Any], bool, datetime | None, date | None]


def _outcomes(ctx: Context, only: dict[str, str] | None = None) -> Iterator[Outcome]:
    """(cycle, host, end state, package, installed, installed at, SLA due date) for every
    approved package of every cycle's hosts, in cycle and host order: what the patch datasets
    are made of, without building their rows (trends and owners only count)."""
    due_dates: dict[str, date] = {}
    for cycle in _cycles_in_range(ctx):
        if only is not None and cycle["id"] not in set(only.values()):
            continue
        states: dict[str, Row] = {}
        for row in ctx.store.rows("end_states", cycle_id=cycle["id"], columns=("host", "state", "packages")):
            if (only is None or only.get(row["host"]) == cycle["id"]) and ctx.wanted(row["host"]):
                states[row["host"]] = row
        installed_at: dict[str, datetime] = {}
        for row in ctx.store.rows("host_results", cycle_id=cycle["id"], stage="deploy", columns=("host", "at", "ok")):
            if row["ok"]:
                installed_at.setdefault(row["host"], row["at"])
        for wave in ctx.store.rows("waves", cycle_id=cycle["id"], columns=("name", "hosts")):
            for host in wave["hosts"]:
                if host in states:
                    states[host]["wave"] = wave["name"]
        for host, state in sorted(states.items()):
            state.setdefault("wave", None)
            for package in state["packages"]:
                due_text = package.get("sla_due")
                if due_text and due_text not in due_dates:
                    due_dates[due_text] = date.fromisoformat(due_text)
                done = package.get("after") == package.get("wanted")
                yield (cycle, host, state, package, done, installed_at.get(host) if done else None,
                       due_dates[due_text] if due_text else None)


def _cycles(ctx: Context) -> Iterator[Row]:
    for cycle in _cycles_in_range(ctx):
        counts: dict[str, int] = {}
        for row in ctx.store.rows("end_states", cycle_id=cycle["id"]):
            if ctx.wanted(row["host"]):
                counts[row["host"]] = 0
                counts[f"state:{row['state']}"] = counts.get(f"state:{row['state']}", 0) + 1
        hosts = sum(1 for k in counts if not k.startswith("state:"))
        yield {"cycle_id": cycle["id"], "status": cycle["status"], "created_at": cycle["created_at"],
               "finished_at": cycle["finished_at"], "policy": (cycle["policy"] or {}).get("name"), "hosts": hosts,
               "patched": sum(counts.get(f"state:{s}", 0) for s in PATCHED_STATES),
               "failed": sum(v for k, v in counts.items() if k in ("state:failed", "state:partially-patched",
                                                                    "state:unreachable")),
               "not_reached": counts.get("state:not-reached", 0), "excluded": counts.get("state:excluded", 0),
               "rolled_back": counts.get("state:rolled-back", 0)}


def _waves(ctx: Context) -> Iterator[Row]:
    for cycle in _cycles_in_range(ctx):
        for wave in ctx.store.rows("waves", cycle_id=cycle["id"]):
            gate = wave["gate"] or {}
            yield {"cycle_id": cycle["id"], "wave": wave["idx"], "name": wave["name"], "status": wave["status"],
                   "hosts": ", ".join(wave["hosts"]), "host_count": len(wave["hosts"]),
                   "started_at": wave["started_at"], "finished_at": wave["finished_at"],
                   "failed_hosts": ", ".join(gate.get("failed", [])), "gate": gate.get("reason", ""),
                   "wave_budget": gate.get("wave_budget"), "global_budget": gate.get("global_budget")}


def _approvals(ctx: Context) -> Iterator[Row]:
    for cycle in _cycles_in_range(ctx):
        for row in ctx.store.rows("approvals", cycle_id=cycle["id"]):
            yield {"cycle_id": cycle["id"], "wave": row["wave_name"], "decision": "approved" if row["approved"]
                   else "rejected", "by": row["by"], "at": row["at"], "comment": row["comment"]}


def _timeline(ctx: Context) -> Iterator[Row]:
    for cycle in _cycles_in_range(ctx):
        for row in ctx.store.rows("events", cycle_id=cycle["id"]):
            yield {"cycle_id": cycle["id"], "at": row["at"], "kind": row["kind"], "message": row["message"]}


# --- owners, vendors -------------------------------------------------------------------------

def _owners(ctx: Context) -> Iterator[Row]:
    compliance = {r["host"]: r for r in _compliance_hosts(ctx)}
    patches: dict[str, list[int]] = {}  # host -> approved, installed, missing, breaches (counts only)
    for _cycle, name, _state, _package, done, at, due in _outcomes(ctx):
        counts = patches.setdefault(name, [0, 0, 0, 0])
        counts[0] += 1
        counts[1 if done else 2] += 1
        counts[3] += due is not None and (at is None or at.date() > due)
    owners: dict[str, list[Host]] = {}
    for host in ctx.hosts:
        if ctx.wanted(host.name):
            owners.setdefault(host.owner or "(no owner)", []).append(host)
    for owner, members in sorted(owners.items()):
        rows = [compliance[h.name] for h in members]
        assessed = [r for r in rows if r["assessed_at"] is not None]
        mine = [patches.get(h.name, [0, 0, 0, 0]) for h in members]
        yield {"owner": owner, "hosts": len(members), "host_names": ", ".join(sorted(h.name for h in members)),
               "assessed": len(assessed), "compliant_hosts": sum(1 for r in assessed if r["status"] == "compliant"),
               "average_score": _avg([r["score"] for r in assessed]),
               "approved_patches": sum(c[0] for c in mine), "installed_patches": sum(c[1] for c in mine),
               "missing_patches": sum(c[2] for c in mine), "sla_breaches": sum(c[3] for c in mine)}


def _repeat_offenders(ctx: Context) -> Iterator[Row]:
    """Hosts that ended a cycle failed (or not reached), or were non-compliant, more than once."""
    failed: dict[str, list[str]] = {}
    for cycle in _cycles_in_range(ctx):
        for row in ctx.store.rows("end_states", cycle_id=cycle["id"]):
            if row["state"] in FAILED_STATES and ctx.wanted(row["host"]):
                failed.setdefault(row["host"], [])
                if cycle["id"] not in failed[row["host"]]:
                    failed[row["host"]].append(cycle["id"])
    noncompliant: dict[str, int] = {}
    for row in ctx.store.rows("assessments", ctx.since, columns=ASSESSMENT_COLUMNS, ok=True):
        summary = row["summary"] or {}
        if ctx.wanted(row["host"]) and summary.get("fail", 0) + summary.get("error", 0):
            noncompliant[row["host"]] = noncompliant.get(row["host"], 0) + 1
    for host in sorted(set(failed) | set(noncompliant)):
        cycles_failed, assessments_failed = len(failed.get(host, [])), noncompliant.get(host, 0)
        if cycles_failed > 1 or assessments_failed > 1:
            yield {**_host_fields(ctx.host(host)), "cycles_failed": cycles_failed,
                   "failed_cycles": ", ".join(failed.get(host, [])), "non_compliant_assessments": assessments_failed}


def _package_updates(ctx: Context) -> Iterator[Row]:
    """Per cycle and package: source package, origin (repository label, i.e. the vendor), how
    many hosts had it pending, approved, installed."""
    for cycle in _cycles_in_range(ctx):
        info: dict[str, Row] = {}
        for scan in ctx.store.rows("scans", cycle_id=cycle["id"], kind="scan"):
            if not scan["ok"] or not ctx.wanted(scan["host"]):
                continue
            for update in (scan["result"] or {}).get("updates", []):
                item = info.setdefault(update["name"], {
                    "source": update.get("source") or update["name"],
                    "origin": ", ".join(sorted({o.get("label") or o.get("suite", "") for o in update.get("origins", [])})),
                    "pending": set(), "approved": set(), "installed": set()})
                item["pending"].add(scan["host"])
        for decision in ctx.store.rows("decisions", columns=("host", "name"), cycle_id=cycle["id"], approved=True):
            if decision["name"] in info and ctx.wanted(decision["host"]):
                info[decision["name"]]["approved"].add(decision["host"])
        for state in ctx.store.rows("end_states", cycle_id=cycle["id"]):
            for package in state["packages"]:
                if package["name"] in info and package.get("after") == package.get("wanted"):
                    info[package["name"]]["installed"].add(state["host"])
        for name, item in sorted(info.items()):
            yield {"cycle_id": cycle["id"], "cycle_started": cycle["created_at"], "package": name,
                   "source": item["source"], "origin": item["origin"], "hosts_pending": len(item["pending"]),
                   "hosts_approved": len(item["approved"]), "hosts_installed": len(item["installed"])}


# --- trends ---------------------------------------------------------------------------------


def _trend_patch(ctx: Context) -> Iterator[Row]:
    """Per cycle: coverage, mean time to patch per severity (advisory publication → install, in
    days) and the average age of what stayed unpatched (publication → the cycle's end)."""
    stamps: dict[str, datetime | None] = {}  # publication texts repeat (one per advisory): parse each once
    for cycle in _cycles_in_range(ctx):
        published: dict[tuple[str, str], datetime | None] = {}
        for host, name, text in ctx.store.rows("decisions", columns=("host", "name", "published"),
                                               cycle_id=cycle["id"], approved=True, tuples=True):
            if text not in stamps:
                stamps[text] = published_at(text)
            published[(host, name)] = stamps[text]
        ttp: dict[str, list[float]] = {}
        ages: list[float] = []
        approved = installed = breaches = 0
        end = aware(cycle["finished_at"] or cycle["created_at"])
        only = Context(ctx.store, ctx.hosts, ctx.since, ctx.group, _cache={"cycles": [cycle], "by_name": ctx.by_name})
        for _cycle, host, _state, package, done, at, due in _outcomes(only):
            approved += 1
            installed += done
            breaches += due is not None and (at is None or at.date() > due)
            stamp = published.get((host, package["name"]))
            if stamp is None:
                continue
            if done and at is not None:
                days = (aware(at) - stamp).total_seconds() / 86400
                ttp.setdefault(package.get("severity") or "unknown", []).append(days)
                ttp.setdefault("all", []).append(days)
            elif not done:
                ages.append((end - stamp).total_seconds() / 86400)
        item: Row = {"cycle_id": cycle["id"], "started": cycle["created_at"], "approved": approved,
                     "installed": installed, "coverage": round(installed / approved, 4) if approved else None,
                     "sla_breaches": breaches,
                     "average_unpatched_age_days": round(sum(ages) / len(ages), 2) if ages else None}
        for severity in ("all", "critical", "high", "medium", "low"):
            values = ttp.get(severity, [])
            item[f"mttp_{severity}_days"] = round(sum(values) / len(values), 2) if values else None
        yield item


def _trend_compliance(ctx: Context) -> Iterator[Row]:
    """Per assessment run: hosts, average scores, share of compliant hosts."""
    batches: dict[str, list[Row]] = {}
    for row in ctx.store.rows("assessments", ctx.since, columns=ASSESSMENT_COLUMNS, ok=True):
        if ctx.wanted(row["host"]) and row["kind"] == "assess":
            batches.setdefault(row["batch"], []).append(row)
    for batch, rows in batches.items():
        compliant = [r for r in rows if not (r["summary"] or {}).get("fail") and not (r["summary"] or {}).get("error")]
        yield {"batch": batch, "at": min(r["at"] for r in rows), "hosts": len(rows),
               "average_score": _avg([_pct(r["score"]) for r in rows]),
               "average_score_with_exceptions": _avg([_pct(r["score_with_exceptions"]) for r in rows]),
               "compliant": round(len(compliant) / len(rows), 4)}


def _config_fix_times(ctx: Context) -> Iterator[Row]:
    """For every critical-severity rule that failed on a host: since when, when it was fixed
    (the first passing assessment after), and how many days that took."""
    still_open: list[Row] = []
    for failure in ctx.store.rule_failures("critical", ctx.since):
        if not ctx.wanted(failure.host):
            continue
        row = {**_host_fields(ctx.host(failure.host)), "rule_id": failure.rule_id, "title": failure.title,
               "failing_since": failure.failing_since, "fixed_at": failure.fixed_at, "fixed": failure.fixed_at is not None,
               "days_to_fix": None if failure.fixed_at is None
               else round((failure.fixed_at - failure.failing_since).total_seconds() / 86400, 2)}
        if failure.fixed_at is None:
            still_open.append(row)
        else:
            yield row
    yield from still_open  # the ones still failing after the fixed ones, as before


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("compliance_hosts", "each host's latest baseline assessment (or none)",
            {**HOST_FIELDS, "assessed_at": "datetime", "baseline": "text", "score": "percent",
             "score_with_exceptions": "percent", "pass": "int", "fail": "int", "error": "int",
             "not_applicable": "int", "excepted": "int", "critical_drift": "text",
             "status": "text", "last_seen": "datetime", "last_scanned": "datetime", "last_patched": "datetime"},
            _compliance_hosts),
    Dataset("asset_changes", "every change discovery saw in the inventory, with the new-device decision and what "
            "was done", {"at": "datetime", "host": "text", "change": "text", "detail": "text", "decision": "text",
                         "done_at": "datetime", "outcome": "text"}, _asset_changes),
    Dataset("compliance_summary", "compliance per group and per device type, from each host's latest assessment",
            {"dimension": "text", "name": "text", "hosts": "int", "assessed": "int", "never_assessed": "int",
             "compliant_hosts": "int", "compliant": "percent", "compliant_with_exceptions": "percent",
             "average_score": "percent", "average_score_with_exceptions": "percent"}, _compliance_summary),
    Dataset("rule_results", "every rule of each host's latest assessment, with its evidence",
            {**HOST_FIELDS, "rule_id": "text", "title": "text", "severity": "text", "criticality": "text",
             "status": "text", "exception_id": "text", "expected": "text", "observed": "text", "where": "text",
             "note": "text", "duration": "float", "assessed_at": "datetime", "failing": "bool", "passing": "bool",
             "excepted": "bool"}, _rule_results, RULE_RESULT_FILTERS),
    Dataset("rule_summary", "per rule: hosts whose latest assessment passes, fails, errors or excepts it",
            {"rule_id": "text", "title": "text", "severity": "text", "hosts": "int", "failing": "int",
             "passing": "int", "erroring": "int", "excepted": "int", "not_applicable": "int"}, _rule_summary),
    Dataset("exceptions", "the exceptions register, with days to expiry and how many results each excepts",
            {"exception_id": "text", "rule_id": "text", "scope": "text", "owner": "text", "justification": "text",
             "compensating_control": "text", "expires": "date", "days_to_expiry": "int", "expired": "bool",
             "hosts_excepted": "int"}, _exceptions),
    Dataset("tickets", "every ticket opened for a failing rule or a failed patch host, with its state",
            {**HOST_FIELDS, "ticket": "text", "system": "text", "about": "text", "subject": "text", "state": "text",
             "opened_at": "datetime", "closed_at": "datetime", "reopened": "int", "flag": "text", "note": "text"},
            _tickets),
    Dataset("patch_packages", "every approved package of every cycle and host: versions, SLA, installation",
            {"cycle_id": "text", "cycle_started": "datetime", **HOST_FIELDS, "package": "text", "before": "text",
             "wanted": "text", "after": "text", "severity": "text", "cves": "text",
             "changelog_cves": "text", "changelog_urgency": "text", "advisories": "text",
             "sla_due": "date", "installed": "bool", "installed_at": "datetime", "wave": "text",
             "end_state": "text", "sla_met": "bool", "reason": "text"}, _patch_packages),
    Dataset("patch_status", "like patch_packages, for each host's latest cycle only: where every host stands now",
            {"cycle_id": "text", "cycle_started": "datetime", **HOST_FIELDS, "package": "text", "before": "text",
             "wanted": "text", "after": "text", "severity": "text", "cves": "text",
             "changelog_cves": "text", "changelog_urgency": "text", "advisories": "text",
             "sla_due": "date", "installed": "bool", "installed_at": "datetime", "wave": "text",
             "end_state": "text", "sla_met": "bool", "reason": "text"}, _patch_status),
    Dataset("cycles", "every patch cycle with its host counts per outcome",
            {"cycle_id": "text", "status": "text", "created_at": "datetime", "finished_at": "datetime",
             "policy": "text", "hosts": "int", "patched": "int", "failed": "int", "not_reached": "int",
             "excluded": "int", "rolled_back": "int"}, _cycles),
    Dataset("waves", "every wave of every cycle with its gate",
            {"cycle_id": "text", "wave": "int", "name": "text", "status": "text", "hosts": "text",
             "host_count": "int", "started_at": "datetime", "finished_at": "datetime", "failed_hosts": "text",
             "gate": "text", "wave_budget": "int", "global_budget": "int"}, _waves),
    Dataset("approvals", "manual approval decisions: who and when",
            {"cycle_id": "text", "wave": "text", "decision": "text", "by": "text", "at": "datetime",
             "comment": "text"}, _approvals),
    Dataset("timeline", "everything a cycle recorded, in order",
            {"cycle_id": "text", "at": "datetime", "kind": "text", "message": "text"}, _timeline),
    Dataset("owners", "per owner: their hosts' compliance and patch status",
            {"owner": "text", "hosts": "int", "host_names": "text", "assessed": "int", "compliant_hosts": "int",
             "average_score": "percent", "approved_patches": "int", "installed_patches": "int",
             "missing_patches": "int", "sla_breaches": "int"}, _owners),
    Dataset("repeat_offenders", "hosts that failed more than one cycle or assessment",
            {**HOST_FIELDS, "cycles_failed": "int", "failed_cycles": "text", "non_compliant_assessments": "int"},
            _repeat_offenders),
    Dataset("package_updates", "per cycle and package: source package, origin (vendor), hosts pending, approved, "
            "installed", {"cycle_id": "text", "cycle_started": "datetime", "package": "text", "source": "text",
                          "origin": "text", "hosts_pending": "int", "hosts_approved": "int",
                          "hosts_installed": "int"}, _package_updates),
    Dataset("trend_patch", "per cycle: coverage, mean time to patch per severity, unpatched age, SLA breaches",
            {"cycle_id": "text", "started": "datetime", "approved": "int", "installed": "int", "coverage": "percent",
             "sla_breaches": "int", "average_unpatched_age_days": "float", "mttp_all_days": "float",
             "mttp_critical_days": "float", "mttp_high_days": "float", "mttp_medium_days": "float",
             "mttp_low_days": "float"}, _trend_patch),
    Dataset("trend_compliance", "per assessment run: average scores and the share of compliant hosts",
            {"batch": "text", "at": "datetime", "hosts": "int", "average_score": "percent",
             "average_score_with_exceptions": "percent", "compliant": "percent"}, _trend_compliance),
    Dataset("config_fix_times", "critical configuration failures: failing since, fixed at, days to fix",
            {**HOST_FIELDS, "rule_id": "text", "title": "text", "failing_since": "datetime", "fixed_at": "datetime",
             "fixed": "bool", "days_to_fix": "float"}, _config_fix_times),
)}
