"""A cycle under a policy file on the lab: targets, severity rule, three waves, reboot never, a
user notice that waits a few seconds before each install."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, installed_versions, podman_exec

from patchwave.lab.catalog import installed_version, update_version

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
POLICY = """\
version: 1
name: servers-high
targets:
  groups: [web, db]
approval:
  min_severity: high
waves:
  - {name: canary, size: 1}
  - {name: pilot, size: 1}
  - {name: broad}
gates:
  failure_budget: 0
reboot: never
user_notice: {mode: delay, delay_minutes: 0.05, message: Patchwave e2e notice}
"""


def test_policy_cycle_on_the_lab(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab.down()
    lab.up()  # fresh hosts at the old versions
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    proc = subprocess.run([PATCHWAVE, "cycle", "run", "--policy", str(policy), "--json", "--store",
                           f"sqlite:///{tmp_path / 'pw.db'}"], capture_output=True, text=True, cwd=ROOT, check=False,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads(proc.stdout)
    servers = {h.name for h in lab.hosts() if {"web", "db"} & set(h.groups)}
    assert {h["host"] for h in status["hosts"]} == servers  # workstations are not targeted at all
    assert [(w["name"], len(w["hosts"])) for w in status["waves"]] == [("canary", 1), ("pilot", 1), ("broad", 2)]
    assert status["waves"][0]["hosts"] == ["web1"]  # the least critical server goes first
    from patchwave.store import Store

    deploys = [r for r in Store(f"sqlite:///{tmp_path / 'pw.db'}").host_results(status["cycle_id"])
               if r["stage"] == "deploy"]
    # each install waited the notice's 3 seconds after telling logged-in users
    assert {r["host"] for r in deploys} == servers
    assert all(r["data"].get("notify_delay") == 3 for r in deploys), [r["data"] for r in deploys]
    for host in lab.hosts():
        versions = installed_versions(host.container)
        if host.name in servers:
            result = next(h for h in status["hosts"] if h["host"] == host.name)
            # only critical/high fixes: pw-libssl (CVSS 9.8) and pw-kernel (high); reboot: never
            assert {p["name"] for p in result["packages"]} == {"pw-libssl", "pw-kernel"}
            assert result["state"] == "patched-pending-reboot", result
            assert (versions["pw-libssl"], versions["pw-kernel"], versions["pw-config"]) == (
                update_version("pw-libssl", host.release), update_version("pw-kernel", host.release), "1.0-1")
            assert podman_exec(host.container, "ls", "/run/reboot-required").strip() == "/run/reboot-required"
        else:
            assert versions["pw-libssl"] == installed_version("pw-libssl", host.release)


def test_a_bad_policy_starts_nothing(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.yml"
    policy.write_text("targets:\n  groups: [web, nosuchgroup]\n")
    store = tmp_path / "pw.db"
    proc = subprocess.run([PATCHWAVE, "cycle", "run", "--policy", str(policy), "--store", f"sqlite:///{store}"],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=300)
    assert proc.returncode == 2
    assert f"{policy}:2: targets.groups: unknown group 'nosuchgroup'" in proc.stderr.replace("\n", "")
    assert not store.exists()  # nothing stored, nothing run
