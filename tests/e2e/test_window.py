"""A closed maintenance window: nothing starts, and the plan says when it would."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import ROOT, installed_versions

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def test_closed_window_starts_nothing_and_plan_says_when(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab.down()
    lab.up()
    opening = datetime.now(UTC) + timedelta(days=3)
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "windows:\n"
        "  - timezone: UTC\n"
        f"    slots: [{{days: [{DAYS[opening.weekday()]}], start: '01:00', end: '05:00'}}]\n")
    before = {h.name: installed_versions(h.container) for h in lab.hosts()}
    store = tmp_path / "pw.db"
    proc = subprocess.run([PATCHWAVE, "cycle", "run", "--policy", str(policy), "--store", f"sqlite:///{store}"],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=600)
    assert proc.returncode == 3, proc.stderr
    message = proc.stderr.replace("\n", " ")
    assert "maintenance window closed for wave canary" in message and "nothing was started" in message
    assert f"next opening: {opening:%Y-%m-%d} 01:00 UTC" in message
    assert not store.exists()
    assert {h.name: installed_versions(h.container) for h in lab.hosts()} == before

    plan = subprocess.run([PATCHWAVE, "cycle", "plan", "--policy", str(policy), "--json"], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=600)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert [w["name"] for w in planned["waves"]] == ["canary", "broad"]
    assert all(w["window_open_now"] is False for w in planned["waves"])
    assert all(w["next_opening"] == f"{opening:%Y-%m-%d} 01:00 UTC" for w in planned["waves"])
    approved = {(d["host"], d["name"]) for d in planned["decisions"] if d["approved"]}
    assert ("web1", "pw-libssl") in approved and ("web1", "pw-pinned") not in approved
    assert {h.name: installed_versions(h.container) for h in lab.hosts()} == before  # plan touched nothing
