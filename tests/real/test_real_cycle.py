"""Patch the security archive's real updates on Debian 11, 12 and 13 through http, file: and
copy:, with every host healthy afterwards; then roll every one of them back exactly (PAM's
Pre-Depends chain, libc6, openssh-server, dpkg and apt themselves included), healthy again.

What is pending is read from apt inside each host before the cycle; the hosts' versions and
health are read with podman exec and a fresh ssh login, never through Patchwave.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from reallab import INVENTORY, health, healthy, pending, pw, snapshot

from patchwave.lab import real
from patchwave.lab.catalog import RELEASES
from patchwave.store import Store

POLICY = """\
version: 1
name: real-security
waves:
  - {name: canary, size: 1, order_by: name}
  - {name: broad}
gates:
  failure_budget: 0
reboot: if_required
user_notice: {mode: none}
"""
# what the issue calls the hard packages; the test reports which of them the archive updates now
HARD = ("openssh-server", "libc6", "dpkg", "apt", "libpam-modules", "libpam-modules-bin", "libpam0g", "sudo",
        "perl-base", "python3", "tzdata", "libssl3", "libssl1.1", "libssl3t64")


def test_real_updates_patch_and_roll_back_exactly_on_every_release(real_lab: Any, tmp_path: Path) -> None:
    hosts = real_lab.hosts()
    before = snapshot(real_lab)
    expected = {h.name: pending(h.container) for h in hosts}
    for release in RELEASES:
        counts = {h.name: len(expected[h.name]) for h in hosts if h.release == release}
        assert all(counts.values()), f"{release}: no real update pending on {counts}: the lab content is empty"
    updated = {h.release: sorted(set(expected[h.name]) & set(HARD)) for h in hosts}
    print("real updates per release:", {h.release: len(expected[h.name]) for h in hosts})
    print("hard packages among them:", updated)
    assert any("libpam-modules" in names for names in updated.values()), (
        "the real content no longer holds a PAM update, so the Pre-Depends rollback is not exercised")

    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    store = f"sqlite:///{tmp_path / 'pw.db'}"
    started = time.monotonic()
    rc, result, stderr = pw("cycle", "run", "-i", str(INVENTORY), "--policy", str(policy), "--skip-soak", store=store)
    print(f"cycle run: {time.monotonic() - started:.0f}s")
    assert rc == 0, stderr[-4000:]
    cycle_id = result["cycle_id"]
    patched = snapshot(real_lab)
    for host in hosts:
        want = {**before[host.name], **expected[host.name]}
        wrong = {n: (patched[host.name].get(n), v) for n, v in want.items() if patched[host.name].get(n) != v}
        assert not wrong, f"{host.name}: not at the expected versions (installed, expected): {wrong}"
        report = health(host, real_lab)
        assert healthy(report), f"{host.name} after patching: {report}"
    states = {h["host"]: h["state"] for h in result["hosts"]}
    assert all(s.startswith("patched") for s in states.values()), states
    staged = {r["host"]: r["data"]["staged"] for r in Store(store).host_results(cycle_id) if r["stage"] == "stage"}
    for host in hosts:
        transport = host.groups[0].removeprefix("transport_")
        for item in staged[host.name]:
            # staged from where apt really takes it, with what the update's own changelog says
            assert item["source"].startswith(real.mirror_uri(transport)), item
            assert item["changelog"] and item["changelog"]["urgency"], (host.name, item["name"], item["changelog"])
        cves = {c for item in staged[host.name] for c in item["changelog"]["cves"]}
        print(f"{host.name}: {len(cves)} CVE id(s) named by the changelogs of its {len(staged[host.name])} updates")
        assert cves, f"{host.name}: no staged update names a CVE in its changelog"

    started = time.monotonic()
    rc, _rolled, stderr = pw("cycle", "rollback", cycle_id, store=store)
    print(f"cycle rollback: {time.monotonic() - started:.0f}s")
    assert rc == 0, stderr[-4000:]
    after = snapshot(real_lab)
    for host in hosts:
        assert after[host.name] == before[host.name], {
            n: (before[host.name].get(n), after[host.name].get(n))
            for n in set(before[host.name]) | set(after[host.name])
            if before[host.name].get(n) != after[host.name].get(n)}
        report = health(host, real_lab)
        assert healthy(report), f"{host.name} after the rollback: {report}"
        assert pending(host.container) == expected[host.name], f"{host.name}: the same updates are pending again"
    rc, status, _stderr = pw("cycle", "status", cycle_id, store=store)
    assert {h["host"]: h["state"] for h in status["hosts"]} == {h.name: "rolled-back" for h in hosts}
