"""A store filled with known rows, for the reporting tests: two assessments of web1 (the later
wins), one of web2 and ws1, none of db1; one cycle with hand-checkable install and SLA dates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert

from patchwave.models import Host
from patchwave.reporting.engine import CELL_LIMIT
from patchwave.store import Store
from patchwave.store.schema import cycles, decisions, end_states, host_results, scans, waves

HOSTS = [Host("web1", ("web",), "server", "team-web"), Host("web2", ("web",), "server", "team-web"),
         Host("ws1", ("workstations",), "workstation", "alice"), Host("db1", ("db",), "server", "team-data")]


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def fill(store: Store) -> None:
    """Two assessments of web1 (the later wins), one of web2 and ws1, none of db1; one cycle."""
    results = {
        ("web1", 1): [("r1", "fail"), ("r2", "pass")],
        ("web1", 2): [("r1", "pass"), ("r2", "pass"), ("r3", "excepted")],
        ("web2", 3): [("r1", "fail"), ("r2", "error"), ("r3", "pass")],
        ("ws1", 4): [("r1", "pass"), ("r2", "not_applicable")],
    }
    # a critical rule on web1: failing in assessment 1 (Nov 1), passing in assessment 2 (Nov 2)
    critical = {1: "fail", 2: "pass"}
    for (host, aid), rows in results.items():
        counts = {s: sum(1 for _r, st in rows if st == s) for s in ("pass", "fail", "error", "not_applicable",
                                                                    "excepted")}
        applicable = counts["pass"] + counts["fail"] + counts["error"] + counts["excepted"]
        found = [{"id": rule, "title": f"rule {rule}", "severity": "high", "criticality": "normal", "status": status,
                  "duration": 0.01, "exception": "EXC-1" if status == "excepted" else None,
                  "evidence": {"expected": "x", "observed": "y" * (CELL_LIMIT + 10) if rule == "r2" and
                               status == "error" else "y", "where": "/etc/x:1"}} for rule, status in rows]
        if host == "web1":
            found.append({"id": "crit", "title": "critical", "severity": "critical", "criticality": "critical",
                          "status": critical[aid], "duration": 0.0, "evidence": {}})
        made = store.add_assessment(f"b{aid}", host, "t", "assess", True, False, "", counts,
                                    (100 * counts["pass"] / applicable,
                                     100 * (counts["pass"] + counts["excepted"]) / applicable), {}, None, found,
                                    at=at(aid))
        assert made == aid
    with store.engine.begin() as conn:
        conn.execute(insert(cycles).values(id="c1", created_at=at(10), finished_at=at(10, 12), status="completed",
                                           inventory="inv", policy={"name": "p"}, options={}))
        conn.execute(insert(waves).values(cycle_id="c1", idx=0, name="canary", hosts=["web1"], status="passed",
                                          started_at=at(10), finished_at=at(10, 11), gate={"reason": "within budget"}))
        conn.execute(insert(waves).values(cycle_id="c1", idx=1, name="broad", hosts=["web2", "db1"], status="passed",
                                          started_at=at(11), finished_at=at(11, 11), gate={"reason": "within budget"}))
        # installs: web1 on Nov 10 (within both SLAs), web2 on Nov 11 (one SLA due Nov 10: breached), db1 failed
        for host, day, ok in (("web1", 10, True), ("web2", 11, True), ("db1", 11, False)):
            conn.execute(insert(host_results).values(cycle_id="c1", host=host, stage="deploy", wave=0, at=at(day),
                                                     ok=ok, unreachable=False, message="", data={}))

        def pkg(name: str, after: str | None, due: str) -> dict[str, Any]:
            return {"name": name, "before": "1", "wanted": "2", "after": after, "severity": "critical",
                    "advisories": ["PWSA-1"], "cves": ["CVE-1"], "reason": "approved", "sla_due": due}
        # publication dates for mean time to patch (all at 10:00 UTC, like the installs)
        for host, name, day in (("web1", "a", 5), ("web1", "b", 8), ("web2", "a", 5), ("web2", "b", 8),
                                ("db1", "a", 5)):
            conn.execute(insert(decisions).values(cycle_id="c1", host=host, name=name, installed="1", version="2",
                                                  approved=True, reason="approved", advisories=["PWSA-1"],
                                                  severity="critical", cves=["CVE-1"],
                                                  published=f"2026-11-{day:02d}T10:00:00Z", sla_due=""))
            conn.execute(insert(scans).values(cycle_id="c1", host=host, kind="scan", at=at(10), ok=True, result={
                "updates": [{"name": name, "source": f"{name}-src", "candidate": "2",
                             "origins": [{"label": "Debian-Security", "suite": "s"}]}]}))
        for host, state, packages in (
                ("web1", "patched", [pkg("a", "2", "2026-11-10"), pkg("b", "2", "2026-11-20")]),
                ("web2", "patched", [pkg("a", "2", "2026-11-10"), pkg("b", "2", "2026-11-20")]),
                ("db1", "failed", [pkg("a", "1", "2026-11-10")])):
            conn.execute(insert(end_states).values(cycle_id="c1", host=host, at=at(12), state=state,
                                                   packages=packages, detail=""))
