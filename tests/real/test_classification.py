"""Truthful classification of the real updates pending in the real-content lab, with OSV records
written in the format Debian publishes them: one record names the SOURCE package of a Debian 12
update whose binary is named differently (libssl3 is built by openssl), with that release's
fixed version; another names the same source for Debian 11 only, with the Debian 12 version as
its fix, and must not classify the Debian 12 update. `cycle plan` changes no host.

The packages and versions are read from the hosts when the test runs (the archive moves); the
advisory ids and CVE numbers are made up for the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import podman_exec
from reallab import INVENTORY, pending, pw


def osv(ident: str, cve: str, ecosystem: str, source: str, fixed: str) -> dict[str, Any]:
    return {
        "schema_version": "1.6.0", "id": ident, "modified": "2026-12-01T00:00:00Z",
        "published": "2026-11-30T00:00:00Z", "aliases": [cve], "summary": f"{source} security update",
        "affected": [{
            "package": {"ecosystem": ecosystem, "name": source, "purl": f"pkg:deb/debian/{source}?arch=source"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            "database_specific": {"urgency": "high"},
        }],
    }


def source_of(container: str, name: str, version: str) -> str:
    show = podman_exec(container, "apt-cache", "show", f"{name}={version}")
    for line in show.splitlines():
        if line.startswith("Source:"):
            return line.split()[1]
    return name


def test_real_updates_are_classified_by_release_and_source_package(real_lab: Any, tmp_path: Path) -> None:
    d12 = next(h for h in real_lab.hosts() if h.name == "d12-http")
    updates = pending(d12.container)
    sources = {n: source_of(d12.container, n, v) for n, v in updates.items()}
    differing = sorted(n for n, s in sources.items() if s != n)
    assert differing, f"no Debian 12 update whose binary and source names differ: {sources}"
    binary = differing[0]
    source = sources[binary]
    siblings = sorted(n for n, s in sources.items() if s == source)
    feed = tmp_path / "osv"
    feed.mkdir()
    (feed / "DSA-9001-1.json").write_text(json.dumps(osv("DSA-9001-1", "CVE-2026-90001", "Debian:12", source,
                                                         updates[binary]), indent=2))
    (feed / "DLA-9002-1.json").write_text(json.dumps(osv("DLA-9002-1", "CVE-2026-90002", "Debian:11", source,
                                                         updates[binary]), indent=2))
    policy = tmp_path / "policy.yml"
    policy.write_text("version: 1\nname: classify\nwaves: [{name: all}]\nuser_notice: {mode: none}\n")
    rc, plan, stderr = pw("cycle", "plan", "-i", str(INVENTORY), "--policy", str(policy), "--advisories", str(feed),
                          store=None)
    assert rc == 0, stderr[-3000:]
    decisions = {(d["host"], d["name"]): d for d in plan["decisions"]}
    for name in siblings:
        decision = decisions[("d12-http", name)]
        assert decision["ecosystem"] == "Debian:12"
        assert decision["advisories"] == ["DSA-9001-1"], (name, decision)  # never the Debian 11 record
        assert decision["severity"] == "high" and decision["approved"] is True, decision
    for (host, _name), decision in decisions.items():
        if host.startswith("d13-"):
            assert "DSA-9001-1" not in decision["advisories"] and "DLA-9002-1" not in decision["advisories"]
        if host.startswith("d11-"):
            assert decision["ecosystem"] == "Debian:11" and "DSA-9001-1" not in decision["advisories"]
