"""Approval: pending updates + advisories + policy → one frozen manifest of exact versions.

The walking skeleton's policy is the safe default: approve security updates (from a security
pocket, or fixing a known advisory), never touch held packages, and bring along new packages an
approved upgrade depends on. Full YAML policies replace `ApprovalPolicy` without changing the
shape of the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from patchwave.advisories import matching, rank
from patchwave.models import Advisory, Decision, Manifest, PendingUpdate


@dataclass(frozen=True)
class ApprovalPolicy:
    approve_security: bool = True
    approve_regular: bool = False
    allow_held: bool = False


DEFAULT_POLICY = ApprovalPolicy()


def decide(update: PendingUpdate, advisories: list[Advisory], policy: ApprovalPolicy) -> Decision:
    fixes = matching(update, advisories)
    severity = min((a.severity for a in fixes), key=rank, default="")
    ids = tuple(a.id for a in fixes)
    cves = tuple(sorted({c for a in fixes for c in a.cves}))
    published = min((a.published for a in fixes if a.published), default="")
    security = update.security or bool(fixes)

    def make(approved: bool, reason: str) -> Decision:
        return Decision(host=update.host, name=update.name, installed=update.installed, version=update.candidate,
                        approved=approved, reason=reason, advisories=ids, severity=severity, cves=cves,
                        published=published)

    if update.held and not policy.allow_held:
        return make(False, "excluded: package is held on the host (apt-mark hold)")
    if security and policy.approve_security:
        why = f"approved: fixes {', '.join(ids)}" if ids else f"approved: security pocket ({', '.join(update.suites)})"
        return make(True, why)
    if not security and policy.approve_regular:
        return make(True, "approved: regular update (policy approves regular updates)")
    return make(False, "excluded: not a security update (policy approves security updates only)")


def build(cycle_id: str, updates: list[PendingUpdate], advisories: list[Advisory],
          policy: ApprovalPolicy = DEFAULT_POLICY, now: datetime | None = None) -> Manifest:
    decisions: dict[tuple[str, str], Decision] = {}
    for update in updates:
        if not update.new_install:
            decisions[(update.host, update.name)] = decide(update, advisories, policy)
    for update in updates:
        if update.new_install:
            parents = [decisions.get((update.host, p)) for p in update.required_by]
            approved = [p for p in parents if p is not None and p.approved]
            reason = (f"approved: new dependency of {', '.join(p.name for p in approved)}" if approved
                      else "excluded: new package not needed by an approved update")
            decisions[(update.host, update.name)] = Decision(
                host=update.host, name=update.name, installed=None, version=update.candidate,
                approved=bool(approved), reason=reason)
    ordered = tuple(sorted(decisions.values(), key=lambda d: (d.host, d.name)))
    created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Manifest(cycle_id=cycle_id, created=created, decisions=ordered)
