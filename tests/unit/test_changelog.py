"""Debian changelogs of staged packages (module_utils/changelog.py): parsed from this controller's
real changelogs, read out of .debs built here with dpkg-deb, and dpkg's version order."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.patchwave.endpoint.plugins.module_utils import changelog
from debian.changelog import Changelog
from debian.debian_support import version_compare
from hypothesis import given, settings
from hypothesis import strategies as st

# packages that are on every Debian 12 controller and whose changelogs name CVEs
REAL = ("libssl3", "openssl", "libc6", "libgnutls30", "libsystemd0", "libexpat1", "zlib1g")


def _cmp(a: str, b: str) -> int:
    return int(version_compare(a, b))


def _real_changelog() -> tuple[str, str]:
    """The first of REAL with a real changelog of several entries, read with zcat (as a person would)."""
    for package in REAL:
        path = Path("/usr/share/doc") / package / "changelog.Debian.gz"
        if path.is_file():
            text = subprocess.run(["zcat", str(path)], capture_output=True, text=True, check=True).stdout
            if len(Changelog(text, strict=False)) >= 5:
                return package, text
    raise AssertionError(f"none of {REAL} has a changelog in /usr/share/doc on this controller")


def test_a_real_changelog_since_a_version_some_entries_back() -> None:
    package, text = _real_changelog()
    blocks = list(Changelog(text, strict=False))  # python-debian's parser: an independent reading
    installed = str(blocks[4].version)
    newer = blocks[:4]
    result = changelog.parse(text, installed, _cmp)
    assert result["versions"] == [str(b.version) for b in newer], package
    expected_cves = sorted({c for b in newer for line in b.changes() for c in re.findall(r"CVE-\d{4}-\d{4,}", line)})
    assert result["cves"] == expected_cves
    order = ["low", "medium", "high", "emergency", "critical"]
    urgencies = [b.urgency.split()[0].lower() for b in newer if b.urgency.split()[0].lower() in order]
    assert result["urgency"] == max(urgencies, key=order.index)
    # the same answer with the module's own version order (no dpkg, no python-debian)
    assert changelog.parse(text, installed) == result
    # a new package (nothing installed): the newest entry only
    assert changelog.parse(text, None)["versions"] == [str(blocks[0].version)]
    # installed at the newest version: nothing is newer
    assert changelog.parse(text, str(blocks[0].version)) == {"urgency": None, "cves": [], "versions": []}


def test_the_real_changelog_agrees_with_dpkg_parsechangelog(tmp_path: Path) -> None:
    if shutil.which("dpkg-parsechangelog") is None:
        pytest.skip("dpkg-dev is not installed")
    _package, text = _real_changelog()
    (tmp_path / "changelog").write_text(text)
    blocks = list(Changelog(text, strict=False))
    since = str(blocks[3].version)
    out = subprocess.run(["dpkg-parsechangelog", "-l", str(tmp_path / "changelog"), "--since", since, "-S", "Changes"],
                         capture_output=True, text=True, check=True).stdout
    assert changelog.parse(text, since)["cves"] == sorted(set(re.findall(r"CVE-\d{4}-\d{4,}", out)))


SYNTHETIC = """\
pw-libssl (1.0-4) bookworm-security; urgency=low

  * Rebuild.

 -- Maintainer <m@example.org>  Tue, 02 Jan 2024 00:00:00 +0000

pw-libssl (1.0-3) bookworm-security; urgency=Critical (see #123), binary-only=no

  * Fix CVE-2024-0001 and CVE-2024-12345.
  * Mentions CVE-2024-0001 again; cve-2024-9999 (lower case) and CVE-24-1 are not ids.

 -- Maintainer <m@example.org>  Mon, 01 Jan 2024 00:00:00 +0000

pw-libssl (1.0-2) bookworm; urgency=emergency

  * Fix CVE-2023-7777.

 -- Maintainer <m@example.org>  Sun, 31 Dec 2023 00:00:00 +0000

pw-libssl (1.0-1) bookworm; urgency=whenever

  * Fix CVE-2023-0002.

 -- Maintainer <m@example.org>  Sat, 30 Dec 2023 00:00:00 +0000

Local variables:
mode: debian-changelog
End:
pw-libssl (0.1-1) unstable; urgency=high

  * Never read: after the end marker. CVE-2000-0001.
"""


def test_urgency_order_cve_ids_and_the_stop() -> None:
    assert changelog.parse(SYNTHETIC, "1.0-2") == {
        "urgency": "critical", "cves": ["CVE-2024-0001", "CVE-2024-12345"], "versions": ["1.0-4", "1.0-3"]}
    # emergency < critical; an unknown urgency word counts for nothing
    assert changelog.parse(SYNTHETIC, "1.0-1")["urgency"] == "critical"
    assert changelog.parse(SYNTHETIC, "1.0-1")["cves"] == ["CVE-2023-7777", "CVE-2024-0001", "CVE-2024-12345"]
    assert changelog.parse(SYNTHETIC, "0.9") == {
        "urgency": "critical", "cves": ["CVE-2023-0002", "CVE-2023-7777", "CVE-2024-0001", "CVE-2024-12345"],
        "versions": ["1.0-4", "1.0-3", "1.0-2", "1.0-1"]}
    from_emergency = SYNTHETIC[SYNTHETIC.index("pw-libssl (1.0-2)"):]
    assert changelog.parse(from_emergency, "1.0-1")["urgency"] == "emergency"
    only_unknown = SYNTHETIC[SYNTHETIC.index("pw-libssl (1.0-1)"):]
    assert changelog.parse(only_unknown, "1.0")["urgency"] is None
    assert changelog.parse(SYNTHETIC.encode(), "1.0-3")["versions"] == ["1.0-4"]  # bytes are fine too
    assert changelog.parse("not a changelog\n", "1.0") == {"urgency": None, "cves": [], "versions": []}


def test_an_epoch_and_tilde_in_the_installed_version() -> None:
    text = ("openssl (3.0.13-1~deb12u1) bookworm-security; urgency=medium\n\n  * CVE-2024-2511\n\n"
            " -- M <m@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n\n"
            "openssl (3.0.11-1~deb12u2) bookworm-security; urgency=medium\n\n  * CVE-2023-5678\n\n"
            " -- M <m@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n")
    assert changelog.parse(text, "3.0.11-1~deb12u2")["versions"] == ["3.0.13-1~deb12u1"]
    assert changelog.parse(text, "3.0.11-1")["versions"] == ["3.0.13-1~deb12u1"]  # ~deb12u2 sorts before -1
    assert changelog.parse(text, "3.0.11-1~deb12u1")["cves"] == ["CVE-2023-5678", "CVE-2024-2511"]
    # entries that leave out the epoch are read with the installed version's (libbpf on Debian 11 does that)
    assert changelog.parse(text, "1:3.0.11-1~deb12u2")["versions"] == ["3.0.13-1~deb12u1"]


PAIRS = [("1.0", "1.0"), ("1.0", "1.0-0"), ("1:1.0", "2.0"), ("1.0~rc1", "1.0"), ("1.0~~", "1.0~"),
         ("1.0a", "1.0"), ("1.0+b1", "1.0"), ("1.0", "1.0.0"), ("1.0-1", "1.0-1.1"), ("2.36-9+deb12u4", "2.36-9"),
         ("3.0.11-1~deb12u2", "3.0.11-1"), ("1.2.10", "1.2.9"), ("0:1.0", "1.0"), ("1.0-a", "1.0-A"),
         ("1.0.", "1.0"), ("10", "9"), ("1.001", "1.1"), ("7.4p1-10+deb9u7", "7.4p1-10+deb9u10")]


@pytest.mark.parametrize(("left", "right"), PAIRS)
def test_version_order_is_dpkgs(left: str, right: str) -> None:
    gt = subprocess.run(["dpkg", "--compare-versions", left, "gt", right], check=False).returncode == 0
    lt = subprocess.run(["dpkg", "--compare-versions", left, "lt", right], check=False).returncode == 0
    assert changelog.compare_versions(left, right) == (1 if gt else -1 if lt else 0)
    assert changelog.compare_versions(right, left) == -changelog.compare_versions(left, right)


_part = st.text(alphabet="0123456789.+~abzAZ", min_size=1, max_size=6)
_versions = st.builds(lambda e, u, r: f"{e}{u}{r}", st.sampled_from(["", "1:", "0:"]),
                      st.builds(lambda d, rest: d + rest, st.sampled_from("0123456789"), _part),
                      st.sampled_from(["", "-1", "-1~deb12u1", "-2+b1", "-0"]))


@settings(max_examples=300, deadline=None)
@given(_versions, _versions)
def test_version_order_matches_python_debian(left: str, right: str) -> None:
    expected = version_compare(left, right)
    assert changelog.compare_versions(left, right) == (expected > 0) - (expected < 0)


# --- from_deb: .debs built here --------------------------------------------------------------

class Module:
    def get_bin_path(self, name: str, required: bool = False) -> str | None:
        return shutil.which(name)


def _deb(tmp_path: Path, package: str, files: dict[str, bytes | str], version: str = "1.0-2") -> Path:
    """Build a .deb whose data holds `files` (a str value is a symlink target)."""
    root = tmp_path / f"{package}-build"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
                                         "Maintainer: Test <t@example.org>\nDescription: test\n")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.symlink_to(content)
        else:
            path.write_bytes(content)
    deb = tmp_path / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def test_from_deb_reads_the_changelog_and_the_binnmu_entries(tmp_path: Path) -> None:
    binnmu = ("pw-libssl (1.0-3+b1) bookworm; urgency=low, binary-only=yes\n\n  * Binary-only non-maintainer upload.\n\n"
              " -- Builder <b@example.org>  Wed, 03 Jan 2024 00:00:00 +0000\n\n")
    deb = _deb(tmp_path, "pw-libssl", {
        "usr/share/doc/pw-libssl/changelog.Debian.gz": gzip.compress(SYNTHETIC.encode()),
        "usr/share/doc/pw-libssl/changelog.Debian.amd64.gz": gzip.compress(binnmu.encode()),
        "usr/share/doc/pw-libssl/changelog.gz": gzip.compress(b"Upstream news, not read\n"),
        "usr/lib/pw-libssl.so": b"\x7fELF not really",
    })
    result = changelog.from_deb(Module(), str(deb), "pw-libssl", "1.0-2", _cmp)
    assert result == {"urgency": "critical", "cves": ["CVE-2024-0001", "CVE-2024-12345"],
                      "versions": ["1.0-3+b1", "1.0-4", "1.0-3"]}
    # an arch-qualified name finds the same doc directory; nothing was written next to the .deb
    assert changelog.from_deb(Module(), str(deb), "pw-libssl:amd64", None)["versions"] == ["1.0-3+b1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pw-libssl-build", deb.name]


def test_from_deb_without_a_changelog_of_its_own(tmp_path: Path) -> None:
    linked = _deb(tmp_path, "pw-libssl-dev", {"usr/share/doc/pw-libssl-dev": "pw-libssl",
                                              "usr/include/pw.h": b"int x;\n"})
    assert changelog.from_deb(Module(), str(linked), "pw-libssl-dev", "1.0-1") is None
    empty = _deb(tmp_path, "pw-empty", {"usr/share/doc/pw-empty/copyright": b"GPL\n"})
    assert changelog.from_deb(Module(), str(empty), "pw-empty", "1.0-1") is None
    upstream_only = _deb(tmp_path, "pw-up", {"usr/share/doc/pw-up/changelog.gz": gzip.compress(b"2024: v1.0\n")})
    assert changelog.from_deb(Module(), str(upstream_only), "pw-up", "1.0-1") is None
    broken = tmp_path / "broken.deb"
    broken.write_bytes(b"!<arch>\nnot a deb")
    assert changelog.from_deb(Module(), str(broken), "pw-libssl", "1.0-1") is None
    assert changelog.from_deb(Module(), str(tmp_path / "missing.deb"), "pw-libssl", "1.0-1") is None

    class NoDpkgDeb:
        def get_bin_path(self, name: str, required: bool = False) -> Any:
            return None

    assert changelog.from_deb(NoDpkgDeb(), str(linked), "pw-libssl-dev", "1.0-1") is None


def test_from_deb_reads_a_native_packages_changelog(tmp_path: Path) -> None:
    text = ("pw-tool (2.1) bookworm; urgency=high\n\n  * Fix CVE-2024-4242.\n\n"
            " -- M <m@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n\n"
            "pw-tool (2.0) bookworm; urgency=low\n\n  * First.\n\n -- M <m@example.org>  Sun, 31 Dec 2023 00:00:00 +0000\n")
    deb = _deb(tmp_path, "pw-tool", {"usr/share/doc/pw-tool/changelog.gz": gzip.compress(text.encode())}, "2.1")
    assert changelog.from_deb(Module(), str(deb), "pw-tool", "2.0", _cmp) == {
        "urgency": "high", "cves": ["CVE-2024-4242"], "versions": ["2.1"]}


def test_a_huge_changelog_is_read_only_up_to_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = ("pw-big (1.0-{n}) bookworm; urgency=medium\n\n  * CVE-2024-{n:04d}\n\n"
             " -- M <m@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n\n")
    text = "".join(entry.format(n=n) for n in range(4000, 0, -1))
    deb = _deb(tmp_path, "pw-big", {"usr/share/doc/pw-big/changelog.Debian.gz": gzip.compress(text.encode())})
    full = changelog.read_deb(shutil.which("dpkg-deb") or "dpkg-deb", str(deb), "pw-big")
    assert full == text
    capped = changelog.read_deb(shutil.which("dpkg-deb") or "dpkg-deb", str(deb), "pw-big", limit=10_000)
    assert capped is not None and len(capped) <= 10_000 and capped.endswith("\n") and text.startswith(capped)
    # what was read still answers for the newest entries
    assert changelog.parse(capped, "1.0-3990")["versions"][:2] == ["1.0-4000", "1.0-3999"]


def test_an_entry_without_the_epoch_is_read_with_the_installed_epoch() -> None:
    # libbpf on Debian 11: version 1:0.3-2+deb11u1, whose changelog says "0.3-2+deb11u1"
    text = ("libbpf (0.3-2+deb11u1) bullseye-security; urgency=medium\n\n  * Fix CVE-2021-45940.\n\n"
            " -- LTS <lts@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n\n"
            "libbpf (0.3-2) unstable; urgency=low\n\n  * Upload.\n\n -- M <m@example.org>  Mon, 01 Jan 2021 00:00:00 +0000\n")
    found = changelog.parse(text, "1:0.3-2")
    assert found == {"urgency": "medium", "cves": ["CVE-2021-45940"], "versions": ["0.3-2+deb11u1"]}
