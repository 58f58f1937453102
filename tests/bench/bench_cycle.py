"""Whole-cycle benchmark on a big lab: `cycle plan`, then `cycle run` (scan → approve → stage →
3 waves with a health gate each → confirm) on N real hosts (default 40). Prints the time of every
ansible-runner invocation (from the store's `runs` table), the orchestrator's wall time, and the
orchestration overhead: wall time minus the runner's own time (process start, policy and
inventory loading, manifest, store writes between runs, the workbook). Never fails on a timing.

    .venv/bin/python tests/bench/bench_cycle.py [hosts]

It replaces the lab with an N-host one (images cached) and takes it down at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POLICY = """\
version: 1
name: bench
waves:
  - {name: canary, size: 1}
  - {name: pilot, size: "10%"}
  - {name: broad}
gates:
  failure_budget: "5%"
  health_checks:
    - port: 22
"""


def run(*args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "patchwave"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    took = time.monotonic() - started
    if proc.returncode not in ok:
        sys.exit(f"patchwave {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return took, proc


def main(hosts: int) -> None:
    sys.path.insert(0, str(ROOT / "orchestrator" / "src"))
    from patchwave.store import Store

    run("lab", "down")
    lab_seconds, _ = run("lab", "up", "--hosts", str(hosts))
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yml"
        policy.write_text(POLICY)
        url = f"sqlite:///{tmp}/bench.db"
        plan_seconds, proc = run("cycle", "plan", "--policy", str(policy), "--json")
        planned = json.loads(proc.stdout)
        wall, proc = run("cycle", "run", "--policy", str(policy), "--json", "--store", url, ok=(0, 1))
        status = json.loads(proc.stdout)
        store = Store(url)
        runs = store.runs(status["cycle_id"])
    states: dict[str, int] = {}
    for host in status["hosts"]:
        states[host["state"]] = states.get(host["state"], 0) + 1
    runner_total = sum(r["seconds"] or 0 for r in runs)
    handler_total = sum(r["handler_seconds"] or 0 for r in runs)
    print(f"lab up ({hosts} hosts, images cached): {lab_seconds:.1f} s")
    print(f"cycle plan: {plan_seconds:.1f} s ({len(planned['decisions'])} decisions, "
          f"waves {[len(w['hosts']) for w in planned['waves']]})")
    print(f"cycle run: status {status['status']}, end states {states}")
    print(f"{'runner invocation':28} {'hosts':>5} {'seconds':>8} {'in handler':>10}")
    for r in runs:
        print(f"{r['ident']:28} {len(r['hosts']):>5} {r['seconds']:>8.1f} {r['handler_seconds']:>10.2f}")
    overhead = wall - runner_total
    print(f"wall {wall:.1f} s, runner {runner_total:.1f} s (of which Patchwave's event handling "
          f"{handler_total:.1f} s), orchestration overhead {overhead:.1f} s = {overhead / wall:.1%} of wall; "
          f"wall / runner = {wall / runner_total:.3f}x")
    run("lab", "down")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
