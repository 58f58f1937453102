"""Advisory matching, approval decisions, wave planning and gate maths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchwave.errors import InputError
from patchwave.models import Advisory, Host, PendingUpdate, Span
from patchwave.patching import advisories, manifest, waves

LAB_ADVISORIES = Path(__file__).resolve().parents[2] / "orchestrator/src/patchwave/lab/data/advisories"


def update(name: str, installed: str | None, candidate: str, *, security: bool = False, held: bool = False,
           new: bool = False, required_by: tuple[str, ...] = ()) -> PendingUpdate:
    return PendingUpdate(host="h1", name=name, installed=installed, candidate=candidate, source=name,
                         security=security, held=held, new_install=new, suites=("s",), required_by=required_by)


def test_lab_advisories_parse() -> None:
    loaded = advisories.load(LAB_ADVISORIES)
    by_id = {a.id: a for a in loaded}
    assert {(e.ecosystem, e.package, e.spans) for e in by_id["PWSA-2026-0001"].affected} == {
        ("Debian:11", "pw-libssl", (Span("0", fixed="0.9.8-5+deb11u1"),)),
        ("Debian:12", "pw-libssl", (Span("0", fixed="1.0-2"),)),
        ("Debian:13", "pw-libssl", (Span("0", fixed="1.1-1+deb13u1"),))}
    assert by_id["PWSA-2026-0001"].cves == ("CVE-2026-10001",)
    # CVSS 3.1 AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H is 9.8: critical, whatever the urgency says
    assert (by_id["PWSA-2026-0001"].cvss_score, by_id["PWSA-2026-0001"].severity) == (9.8, "critical")
    assert by_id["PWSA-2026-0003"].severity == "low"  # no vector: the Debian urgency


@pytest.mark.parametrize(("score", "severity"), [(9.0, "critical"), (8.9, "high"), (7.0, "high"), (6.9, "medium"),
                                                 (4.0, "medium"), (3.9, "low"), (0.1, "low"), (0.0, "unknown")])
def test_cvss_score_bands(score: float, severity: str) -> None:
    assert advisories.severity_from_score(score) == severity


def _record(**extra: object) -> dict[str, object]:
    record: dict[str, object] = {"id": "OSV-1", "published": "2026-01-02T00:00:00Z", "aliases": ["CVE-2026-1"],
                                 "affected": [{"package": {"ecosystem": "Debian:12", "name": "pkg"},
                                               "ranges": [{"type": "ECOSYSTEM",
                                                           "events": [{"introduced": "0"}, {"fixed": "1:2.0-1"}]}]}]}
    record.update(extra)
    return record


def test_cvss_v4_and_urgency_fallbacks(tmp_path: Path) -> None:
    v4 = _record(severity=[{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}])
    assert advisories.parse("x", v4).severity == "critical"
    urgent = _record()
    urgent["affected"][0]["ecosystem_specific"] = {"urgency": "medium"}  # type: ignore[index]
    assert advisories.parse("x", urgent).severity == "medium"
    assert advisories.parse("x", _record()).severity == "unknown"


def test_a_list_document_and_a_url(tmp_path: Path) -> None:
    document = tmp_path / "all.json"
    document.write_text(json.dumps([_record(), _record(id="OSV-2")]))
    assert [a.id for a in advisories.load(document)] == ["OSV-1", "OSV-2"]
    assert [a.id for a in advisories.load(document.as_uri())] == ["OSV-1", "OSV-2"]


@pytest.mark.parametrize(("change", "message"), [
    ({"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:X"}]}, "invalid CVSS_V3 vector"),
    ({"affected": []}, "'affected' must be a non-empty list"),
    ({"aliases": "CVE-1"}, "'aliases' must be a list"),
    ({"id": ""}, "without a string 'id'"),
])
def test_invalid_records_name_the_record(change: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        advisories.parse("feed.json", _record(**change))


def test_unreachable_url_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="cannot fetch advisories"):
        advisories.load("http://127.0.0.1:9/osv.json", timeout=2)


def test_invalid_advisory_names_the_record(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "X-1", "affected": [{"package": {}}]}))
    with pytest.raises(InputError, match=r"bad.json:1: advisory X-1: affected\[0\].package.name"):
        advisories.load(tmp_path)


def test_broken_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{\n  "id": "X-2",\n  oops\n}')
    with pytest.raises(InputError, match=r"broken.json:3: invalid JSON"):
        advisories.load(tmp_path)


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


def test_decision_carries_cves_severity_and_earliest_publication() -> None:
    adv = [Advisory("A-1", ("CVE-2026-2",), "medium", "2026-03-01", "s", {"reg": "2"}),
           Advisory("CVE-2026-1", (), "high", "2026-02-01", "s", {"reg": "2"})]
    (decision,) = manifest.build("c1", [update("reg", "1", "2")], adv).decisions
    assert decision.cves == ("CVE-2026-1", "CVE-2026-2")
    assert decision.severity == "high" and decision.published == "2026-02-01"


def test_waves_put_least_critical_host_first() -> None:
    hosts = [Host("b", criticality=3), Host("a", criticality=3), Host("c", criticality=1)]
    planned = waves.plan(hosts, 1)
    assert [(w.name, w.hosts) for w in planned] == [("canary", ("c",)), ("broad", ("a", "b"))]
    assert waves.plan([], 1) == []
    assert [w.name for w in waves.plan(hosts, 0)] == ["broad"]


def test_gate_counts_failures_against_the_budget() -> None:
    assert waves.gate_passes({"a": True, "b": True})
    assert not waves.gate_passes({"a": True, "b": False})
    assert waves.gate_passes({"a": True, "b": False}, failure_budget=1)
