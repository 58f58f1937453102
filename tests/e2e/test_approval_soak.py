"""Manual approval gates, soak time and per-wave concurrency on the lab, read back from the
store and checked on the hosts."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from conftest import ROOT, installed_versions

from patchwave.lab.catalog import installed_version, update_version
from patchwave.store import Store

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
POLICY = """\
version: 1
name: approved-rollout
targets:
  groups: [web, db]
approval:
  min_severity: high
waves:
  - {name: canary, size: 1, soak_minutes: 0.15}
  - {name: broad, approval: true, concurrency: 1}
gates:
  health_checks:
    - port: 22
reboot: never
"""
REJECTED = """\
version: 1
name: needs-a-yes
targets:
  groups: [workstations]
waves:
  - {name: all, approval: true}
reboot: never
"""


def patchwave(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PATCHWAVE, *args, "--json", "--store", store], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=1800)


def test_canary_soaks_then_broad_waits_for_approval(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab.down()
    lab.up()
    (tmp_path / "policy.yml").write_text(POLICY)
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    proc = patchwave("cycle", "run", "--policy", str(tmp_path / "policy.yml"), store=url)
    assert proc.returncode == 3, proc.stderr[-3000:]  # stopped by a gate: the approval gate
    status = json.loads(proc.stdout)
    cycle_id = status["cycle_id"]
    assert status["status"] == "awaiting-approval"
    assert f"patchwave cycle approve {cycle_id} --wave broad" in status["reason"]
    canary, broad = status["waves"]
    assert (canary["name"], canary["status"], broad["name"], broad["status"]) == (
        "canary", "passed", "broad", "awaiting-approval")
    # the canary was checked again after its soak, at least 9 s after it was deployed
    assert canary["gate"]["soaked_until"]
    took = datetime.fromisoformat(canary["finished_at"]) - datetime.fromisoformat(canary["started_at"])
    assert took.total_seconds() >= 9
    store = Store(url)
    health = [r for r in store.host_results(cycle_id) if r["stage"] == "health"]
    assert [(r["host"], r["ok"], r["message"]) for r in health] == [
        ("web1", True, "healthy after deploy"), ("web1", True, "healthy after the soak")]
    releases = {h.name: h.release for h in lab.hosts()}
    versions = {h.name: installed_versions(h.container)["pw-libssl"] for h in lab.hosts()}
    assert versions["web1"] == update_version("pw-libssl", releases["web1"])
    # nothing installed before the approval
    assert all(versions[h] == installed_version("pw-libssl", releases[h]) for h in broad["hosts"]), versions

    wrong = patchwave("cycle", "approve", cycle_id, "--wave", "canary", store=url)
    assert wrong.returncode == 2 and "waits for approval of wave 'broad', not 'canary'" in wrong.stderr

    proc = patchwave("cycle", "approve", cycle_id, "--wave", "broad", "--by", "alice", "--comment", "CHG-42",
                     store=url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads(proc.stdout)
    assert status["status"] == "completed"
    (approval,) = status["approvals"]
    assert (approval["wave"], approval["approved"], approval["by"], approval["comment"]) == (
        "broad", True, "alice", "CHG-42")
    assert datetime.fromisoformat(str(approval["at"])) >= datetime.fromisoformat(str(canary["finished_at"]))
    for host in lab.hosts():
        patched = host.name in {"web1", *broad["hosts"]}
        expected = (update_version if patched else installed_version)("pw-libssl", host.release)
        assert installed_versions(host.container)["pw-libssl"] == expected, host.name

    # concurrency 1: in the broad wave's run each host went through the play before the next began
    (run,) = [r for r in store.runs(cycle_id) if r["ident"] == "03-deploy-wave1"]
    order = [host for host, _group in itertools.groupby(e["host"] for e in store.task_events(run["id"]))]
    assert sorted(order) == sorted(broad["hosts"]) and len(order) == len(broad["hosts"]), order
    # every runner invocation is on record with its own duration
    assert {r["ident"] for r in store.runs(cycle_id)} >= {"01-scan-", "02-stage", "03-deploy-wave0",
                                                          "03-deploy-wave1", "04-confirm"} - {"01-scan-"}
    assert all(r["status"] == "successful" and r["seconds"] > 0 for r in store.runs(cycle_id))


def test_a_rejected_wave_stops_the_rollout(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "policy.yml").write_text(REJECTED)
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    proc = patchwave("cycle", "run", "--policy", str(tmp_path / "policy.yml"), store=url)
    assert proc.returncode == 3, proc.stderr[-3000:]
    cycle_id = json.loads(proc.stdout)["cycle_id"]
    proc = patchwave("cycle", "approve", cycle_id, "--reject", "--by", "bob", "--comment", "not during the audit",
                     store=url)
    assert proc.returncode == 3, proc.stderr[-3000:]
    status = json.loads(proc.stdout)
    assert status["status"] == "halted"
    assert "wave all rejected by bob: not during the audit" in status["reason"]
    assert {h["state"] for h in status["hosts"]} == {"not-reached"}
    for host in lab.hosts():
        if "workstations" in host.groups:
            assert installed_versions(host.container)["pw-libssl"] == installed_version("pw-libssl", host.release)
    again = patchwave("cycle", "approve", cycle_id, store=url)
    assert again.returncode == 2 and "not waiting for an approval" in again.stderr
