"""Scan benchmark: Patchwave's one-call scan vs a plain multi-task playbook, same run, same hosts.

Needs the lab up (`patchwave lab up`). Prints seconds and the ratio; never fails on a timing.
    .venv/bin/python tests/bench/bench_scan.py [rounds]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def timed(playbook: Path) -> float:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    started = time.monotonic()
    subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories/lab/hosts.yml"), str(playbook)],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ours, baseline = [], []
    timed(ROOT / "playbooks/scan.yml")  # warm-up: ssh control sockets, page cache
    for _ in range(rounds):
        ours.append(timed(ROOT / "playbooks/scan.yml"))
        baseline.append(timed(ROOT / "tests/bench/baseline_scan.yml"))
    mo, mb = statistics.median(ours), statistics.median(baseline)
    print(f"hosts: 6 lab hosts, rounds: {rounds}")
    print(f"patchwave scan.yml (1 module call/host): median {mo:.2f}s  {[round(x, 2) for x in ours]}")
    print(f"baseline (6 plain tasks/host):           median {mb:.2f}s  {[round(x, 2) for x in baseline]}")
    print(f"ratio baseline/patchwave: {mb / mo:.2f}x")


if __name__ == "__main__":
    main()
