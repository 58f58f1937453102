"""Reporting at scale: a synthetic store of 10,000 hosts x 100 rules x 12 cycles (12 patch cycles
of 3 packages per host and 12 baseline assessment runs: 12 million rule results), then
`patchwave report --type all` writes every standard workbook. Prints the wall time and the peak
memory of the report process next to the time it took just to stream the same rows out of the
store (the baseline: what any report must at least read). Never fails on a timing.

    .venv/bin/python tests/bench/bench_reports.py [hosts] [rules] [cycles]

The store is kept in .patchwave/bench/ and reused when its shape matches.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SEVERITIES = ("critical", "high", "medium", "low")


def build(path: Path, hosts: int, rules: int, cycles: int) -> None:
    sys.path.insert(0, str(ROOT / "orchestrator" / "src"))
    from sqlalchemy import insert

    from patchwave.store import Store
    from patchwave.store.history import rebuild_rule_failures
    from patchwave.store.schema import assessments, decisions, end_states, host_results, rule_results, scans, waves
    from patchwave.store.schema import cycles as cycles_table

    rng = random.Random(7)
    store = Store(f"sqlite:///{path}")
    names = [f"h{i:05d}" for i in range(hosts)]
    start = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    packages = [f"pkg{i}" for i in range(30)]
    with store.engine.begin() as conn:
        for c in range(cycles):
            began = start + timedelta(days=30 * c)
            cid = f"c{c:02d}"
            conn.execute(insert(cycles_table).values(id=cid, created_at=began, finished_at=began + timedelta(hours=3),
                                                     status="completed", inventory="bench", policy={"name": "bench"},
                                                     options={}))
            thirds = [names[: hosts // 100], names[hosts // 100: hosts // 10], names[hosts // 10:]]
            for idx, members in enumerate(thirds):
                conn.execute(insert(waves).values(cycle_id=cid, idx=idx, name=("canary", "pilot", "broad")[idx],
                                                  hosts=members, status="passed", started_at=began,
                                                  finished_at=began + timedelta(hours=1), gate={"reason": "ok"}))
            chosen = {h: rng.sample(packages, 3) for h in names}
            published = began - timedelta(days=10)
            conn.execute(insert(decisions), [
                {"cycle_id": cid, "host": h, "name": p, "installed": "1", "version": "2", "approved": True,
                 "reason": "approved", "advisories": ["PWSA"], "severity": SEVERITIES[i % 4], "cves": ["CVE-1"],
                 "published": f"{published:%Y-%m-%dT%H:%M:%SZ}", "sla_due": f"{published + timedelta(days=14):%Y-%m-%d}"}
                for h in names for i, p in enumerate(chosen[h])])
            conn.execute(insert(scans), [
                {"cycle_id": cid, "host": h, "kind": "scan", "at": began, "ok": True,
                 "result": {"updates": [{"name": p, "source": p, "candidate": "2",
                                         "origins": [{"label": "Debian-Security", "suite": "s"}]} for p in chosen[h]]}}
                for h in names])
            failed = set(rng.sample(names, hosts // 50))
            conn.execute(insert(host_results), [
                {"cycle_id": cid, "host": h, "stage": "deploy", "wave": 0, "at": began + timedelta(hours=1),
                 "ok": h not in failed, "unreachable": False, "message": "", "data": {}} for h in names])
            conn.execute(insert(end_states), [
                {"cycle_id": cid, "host": h, "at": began + timedelta(hours=3),
                 "state": "failed" if h in failed else "patched", "detail": "",
                 "packages": [{"name": p, "before": "1", "wanted": "2", "after": "1" if h in failed else "2",
                               "severity": SEVERITIES[i % 4], "advisories": ["PWSA"], "cves": ["CVE-1"],
                               "reason": "approved", "sla_due": f"{published + timedelta(days=14):%Y-%m-%d}"}
                              for i, p in enumerate(chosen[h])]} for h in names])
            print(f"  cycle {cid}: patch data", flush=True)
            first_id = c * hosts + 1
            conn.execute(insert(assessments), [
                {"id": first_id + i, "batch": f"a{c:02d}", "host": h, "baseline": "bench", "kind": "assess",
                 "at": began + timedelta(hours=4), "ok": True, "unreachable": False, "message": "",
                 "summary": {"pass": rules - 10, "fail": 8, "error": 0, "not_applicable": 2, "excepted": 0},
                 "score": 100 * (rules - 10) / (rules - 2), "score_with_exceptions": 100 * (rules - 10) / (rules - 2),
                 "snapshot": {}, "drift": None} for i, h in enumerate(names)])
            batch = []
            for i, h in enumerate(names):
                failing = set(rng.sample(range(rules), 8))
                for r in range(rules):
                    status = "fail" if r in failing else ("not_applicable" if r >= rules - 2 else "pass")
                    batch.append({"assessment_id": first_id + i, "host": h, "rule_id": f"rule-{r:03d}",
                                  "title": f"Rule {r}", "severity": SEVERITIES[r % 4], "criticality": "normal",
                                  "status": status, "duration": 0.0003, "exception_id": None,
                                  "evidence": {"expected": "x", "observed": "y", "where": "/etc/x:1"}
                                  if status == "fail" else {}})
                if len(batch) >= 50_000:
                    conn.execute(insert(rule_results), batch)
                    batch = []
            if batch:
                conn.execute(insert(rule_results), batch)
            print(f"  cycle {cid}: assessment", flush=True)
        # loaded in bulk, past the store's write path: the rule failures it keeps are made once here
        print(f"  rule failures: {rebuild_rule_failures(conn):,}", flush=True)
    (path.parent / "hosts.yml").write_text(
        "all:\n  children:\n" + "".join(
            f"    g{g:02d}:\n      hosts:\n" + "".join(
                f"        {h}: {{patchwave_device_type: {'workstation' if i % 5 == 0 else 'server'}, "
                f"patchwave_owner: owner{i % 200:03d}}}\n" for i, h in enumerate(names) if i % 20 == g)
            for g in range(20)))


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
                rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
    family, grown = {root}, True
    while grown:
        grown = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grown = True
    return sum(rss.get(pid, 0) for pid in family) / 1e6


def main(hosts: int, rules: int, cycles: int) -> None:
    work = ROOT / ".patchwave" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"reports-{hosts}x{rules}x{cycles}.db"
    if not db.exists():
        started = time.monotonic()
        build(db, hosts, rules, cycles)
        print(f"built the synthetic store in {time.monotonic() - started:.0f} s ({db.stat().st_size / 1e9:.2f} GB)")
    sys.path.insert(0, str(ROOT / "orchestrator" / "src"))
    from patchwave.store import Store

    store = Store(f"sqlite:///{db}")
    store.engine  # noqa: B018 - opened (and brought to the current schema) before anything is timed
    started = time.monotonic()
    counted = sum(1 for _ in store.rows("rule_results", at_least=("assessment_id", (cycles - 1) * hosts + 1)))
    counted += sum(1 for t in ("end_states", "decisions", "scans", "assessments") for _ in store.rows(t))
    baseline = time.monotonic() - started
    out = work / "out"
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    started = time.monotonic()
    child = subprocess.Popen([str(BIN / "patchwave"), "report", "--type", "all", "--store", f"sqlite:///{db}",
                              "-i", str(work / "hosts.yml"), "-o", str(out), "--json"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    total_peak = 0.0
    while child.poll() is None:  # the sum over the report process and its workers, sampled
        total_peak = max(total_peak, tree_rss_mb(child.pid))
        time.sleep(0.2)
    stdout, stderr = child.communicate()
    wall = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if child.returncode != 0:
        sys.exit(stderr[-3000:])
    result = json.loads(stdout)
    for book in result["workbooks"]:
        size = Path(book["workbook"]).stat().st_size / 1e6
        print(f"{Path(book['workbook']).name}: {size:.1f} MB, "
              + ", ".join(f"{s['sheet']} {s['rows']:,}" for s in book["sheets"]))
    print(f"reading the rows the reports need from the store alone: {baseline:.1f} s ({counted:,} rows)")
    print(f"patchwave report --type all: {wall:.1f} s, peak memory {total_peak:.0f} MB for all its processes "
          f"together (largest single process {peak:.0f} MB); target < 20 s and < 500 MB; "
          f"report / read-only = {wall / baseline:.2f}x")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    main(*(args + [10_000, 100, 12][len(args):]))
