"""The policy's approval rules, one at a time, with the reason each decision records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from patchwave.models import Advisory, PendingUpdate
from patchwave.patching import manifest
from patchwave.patching.policy import Approval

NOW = datetime(2026, 11, 29, tzinfo=UTC)
ADVISORY = [Advisory("PWSA-1", ("CVE-2026-1",), "medium", "2026-11-25T00:00:00Z", "s", {"pkg": "2"})]


def up(name: str = "pkg", *, security: bool = True, held: bool = False) -> PendingUpdate:
    return PendingUpdate("h", name, "1", "2", name, security, held, False, ("suite-security",))


@pytest.mark.parametrize(("approval", "update", "approved", "reason"), [
    (Approval(), up(), True, "approved: fixes PWSA-1"),
    (Approval(reject=["pkg"]), up(), False, "rejected by policy (approval.reject: pkg)"),
    (Approval(reject=["pkg=3"]), up(), True, "approved: fixes PWSA-1"),  # another version is rejected, not this one
    (Approval(approve=["pkg=2"], security=False), up(), True, "listed in approval.approve (pkg=2)"),
    (Approval(approve=["pkg"]), up(held=True), False, "held on the host"),
    (Approval(allow_held=True), up(held=True), True, "approved: fixes PWSA-1"),
    (Approval(include=["lib*"]), up(), False, "matches no approval.include pattern"),
    (Approval(exclude=["pk?"]), up(), False, "matches approval.exclude pattern 'pk?'"),
    (Approval(security=False), up(), False, "does not approve security updates"),
    (Approval(min_severity="high"), up(), False, "severity medium is below the policy minimum high"),
    (Approval(min_severity="medium"), up(), True, "approved"),
    (Approval(delay_days=7), up(), False, "published 2026-11-25, approvable from 2026-12-02"),
    (Approval(delay_days=4), up(), True, "approved"),
    (Approval(), up("other", security=False), False, "approval.other is off"),
    (Approval(other=True), up("other", security=False), True, "approved: regular update"),
])
def test_rule(approval: Approval, update: PendingUpdate, approved: bool, reason: str) -> None:
    decision = manifest.decide(update, ADVISORY, approval, NOW)
    assert decision.approved is approved
    assert reason in decision.reason


def test_security_pocket_without_advisory_has_unknown_severity() -> None:
    decision = manifest.decide(up("nofix"), ADVISORY, Approval(min_severity="low"), NOW)
    assert not decision.approved and "severity unknown" in decision.reason
    assert manifest.decide(up("nofix"), ADVISORY, Approval(), NOW).approved


def test_emergency_approves_only_the_named_fixes() -> None:
    advisories = [Advisory("PWSA-1", ("CVE-2026-1",), "low", "", "s", {"pkg": "2"}),
                  Advisory("PWSA-2", (), "critical", "", "s", {"other": "2"})]
    updates = [up("pkg"), up("other"), up("held", held=True), up("plain", security=False)]
    built = manifest.build("e1", updates, advisories, Approval(min_severity="critical"), NOW, only={"CVE-2026-1"})
    by_name = {d.name: d for d in built.decisions}
    assert by_name["pkg"].approved and "emergency fix for PWSA-1" in by_name["pkg"].reason
    assert not by_name["other"].approved and "emergency cycle for CVE-2026-1 only" in by_name["other"].reason
    assert not by_name["held"].approved and not by_name["plain"].approved


def test_sla_due_is_publication_plus_the_days_of_the_severity() -> None:
    sla = {"critical": 7, "high": 14, "medium": 30, "low": 90}
    built = manifest.build("c", [up(), up("other", security=False)], ADVISORY, Approval(), NOW, sla_days=sla)
    due = {d.name: d.sla_due for d in built.decisions}
    # medium, published 2026-11-25 → due 30 days later; no advisory → no publication date → no due date
    assert due == {"pkg": "2026-12-25", "other": ""}
    assert manifest.build("c", [up()], ADVISORY, Approval(), NOW, sla_days={"high": 3}).decisions[0].sla_due == ""


def test_catch_up_carries_over_exactly_what_the_missed_cycle_approved() -> None:
    carried = frozenset({("pkg", "2"), ("plain", "2"), ("newer", "1.5"), ("held", "2")})
    updates = [up("pkg"), up("plain", security=False), up("newer"), up("held", held=True), up("unlisted")]
    # the policy given would approve nothing: a catch-up evaluates no rule again
    built = manifest.build("k1", updates, ADVISORY, Approval(security=False, include=["none"]), NOW,
                           carry=("c7", carried))
    by_name = {d.name: d for d in built.decisions}
    assert by_name["pkg"].approved and by_name["pkg"].reason == "approved: carried over from cycle c7, which this host missed"
    assert by_name["pkg"].advisories == ("PWSA-1",) and by_name["pkg"].severity == "medium"  # still reported
    assert by_name["plain"].approved  # a regular update the missed cycle approved
    assert not by_name["newer"].approved
    assert by_name["newer"].reason == "excluded: cycle c7 approved newer 1.5, not 2 (a regular cycle decides)"
    assert not by_name["held"].approved and "held on the host" in by_name["held"].reason
    assert not by_name["unlisted"].approved and by_name["unlisted"].reason == "excluded: cycle c7 did not approve it"
