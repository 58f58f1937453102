"""A host that misses a patch cycle catches up at the next due run, without re-approval: ws2
(Debian 11) is paused (podman pause) during a cycle that approves two fixes for ws1 (Debian 12)
and db1 (Debian 11); both are patched, ws2 ends unreachable. A scheduled catch-up job while ws2
is still away finds that out with a scan and starts no cycle; once it is back, the next due run
gives it a one-host cycle that installs exactly the versions the missed cycle approved for Debian
11 hosts (approvals are per release: ws1's Debian 12 approvals alone would carry nothing to it),
and nothing else it has pending, read inside the container with dpkg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT, installed_versions

from patchwave.lab.catalog import installed_version, update_version
from patchwave.store import Store

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf")}
POLICY = """\
version: 1
name: laptops
targets: {hosts: [ws1, ws2, db1]}   # db1: a Debian 11 host the missed cycle reaches
approval:
  include: [pw-libssl, pw-tzdata]
  approve: [pw-tzdata=2026b-1]   # a regular update someone approved by hand
waves: [{name: all}]
gates: {failure_budget: "100%"}
reboot: never
user_notice: {mode: none}
"""


def schedule(path: Path, job: str) -> Path:
    path.write_text(f"jobs:\n  - {{name: {job}, kind: catch-up, every: 1h, groups: [workstations]}}\n"
                    "retry: {window_minutes: 0}\n")
    return path


def pw(*args: str, store: str) -> tuple[int, Any, str]:
    proc = subprocess.run([PATCHWAVE, *args, "--json", "--store", store], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=1800)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None, proc.stderr


def test_host_that_missed_a_cycle_catches_up_with_its_approvals(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab.down()
    lab.up()  # fresh hosts at the old versions
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    ws1, ws2, db1 = (next(h for h in lab.hosts() if h.name == n) for n in ("ws1", "ws2", "db1"))

    subprocess.run(["podman", "pause", ws2.container], env=ENV, check=True, capture_output=True)
    try:
        rc, missed, err = pw("cycle", "run", "--policy", str(policy), store=url)
        assert rc == 1, err[-3000:]
        assert {h["host"]: h["state"] for h in missed["hosts"]} == {"ws1": "patched", "ws2": "unreachable",
                                                                    "db1": "patched"}
        # each approval keeps the release of the host it was made for
        assert {(d.host, d.ecosystem) for d in Store(url).decisions(missed["cycle_id"]) if d.approved} == {
            ("ws1", "Debian:12"), ("db1", "Debian:11")}
        # still away at the first due run: tried, still unreachable, nothing changes
        rc, outcomes, err = pw("schedule", "run", "-s", str(schedule(tmp_path / "s1.yml", "catch-up-1")), store=url)
        assert rc == 0, err[-3000:]
        (run,) = outcomes
        assert (run["status"], run["unreachable"]) == ("partial", ["ws2"]), run
        (away,) = run["catch_up"]
        assert (away["host"], away["missed"], away["state"]) == ("ws2", missed["cycle_id"], "unreachable"), away
        assert [c["id"] for c in Store(url).rows("cycles")] == [missed["cycle_id"]]  # a scan found it away: no cycle
    finally:
        subprocess.run(["podman", "unpause", ws2.container], env=ENV, check=True, capture_output=True)
    before = installed_versions(ws2.container)
    # ws2 and db1 are Debian 11: their pw-libssl fix is another version than ws1's (Debian 12)
    old_libssl, new_libssl = installed_version("pw-libssl", "bullseye"), update_version("pw-libssl", "bullseye")
    assert new_libssl != update_version("pw-libssl", "bookworm")
    assert (before["pw-libssl"], before["pw-tzdata"]) == (old_libssl, "2026a-1")

    rc, outcomes, err = pw("schedule", "run", "-s", str(schedule(tmp_path / "s2.yml", "catch-up-2")), store=url)
    assert rc == 0, err[-3000:]
    (run,) = outcomes
    assert (run["status"], run["answered"], run["unreachable"]) == ("ok", ["ws2"], []), run
    (back,) = run["catch_up"]  # ws1 was patched by the cycle itself: nothing to catch up
    assert (back["host"], back["missed"], back["state"], back["carried"]) == ("ws2", missed["cycle_id"], "patched", 2)
    after = installed_versions(ws2.container)
    assert (after["pw-libssl"], after["pw-tzdata"]) == (new_libssl, "2026b-1")
    # what the missed cycle did not approve stays as it was, though ws2 has it pending
    assert {k: after[k] for k in ("pw-kernel", "pw-tools", "pw-config")} == {
        k: before[k] for k in ("pw-kernel", "pw-tools", "pw-config")}
    assert after == {**before, "pw-libssl": new_libssl, "pw-tzdata": "2026b-1"}
    assert installed_versions(ws1.container)["pw-libssl"] == update_version("pw-libssl", "bookworm")
    assert installed_versions(db1.container)["pw-libssl"] == new_libssl

    decisions = {d.name: d for d in Store(url).decisions(back["cycle"])}
    assert {n for n, d in decisions.items() if d.approved} == {"pw-libssl", "pw-tzdata"}
    assert {d.ecosystem for d in decisions.values()} == {"Debian:11"}  # from ws2's own os-release
    assert decisions["pw-tzdata"].reason == f"approved: carried over from cycle {missed['cycle_id']}, which this host missed"
    assert decisions["pw-kernel"].reason == f"excluded: cycle {missed['cycle_id']} did not approve it"
    log = [e["message"] for e in Store(url).events(back["cycle"], "catch-up")]
    assert log == [f"catch-up of ws2 for cycle {missed['cycle_id']}: its approvals carried over to hosts of the "
                   "release they were made for (Debian:11: 2, Debian:12: 2)"], log
    rc, hosts, err = pw("hosts", store=url)
    assert next(h for h in hosts if h["host"] == "ws2")["last_patched"], hosts
