"""A host that is only sometimes online: paused (podman pause) while a scheduled scan runs, it is
retried with backoff, reported unreachable when the retry window is over, listed as overdue, and
caught up by the next due run once it is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import ROOT

from patchwave.store import Store

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf")}
SCHEDULE = """\
jobs:
  - {name: laptop-scan, kind: scan, every: 1m, groups: [workstations]}
retry: {window_minutes: 1.5, backoff_seconds: 5}
"""


def pw(*args: str, store: str) -> tuple[int, Any, str]:
    proc = subprocess.run([PATCHWAVE, *args, "--json", "--store", store], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=900)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None, proc.stderr


def test_paused_host_is_retried_reported_then_caught_up(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    schedule = tmp_path / "schedule.yml"
    schedule.write_text(SCHEDULE)
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    ws2 = next(h for h in lab.hosts() if h.name == "ws2")
    subprocess.run(["podman", "pause", ws2.container], env=ENV, check=True, capture_output=True)
    try:
        rc, outcomes, err = pw("schedule", "run", "-s", str(schedule), store=url)
    finally:
        subprocess.run(["podman", "unpause", ws2.container], env=ENV, check=True, capture_output=True)
    assert rc == 0, err[-3000:]
    (run,) = outcomes
    assert (run["job"], run["status"], run["unreachable"], run["answered"]) == ("laptop-scan", "partial", ["ws2"],
                                                                                ["ws1"])
    assert run["tries"] >= 2 and "trying again in 5 s" in err  # retried with backoff, then reported
    rc, overdue, _err = pw("hosts", "--overdue", "-s", str(schedule), store=url)
    assert "laptop-scan" in next(r for r in overdue if r["host"] == "ws2")["overdue"]
    assert "laptop-scan" not in next(r for r in overdue if r["host"] == "ws1")["overdue"]

    time.sleep(max(0.0, 61 - time.time() % 60))  # the next minute's slot
    rc, outcomes, err = pw("schedule", "run", "-s", str(schedule), store=url)
    assert rc == 0, err[-3000:]
    (run,) = outcomes
    assert (run["status"], run["unreachable"], run["answered"]) == ("ok", [], ["ws1", "ws2"])
    scans = [(r["host"], r["ok"]) for r in Store(url).rows("scans")]
    assert ("ws2", True) in scans and scans.count(("ws1", True)) == 2
    runs = Store(url).schedule_runs("laptop-scan")
    assert [r["status"] for r in runs] == ["partial", "ok"]
