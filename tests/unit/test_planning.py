"""Advisory matching, approval decisions, wave planning and gate maths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchwave import advisories, manifest, waves
from patchwave.errors import InputError
from patchwave.models import Advisory, Host, PendingUpdate

LAB_ADVISORIES = Path(__file__).resolve().parents[2] / "orchestrator/src/patchwave/lab/data/advisories"


def update(name: str, installed: str | None, candidate: str, *, security: bool = False, held: bool = False,
           new: bool = False, required_by: tuple[str, ...] = ()) -> PendingUpdate:
    return PendingUpdate(host="h1", name=name, installed=installed, candidate=candidate, source=name,
                         security=security, held=held, new_install=new, suites=("s",), required_by=required_by)


def test_lab_advisories_parse() -> None:
    loaded = advisories.load_dir(LAB_ADVISORIES)
    by_id = {a.id: a for a in loaded}
    assert by_id["PWSA-2026-0001"].fixed == {"pw-libssl": "1.0-2"}
    assert by_id["PWSA-2026-0001"].aliases == ("CVE-2026-10001",)
    assert by_id["PWSA-2026-0003"].severity == "low"


def test_invalid_advisory_names_the_record(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "X-1", "affected": [{"package": {}}]}))
    with pytest.raises(InputError, match=r"bad.json: advisory X-1: affected\[0\].package.name"):
        advisories.load_dir(tmp_path)


def test_broken_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{\n  "id": "X-2",\n  oops\n}')
    with pytest.raises(InputError, match=r"broken.json:3: invalid JSON"):
        advisories.load_dir(tmp_path)


def test_matching_needs_installed_below_and_candidate_at_or_above_fixed() -> None:
    adv = [Advisory("A-1", ("CVE-1",), "high", "2026-01-01", "s", {"pkg": "1.0-2"})]
    assert advisories.matching(update("pkg", "1.0-1", "1.0-2"), adv) == adv
    assert advisories.matching(update("pkg", "1.0-2", "1.0-3"), adv) == []  # already fixed
    assert advisories.matching(update("pkg", "1.0-1", "1.0-1+b1"), adv) == []  # does not reach the fix
    assert advisories.matching(update("pkg", "1:0.9", "1:1.0"), adv) == []  # epoch makes both newer


def test_default_policy_approves_security_and_their_new_dependencies_only() -> None:
    ups = [
        update("sec", "1", "2", security=True),
        update("reg", "1", "2"),
        update("held", "1", "2", security=True, held=True),
        update("dep", None, "1", new=True, required_by=("sec",)),
        update("orphan", None, "1", new=True, required_by=("reg",)),
    ]
    m = manifest.build("c1", ups, [])
    by_name = {d.name: d for d in m.decisions}
    assert {n for n, d in by_name.items() if d.approved} == {"sec", "dep"}
    assert "held" in by_name["held"].reason
    assert m.packages_for("h1") == ["dep=1", "sec=2"]


def test_advisory_makes_a_regular_pocket_update_security() -> None:
    adv = [Advisory("A-9", (), "critical", "2026-01-01", "s", {"reg": "2"})]
    m = manifest.build("c1", [update("reg", "1", "2")], adv)
    (decision,) = m.decisions
    assert decision.approved and decision.advisories == ("A-9",) and decision.severity == "critical"


def test_waves_put_least_critical_host_first() -> None:
    hosts = [Host("b", criticality=3), Host("a", criticality=3), Host("c", criticality=1)]
    planned = waves.plan(hosts, canary_size=1)
    assert [(w.name, w.hosts) for w in planned] == [("canary", ("c",)), ("broad", ("a", "b"))]
    assert waves.plan([], 1) == []
    assert [w.name for w in waves.plan(hosts, canary_size=0)] == ["broad"]


def test_gate_counts_failures_against_the_budget() -> None:
    assert waves.gate_passes({"a": True, "b": True})
    assert not waves.gate_passes({"a": True, "b": False})
    assert waves.gate_passes({"a": True, "b": False}, failure_budget=1)
