"""Approval: pending updates + advisories + the policy's approval rules → one frozen manifest of
exact versions, with the reason for every decision.

Rules, in order: an explicit reject wins; an explicit approve comes next; held packages are
never touched unless the policy allows it; package include/exclude patterns; then security
updates (security pocket, or fixing a known advisory) are approved when their severity reaches
the minimum and their advisory is old enough (delay_days); other updates only when the policy
approves them. New packages are approved exactly when an approved update needs them.

A catch-up (a host that missed a cycle) carries that cycle's approvals over instead: exactly the
name=version pairs the missed cycle approved for hosts of the same release (OSV ecosystem),
nothing newer, and no rule is evaluated again. Versions are per release: openssl 3.0.17-1~deb12u3
approved for Debian 12 hosts says nothing about a Debian 11 host, even when the version string is
the same on both (a package both releases ship unchanged): that host's update is excluded, naming
the release the approval was for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from patchwave.clock import aware
from patchwave.models import Advisory, Decision, Manifest, PendingUpdate
from patchwave.patching.advisories import ByPackage, matching, rank
from patchwave.patching.policy import Approval

DEFAULT_APPROVAL = Approval()


def _listed(update: PendingUpdate, entries: list[str]) -> str | None:
    for entry in entries:
        name, _sep, version = entry.partition("=")
        if name == update.name and (not version or version == update.candidate):
            return entry
    return None


def published_at(text: str | None) -> datetime | None:
    """An advisory's publication time (UTC when the text has no zone); None when absent or unreadable."""
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return aware(stamp)


def decide(update: PendingUpdate, advisories: list[Advisory], approval: Approval = DEFAULT_APPROVAL,  # noqa: PLR0911 - approval rules read best as one early return per rule, in the policy's order
           now: datetime | None = None) -> Decision:
    fixes = matching(update, advisories)
    severity = min((a.severity for a in fixes), key=rank, default="")
    ids = tuple(a.id for a in fixes)
    cves = tuple(sorted({c for a in fixes for c in a.cves}))
    published = min((a.published for a in fixes if a.published), default="")
    security = update.security or bool(fixes)

    def make(approved: bool, reason: str) -> Decision:
        return Decision(host=update.host, name=update.name, installed=update.installed, version=update.candidate,
                        approved=approved, reason=reason, advisories=ids, severity=severity, cves=cves,
                        published=published, ecosystem=update.ecosystem)

    rejected = _listed(update, approval.reject)
    if rejected:
        return make(False, f"excluded: rejected by policy (approval.reject: {rejected})")
    if update.held and not approval.allow_held:
        return make(False, "excluded: package is held on the host (apt-mark hold)")
    forced = _listed(update, approval.approve)
    if forced:
        return make(True, f"approved: listed in approval.approve ({forced})")
    if not any(fnmatchcase(update.name, p) for p in approval.include):
        return make(False, "excluded: matches no approval.include pattern")
    excluded_by = next((p for p in approval.exclude if fnmatchcase(update.name, p)), None)
    if excluded_by:
        return make(False, f"excluded: matches approval.exclude pattern {excluded_by!r}")
    if security:
        if not approval.security:
            return make(False, "excluded: policy does not approve security updates")
        effective = severity or "unknown"
        if rank(effective) > rank(approval.min_severity):
            return make(False, f"excluded: severity {effective} is below the policy minimum {approval.min_severity}")
        stamp = published_at(published) if published else None
        if approval.delay_days and stamp is not None:
            ready = stamp + timedelta(days=approval.delay_days)
            if (now or datetime.now(UTC)) < ready:
                return make(False, f"excluded: published {stamp:%Y-%m-%d}, approvable from {ready:%Y-%m-%d} "
                                   f"(approval.delay_days {approval.delay_days})")
        why = f"approved: fixes {', '.join(ids)}" if ids else f"approved: security pocket ({', '.join(update.suites)})"
        return make(True, why)
    if approval.other:
        return make(True, "approved: regular update (approval.other)")
    return make(False, "excluded: not a security update (approval.other is off)")


def emergency(update: PendingUpdate, advisories: list[Advisory], only: set[str]) -> Decision:
    """Out-of-cycle: approve exactly the updates that fix the named advisories (held packages
    and everything else stay out)."""
    fixes = [a for a in matching(update, advisories) if set(a.names) & only]
    base = decide(update, advisories, Approval(security=True, other=True, allow_held=False))
    if update.held:
        return base
    if fixes:
        return Decision(**{**base.__dict__, "approved": True,
                           "reason": f"approved: emergency fix for {', '.join(a.id for a in fixes)}"})
    return Decision(**{**base.__dict__, "approved": False,
                       "reason": f"excluded: emergency cycle for {', '.join(sorted(only))} only"})


def sla_due(decision: Decision, sla_days: Mapping[Any, int]) -> str:
    """The date by which the fix must be installed: publication + the SLA days of its severity
    ('' when the advisory has no publication date or the policy sets no SLA for the severity)."""
    stamp = published_at(decision.published) if decision.published else None
    days = sla_days.get(decision.severity or "unknown")
    if stamp is None or days is None:
        return ""
    return f"{stamp + timedelta(days=days):%Y-%m-%d}"


# what a missed cycle approved: (ecosystem of the host it was approved for, name, version)
Approved = frozenset[tuple[str, str, str]]


def approved_set(items: Iterable[Iterable[str]]) -> Approved:
    """(ecosystem, name, version) triples; a (name, version) pair, as catch-ups recorded them
    before approvals were per release, is one for a host whose release was not known ('')."""
    found: set[tuple[str, str, str]] = set()
    for item in items:
        parts = [str(p) for p in item]
        ecosystem, name, version = ["", *parts] if len(parts) == 2 else parts
        found.add((ecosystem, name, version))
    return frozenset(found)


def _release(ecosystem: str) -> str:
    return ecosystem or "an unknown release"


def carried(update: PendingUpdate, advisories: list[Advisory], source: str, approved: Approved) -> Decision:
    """A catch-up decision: approved exactly when cycle `source` approved this name=version for a
    host of this host's release (ecosystem); an approval made for another release is never carried."""
    info = decide(update, advisories, Approval(other=True), datetime.max.replace(tzinfo=UTC))
    if update.held:
        return replace(info, approved=False, reason="excluded: package is held on the host (apt-mark hold)")
    # a decision stored before releases were recorded (schema < 10) has ecosystem "": it carries as it did then
    if (update.ecosystem, update.name, update.candidate) in approved or ("", update.name, update.candidate) in approved:
        return replace(info, approved=True, reason=f"approved: carried over from cycle {source}, which this host missed")
    same = sorted(v for e, n, v in approved if n == update.name and e == update.ecosystem)
    if same:
        return replace(info, approved=False, reason=f"excluded: cycle {source} approved {update.name} "
                                                    f"{', '.join(same)}, not {update.candidate} (a regular cycle decides)")
    elsewhere = sorted({(e, v) for e, n, v in approved if n == update.name})
    if elsewhere:
        made = ", ".join(f"{v} for {_release(e)}" for e, v in elsewhere)
        return replace(info, approved=False, reason=f"excluded: cycle {source} approved {update.name} {made} only; "
                                                    f"no approval for {_release(update.ecosystem)}")
    return replace(info, approved=False, reason=f"excluded: cycle {source} did not approve it")


def build(cycle_id: str, updates: list[PendingUpdate], advisories: list[Advisory],
          approval: Approval = DEFAULT_APPROVAL, now: datetime | None = None,
          only: set[str] | None = None, sla_days: Mapping[Any, int] | None = None,
          carry: tuple[str, Iterable[Iterable[str]]] | None = None) -> Manifest:
    """`only`: advisory ids of an emergency; `carry`: (missed cycle, its approvals as (ecosystem,
    name, version), see approved_set)."""
    carrying = (carry[0], approved_set(carry[1])) if carry is not None else None
    named = ByPackage(advisories)
    decisions: dict[tuple[str, str], Decision] = {}
    for update in updates:
        if update.new_install:
            continue
        about = named.about(update)  # the only advisories that can match it
        if carrying is not None:
            decision = carried(update, about, *carrying)
        elif only:
            decision = emergency(update, about, only)
        else:
            decision = decide(update, about, approval, now)
        decisions[(update.host, update.name)] = decision
    for update in updates:
        if update.new_install:
            parents = [decisions.get((update.host, p)) for p in update.required_by]
            approved = [p for p in parents if p is not None and p.approved]
            reason = (f"approved: new dependency of {', '.join(p.name for p in approved)}" if approved
                      else "excluded: new package not needed by an approved update")
            decisions[(update.host, update.name)] = Decision(
                host=update.host, name=update.name, installed=None, version=update.candidate,
                approved=bool(approved), reason=reason, ecosystem=update.ecosystem)
    ordered = tuple(sorted((replace(d, sla_due=sla_due(d, sla_days or {})) for d in decisions.values()),
                           key=lambda d: (d.host, d.name)))
    created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Manifest(cycle_id=cycle_id, created=created, decisions=ordered)
