"""Catch-up per release on real content: a cycle patches a Debian 11 and a Debian 12 host while
a second Debian 11 host is away (podman pause). The same packages (PAM, perl-base, tzdata …) are
pending on both releases at different versions. When the away host is back, the scheduled
catch-up installs exactly what the missed cycle approved for Debian 11 hosts, and no Debian 12
version. Both cycles are rolled back at the end, so the hosts are at the main suite again.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from conftest import ROOT, installed_versions
from reallab import INVENTORY, pending, pw

from patchwave.paths import Paths
from patchwave.store import Store

ENV = {**os.environ, "CONTAINERS_CONF": str(Paths(ROOT).containers_conf)}
POLICY = """\
version: 1
name: real-catch-up
targets: {hosts: ["d11-file", "d11-copy", "d12-http"]}
waves: [{name: all}]
gates: {failure_budget: "100%"}
reboot: never
restart: never
user_notice: {mode: none}
"""


def test_catch_up_never_carries_another_releases_version(real_lab: Any, tmp_path: Path) -> None:
    hosts = {h.name: h for h in real_lab.hosts()}
    away, peer, other = hosts["d11-copy"], hosts["d11-file"], hosts["d12-http"]
    before = installed_versions(away.container)
    d11, d12 = pending(away.container), pending(other.container)
    shared = sorted(n for n in set(d11) & set(d12) if d11[n] != d12[n])
    assert shared, "no package pending on Debian 11 and 12 at different versions: nothing to tell apart"
    print("pending on both releases at different versions:", shared)
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    schedule = tmp_path / "schedule.yml"
    schedule.write_text(f"inventory: {INVENTORY}\n"
                        "jobs:\n  - {name: catch-up, kind: catch-up, every: 1h, groups: [debian11]}\n"
                        "retry: {window_minutes: 0}\n")
    cycles: list[str] = []
    try:
        subprocess.run(["podman", "pause", away.container], env=ENV, check=True, capture_output=True)
        try:
            rc, missed, err = pw("cycle", "run", "-i", str(INVENTORY), "--policy", str(policy), store=url)
        finally:
            subprocess.run(["podman", "unpause", away.container], env=ENV, check=True, capture_output=True)
        assert rc == 1 and missed, err[-3000:]
        cycles.append(missed["cycle_id"])
        states = {h["host"]: h["state"] for h in missed["hosts"]}
        assert states["d11-copy"] == "unreachable", states
        assert states["d11-file"].startswith("patched") and states["d12-http"].startswith("patched"), states

        rc, outcomes, err = pw("schedule", "run", "-s", str(schedule), store=url)
        assert rc == 0, err[-3000:]
        (back,) = [c for run in outcomes for c in run["catch_up"] if c["host"] == away.name]
        assert back["state"].startswith("patched"), back  # pending-restart too: restart: never
        cycles.append(back["cycle"])
        after = installed_versions(away.container)
        assert after == {**before, **d11}, {n: (after.get(n), d11.get(n)) for n in set(after) ^ set(before) | set(d11)
                                            if after.get(n) != {**before, **d11}.get(n)}
        assert all(after[n] != d12[n] for n in shared)  # no Debian 12 version reached the Debian 11 host
        decisions = Store(url).decisions(back["cycle"])
        assert {d.ecosystem for d in decisions} == {"Debian:11"}
        assert {d.name: d.version for d in decisions if d.approved} == d11
        assert installed_versions(peer.container) == {**installed_versions(peer.container), **d11}
    finally:
        for cycle_id in reversed(cycles):
            pw("cycle", "rollback", cycle_id, store=url)
