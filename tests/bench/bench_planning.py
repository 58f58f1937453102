"""Planning and gate maths for 10,000 synthetic hosts (target: under 2 s). Not a test.

    .venv/bin/python tests/bench/bench_planning.py
"""

from __future__ import annotations

import random
import time

from patchwave.models import Host
from patchwave.patching import waves
from patchwave.patching.policy import Selector, Targets
from patchwave.patching.policy import Wave as WaveSpec


def main() -> None:
    rng = random.Random(7)
    hosts = [Host(f"host{i:05d}", (rng.choice(["web", "db", "app", "ws"]),), rng.choice(["server", "workstation"]),
                  criticality=rng.randint(0, 5)) for i in range(10_000)]
    specs = [WaveSpec(name="canary", size=10), WaveSpec(name="pilot", size="10%", selector=Selector(groups=["web", "app"])),
             WaveSpec(name="broad")]
    started = time.perf_counter()
    chosen = waves.targeted(hosts, Targets(exclude=["host099*"]))
    planned = waves.plan(chosen, specs)
    planned_at = time.perf_counter()
    failed_before = 0
    for wave in planned:
        results = {name: rng.random() > 0.01 for name in wave.hosts}
        result = waves.gate(results, "5%", failed_before, "2%", len(chosen))
        failed_before = result.total_failed
    done = time.perf_counter()
    print(f"hosts: {len(hosts)} targeted: {len(chosen)} waves: {[len(w.hosts) for w in planned]}")
    print(f"planning: {planned_at - started:.3f}s  gates: {done - planned_at:.3f}s  total: {done - started:.3f}s "
          f"(target < 2 s: {(done - started) / 2:.2%} of it)")


if __name__ == "__main__":
    main()
