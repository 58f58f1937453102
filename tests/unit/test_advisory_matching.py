"""Classifying real Debian and Ubuntu updates: OSV records as the distributions publish them
(tests/data/osv/), matched by the host's release and the update's source package, each release
against its own fixed version.

The version strings here and in tests/data/osv/ must stay real Debian/Ubuntu versions of the
form the archive uses (~debNNuN, +debNNuN, esr, ubuntuX.Y, +esmN): matching compares them with
dpkg's ordering, so an invented shape would prove nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchwave.errors import InputError
from patchwave.lab.catalog import RELEASES, installed_version, update_version
from patchwave.models import Advisory, Affected, PendingUpdate, Span
from patchwave.patching import advisories, manifest
from patchwave.patching.policy import Approval

OSV = Path(__file__).resolve().parents[1] / "data" / "osv"


@pytest.fixture(scope="module")
def feed() -> dict[str, Advisory]:
    return {a.id: a for a in advisories.load(OSV)}


def update(name: str, installed: str | None, candidate: str, ecosystem: str, source: str | None = None,
           host: str = "h1") -> PendingUpdate:
    return PendingUpdate(host=host, name=name, installed=installed, candidate=candidate, source=source or name,
                         security=False, held=False, new_install=installed is None, ecosystem=ecosystem)


def ids(found: list[Advisory]) -> list[str]:
    return [a.id for a in found]


def test_the_published_format_parses_with_ecosystems_packages_and_cves(feed: dict[str, Advisory]) -> None:
    assert sorted(feed) == ["DEBIAN-CVE-2025-90031", "DEBIAN-CVE-2025-90041", "DLA-9902-1", "DSA-9901-1",
                            "UBUNTU-CVE-2025-90051"]
    dsa = feed["DSA-9901-1"]
    assert [(e.ecosystem, e.package, e.spans) for e in dsa.affected] == [
        ("Debian:11", "openssl", (Span("0", fixed="1.1.1w-0+deb11u4"),)),
        ("Debian:12", "openssl", (Span("0", fixed="3.0.17-1~deb12u3"),))]
    assert dsa.cves == ("CVE-2025-90011", "CVE-2025-90012")  # from `upstream`; DEBIAN-CVE ids are not CVEs
    assert "DEBIAN-CVE-2025-90011" in dsa.names  # --advisory may name any of them
    assert feed["DEBIAN-CVE-2025-90031"].severity == "medium"  # the most urgent release's urgency
    assert feed["DEBIAN-CVE-2025-90041"].severity == "high"
    # Ubuntu names a severity and gives a vector: the vector's score wins (5.9: medium)
    assert (feed["UBUNTU-CVE-2025-90051"].cvss_score, feed["UBUNTU-CVE-2025-90051"].severity) == (5.9, "medium")
    assert "libssl3" in feed["UBUNTU-CVE-2025-90051"].affected[1].binaries


def test_binary_of_a_source_matches_with_its_release_fixed_version(feed: dict[str, Advisory]) -> None:
    dsa = feed["DSA-9901-1"]
    bookworm = update("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "Debian:12", source="openssl")
    assert advisories.fixed_version(bookworm, dsa) == "3.0.17-1~deb12u3"
    assert ids(advisories.matching(bookworm, list(feed.values()))) == ["DSA-9901-1"]
    bullseye = update("libssl1.1", "1.1.1w-0+deb11u3", "1.1.1w-0+deb11u4", "Debian:11", source="openssl")
    assert advisories.fixed_version(bullseye, dsa) == "1.1.1w-0+deb11u4"
    # a binary of another architecture is the same package
    assert advisories.fixed_version(update("libssl3:i386", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "Debian:12",
                                           source="openssl"), dsa) == "3.0.17-1~deb12u3"


def test_a_fix_above_the_candidate_does_not_match(feed: dict[str, Advisory]) -> None:
    short = update("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u2", "Debian:12", source="openssl")
    assert advisories.matching(short, list(feed.values())) == []
    done = update("libssl3", "3.0.17-1~deb12u3", "3.0.17-1~deb12u4", "Debian:12", source="openssl")
    assert advisories.matching(done, list(feed.values())) == []  # already fixed before the update


def test_a_record_for_debian_11_never_classifies_a_debian_12_update(feed: dict[str, Advisory]) -> None:
    dla = feed["DLA-9902-1"]
    bookworm = update("firefox-esr", "128.4.0esr-1~deb12u1", "128.5.0esr-1~deb12u1", "Debian:12")
    # the versions alone would call it fixed: 128.4.0esr-1~deb12u1 < 128.5.0esr-1~deb11u1 <= the candidate
    versions_only = Advisory("X", (), "high", "", "", {"firefox-esr": "128.5.0esr-1~deb11u1"})
    assert advisories.matching(bookworm, [versions_only]) == [versions_only]
    assert advisories.matching(bookworm, [dla]) == []
    bullseye = update("firefox-esr", "128.4.0esr-1~deb11u1", "128.5.0esr-1~deb11u1", "Debian:11")
    assert advisories.matching(bullseye, [dla]) == [dla]
    # a Debian 11 host is judged by the DSA's Debian 11 entry only
    libssl = update("libssl1.1", "1.1.1w-0+deb11u3", "1.1.1w-0+deb11u4", "Debian:11", source="openssl")
    assert [e.ecosystem for e in advisories.entries_for(libssl, feed["DSA-9901-1"])] == ["Debian:11"]


def test_unfixed_in_one_release_fixed_in_others(feed: dict[str, Advisory]) -> None:
    cve = feed["DEBIAN-CVE-2025-90031"]
    assert advisories.fixed_version(update("libcurl4", "7.88.1-10+deb12u12", "7.88.1-10+deb12u14", "Debian:12",
                                           source="curl"), cve) == "7.88.1-10+deb12u14"
    assert advisories.fixed_version(update("curl", "8.14.1-2", "8.14.1-2+deb13u1", "Debian:13"), cve) == \
        "8.14.1-2+deb13u1"
    # Debian 11 has no fix yet: an update there does not fix it, whatever it installs
    assert advisories.fixed_version(update("libcurl4", "7.74.0-1.3+deb11u14", "7.74.0-1.3+deb11u15", "Debian:11",
                                           source="curl"), cve) is None


@pytest.mark.parametrize(("installed", "candidate", "fixed"), [
    ("2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3~deb12u2", "2.9.14+dfsg-1.3~deb12u2"),  # the first fix
    ("2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3~deb12u4", "2.9.14+dfsg-1.3~deb12u2"),  # the smallest fix reached
    ("2.9.14+dfsg-1.3~deb12u3", "2.9.14+dfsg-1.3~deb12u4", "2.9.14+dfsg-1.3~deb12u4"),  # the regression's fix
    ("2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3~deb12u3", None),  # lands in the regression: still vulnerable
    ("2.9.14+dfsg-1.3~deb12u2", "2.9.14+dfsg-1.3~deb12u4", None),  # was not vulnerable: fixes nothing here
])
def test_several_ranges_take_the_right_fixed_version(feed: dict[str, Advisory], installed: str, candidate: str,
                                                     fixed: str | None) -> None:
    # the record lists the later range first, and a GIT range (a commit, not a Debian version) between
    assert advisories.fixed_version(update("libxml2", installed, candidate, "Debian:12"),
                                    feed["DEBIAN-CVE-2025-90041"]) == fixed


def test_ubuntu_releases_lts_and_pro(feed: dict[str, Advisory]) -> None:
    cve = feed["UBUNTU-CVE-2025-90051"]
    jammy = update("libssl3", "3.0.2-0ubuntu1.19", "3.0.2-0ubuntu1.20", "Ubuntu:22.04:LTS", source="openssl")
    assert advisories.fixed_version(jammy, cve) == "3.0.2-0ubuntu1.20"
    # an os-release without the LTS mark is the same release
    assert advisories.fixed_version(jammy.__class__(**{**jammy.__dict__, "ecosystem": "Ubuntu:22.04"}), cve) == \
        "3.0.2-0ubuntu1.20"
    # a 24.04 host is judged by 24.04's fixed version only
    noble = update("libssl3t64", "3.0.13-0ubuntu3.5", "3.0.13-0ubuntu3.6", "Ubuntu:24.04:LTS", source="openssl")
    assert advisories.fixed_version(noble, cve) == "3.0.13-0ubuntu3.6"
    assert advisories.fixed_version(update("libssl3t64", "3.0.2-0ubuntu1.19", "3.0.2-0ubuntu1.20",
                                           "Ubuntu:24.04:LTS", source="openssl"), cve) is None
    # 18.04 is fixed only through Ubuntu Pro (ESM): a host that reaches that version has it
    bionic = update("libssl1.1", "1.1.1-1ubuntu2.1~18.04.23+esm6", "1.1.1-1ubuntu2.1~18.04.23+esm7",
                    "Ubuntu:18.04:LTS", source="openssl")
    assert advisories.fixed_version(bionic, cve) == "1.1.1-1ubuntu2.1~18.04.23+esm7"
    # and an Ubuntu record says nothing about a Debian host
    assert advisories.fixed_version(update("libssl3", "3.0.2-0ubuntu1.19", "3.0.2-0ubuntu1.20", "Debian:12",
                                           source="openssl"), cve) is None


def test_the_binary_name_is_only_a_fallback_within_the_hosts_ecosystem() -> None:
    def entry(ecosystem: str, name: str, fixed: str) -> Affected:
        return Affected(ecosystem, name, (Span("0", fixed=fixed),))

    both = Advisory("A", (), "high", "", "", affected=(entry("Debian:12", "libssl3", "3.0.17-1~deb12u9"),
                                                        entry("Debian:12", "openssl", "3.0.17-1~deb12u3")))
    up = update("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "Debian:12", source="openssl")
    assert advisories.fixed_version(up, both) == "3.0.17-1~deb12u3"  # the source package's entry decides
    binary_only = Advisory("B", (), "high", "", "", affected=(entry("Debian:12", "libssl3", "3.0.17-1~deb12u3"),))
    assert advisories.fixed_version(up, binary_only) == "3.0.17-1~deb12u3"
    other_release = Advisory("C", (), "high", "", "", affected=(entry("Debian:11", "libssl3", "3.0.17-1~deb12u3"),))
    assert advisories.fixed_version(up, other_release) is None


def test_an_update_of_unknown_release_meets_only_records_without_one(feed: dict[str, Advisory]) -> None:
    """A scan from before scans said their release (ecosystem ''): no release's fix is claimed."""
    old = update("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "", source="openssl")
    assert advisories.matching(old, list(feed.values())) == []
    general = Advisory("G", (), "high", "", "", affected=(Affected("Debian", "openssl",
                                                                   (Span("0", fixed="3.0.17-1~deb12u3"),)),))
    assert advisories.matching(old, [general]) == [general]
    # a host that knows its release still meets a record that names no release ...
    known = update("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "Debian:12", source="openssl")
    assert advisories.matching(known, [general]) == [general]
    # ... but not one that names only another distribution
    ubuntu = Advisory("U", (), "high", "", "", affected=(Affected("Ubuntu", "openssl",
                                                                  (Span("0", fixed="3.0.17-1~deb12u3"),)),))
    assert advisories.matching(known, [ubuntu]) == []


def test_decisions_record_the_release_and_the_right_advisories(feed: dict[str, Advisory]) -> None:
    ups = [update("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "Debian:12", source="openssl", host="web1"),
           update("firefox-esr", "128.4.0esr-1~deb12u1", "128.5.0esr-1~deb12u1", "Debian:12", host="web1"),
           update("firefox-esr", "128.4.0esr-1~deb11u1", "128.5.0esr-1~deb11u1", "Debian:11", host="db1")]
    built = {(d.host, d.name): d for d in manifest.build("c1", ups, list(feed.values()), Approval()).decisions}
    assert built[("web1", "libssl3")].advisories == ("DSA-9901-1",) and built[("web1", "libssl3")].approved
    assert built[("web1", "libssl3")].ecosystem == "Debian:12"
    assert not built[("web1", "firefox-esr")].approved  # the DLA is for Debian 11; no security pocket either
    assert built[("db1", "firefox-esr")].advisories == ("DLA-9902-1",)
    assert built[("db1", "firefox-esr")].cves == ("CVE-2025-90021", "CVE-2025-90022")


def test_the_lab_advisories_classify_by_release() -> None:
    lab = advisories.load(Path(__file__).resolve().parents[2] / "orchestrator/src/patchwave/lab/data/advisories")
    for codename, number in RELEASES.items():
        release = f"Debian:{number}"
        libssl = update("pw-libssl", installed_version("pw-libssl", codename), update_version("pw-libssl", codename),
                        release)
        assert "PWSA-2026-0001" in ids(advisories.matching(libssl, lab))
        # the record names the source package; the binaries are called otherwise
        pam = update("pw-pam-modules-bin", installed_version("pw-pam-modules-bin", codename),
                     update_version("pw-pam-modules-bin", codename), release, source="pw-pam")
        assert ids(advisories.matching(pam, lab)) == ["PWSA-2026-0006"]
    assert advisories.matching(update("pw-libssl", "1.0-1", "1.0-2", "Debian:10"), lab) == []
    # Debian 11's fix is another version: an update that stops short of it is not the fix
    short = update("pw-libssl", "0.9.8-4", "0.9.8-5", "Debian:11")
    assert advisories.matching(short, lab) == []


@pytest.mark.parametrize(("entry", "message"), [
    ({"package": {"ecosystem": "Debian:12", "name": "openssl"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "not a version!"}]}]},
     r"affected\[0\]: introduced version 'not a version!' is not a Debian version"),
    ({"package": {"ecosystem": 12, "name": "openssl"}}, r"affected\[0\].package.ecosystem must be text"),
    ({"package": {"ecosystem": "Debian:12", "name": "openssl"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"last_affected": "$(id)"}]}]},
     r"affected\[0\]: last_affected version"),
])
def test_bad_entries_name_file_line_and_entry(tmp_path: Path, entry: dict[str, object], message: str) -> None:
    bad = tmp_path / "feed.json"
    bad.write_text(json.dumps([json.loads((OSV / "DLA-9902-1.json").read_text()),
                               {"id": "DSA-9999-9", "affected": [entry]}], indent=2))
    line = bad.read_text().splitlines().index('    "id": "DSA-9999-9",') + 1
    with pytest.raises(InputError, match=rf"feed.json:{line}: advisory DSA-9999-9: {message}"):
        advisories.load(bad)
    record = {"id": "DSA-9999-8", "upstream": "CVE-2025-1", "affected": [{"package": {"name": "openssl"}}]}
    with pytest.raises(InputError, match="'upstream' must be a list"):
        advisories.parse("feed.json", record)


def test_other_ecosystems_and_range_types_are_left_out() -> None:
    record = {"id": "GHSA-xxxx", "affected": [
        {"package": {"ecosystem": "PyPI", "name": "cryptography"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "42.0.0rc1!"}]}]},
        {"package": {"ecosystem": "Debian:12", "name": "python-cryptography"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "v42"}]},
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "38.0.4-3+deb12u1"}]}]}]}
    parsed = advisories.parse("feed.json", record)
    assert [(e.ecosystem, e.spans) for e in parsed.affected] == [
        ("Debian:12", (Span("0", fixed="38.0.4-3+deb12u1"),))]


def test_an_emergency_may_name_a_cve_a_dsa_lists_upstream(feed: dict[str, Advisory]) -> None:
    ups = [update("libssl3", "3.0.16-1~deb12u1", "3.0.17-1~deb12u3", "Debian:12", source="openssl"),
           update("libcurl4", "7.88.1-10+deb12u12", "7.88.1-10+deb12u14", "Debian:12", source="curl")]
    built = {d.name: d for d in manifest.build("e1", ups, list(feed.values()), Approval(),
                                               only={"CVE-2025-90012"}).decisions}
    assert built["libssl3"].approved and built["libssl3"].reason == "approved: emergency fix for DSA-9901-1"
    assert not built["libcurl4"].approved
