"""The store keeps history; the workbook reads back with openpyxl."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import end_cycle
from openpyxl import load_workbook

from patchwave.errors import PatchwaveError
from patchwave.models import Host, PendingUpdate
from patchwave.patching.manifest import build
from patchwave.patching.status import status_report
from patchwave.reporting.workbook import write_cycle_workbook
from patchwave.store import Store
from patchwave.store.schema import SCHEMA_VERSION


def _store_with_cycle(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    store.create_cycle("c1", "inv.yml", {"approve_security": True})
    up = PendingUpdate("web1", "pw-libssl", "1.0-1", "1.0-2", "pw-libssl", True, False, False)
    store.add_scan("c1", "web1", "scan", True, {"updates": []}, [up])
    store.save_manifest(build("c1", [up], []))
    wave = store.start_wave("c1", 0, "canary", ["web1"])
    store.finish_wave(wave, "passed", {"passed": True})
    store.add_end_state("c1", "web1", "failed", [], "first try")
    store.add_end_state("c1", "web1", "patched",
                        [{"name": "pw-libssl", "before": "1.0-1", "wanted": "1.0-2", "after": "1.0-2",
                          "severity": "critical", "advisories": ["PWSA-1"], "cves": ["CVE-2026-1"],
                          "sla_due": "2026-12-06", "reason": "approved"}], "ok")
    end_cycle(store, "c1", "completed")
    return store


def test_store_round_trip_and_latest_state_wins(tmp_path: Path) -> None:
    store = _store_with_cycle(tmp_path)
    assert store.latest_cycle_id() == "c1"
    status = status_report(store, "c1")
    assert status["status"] == "completed"
    assert status["hosts"][0]["state"] == "patched"
    assert [{k: w[k] for k in ("index", "name", "hosts", "status", "gate")} for w in status["waves"]] == [
        {"index": 0, "name": "canary", "hosts": ["web1"], "status": "passed", "gate": {"passed": True}}]
    assert [d.name for d in store.decisions("c1")] == ["pw-libssl"]
    # reopening the same file migrates nothing and keeps everything
    again = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    assert again.latest_cycle_id() == "c1"


def test_runs_task_events_and_approvals_are_kept(tmp_path: Path) -> None:
    store = _store_with_cycle(tmp_path)
    run = store.start_run("c1", "03-deploy-wave0", "/p/deploy.yml", ["web1"])
    store.add_task_event(run, "web1", "Install", "patchwave.endpoint.apply_updates", "changed", "")
    store.add_task_event(run, "web1", "Reboot", "ansible.builtin.reboot", "failed", "x" * 5000)
    store.finish_run(run, "failed", 2, 12.5)
    store.add_approval("c1", 1, "broad", True, "alice", "CHG-1")
    (row,) = store.runs("c1")
    assert (row["ident"], row["status"], row["rc"], row["seconds"], row["hosts"]) == (
        "03-deploy-wave0", "failed", 2, 12.5, ["web1"])
    events = store.task_events(run)
    assert [(e["host"], e["kind"]) for e in events] == [("web1", "changed"), ("web1", "failed")]
    assert len(events[1]["message"]) == 2000  # long output is cut, not refused
    (approval,) = status_report(store, "c1")["approvals"]
    assert (approval["wave"], approval["approved"], approval["by"], approval["comment"]) == ("broad", True, "alice", "CHG-1")


def test_workbook_has_summary_hosts_and_one_sheet_per_host(tmp_path: Path) -> None:
    store = _store_with_cycle(tmp_path)
    path = write_cycle_workbook(status_report(store, "c1"), [Host("web1", ("web",), "server", "team-web")],
                                tmp_path / "out" / "c1.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == ["Summary", "Hosts", "web1"]
    hosts = list(wb["Hosts"].iter_rows(values_only=True))
    assert hosts[1][:6] == ("web1", "web", "server", "team-web", None, "patched")
    rows = list(wb["web1"].iter_rows(values_only=True))
    assert ("pw-libssl", "1.0-1", "1.0-2", "1.0-2", "critical", "PWSA-1", "CVE-2026-1", None, None, "2026-12-06",
            "approved") in rows  # no changelog was staged: its two columns are empty
    summary = {r[0]: r[1] for r in wb["Summary"].iter_rows(values_only=True) if r[0]}
    assert summary["Wave 0 (canary)"] == "passed: web1"


def test_a_schema_1_store_is_migrated_in_place(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE schema_info (version INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO schema_info VALUES (1)")
        conn.exec_driver_sql(
            "CREATE TABLE decisions (id INTEGER PRIMARY KEY, cycle_id VARCHAR(64) NOT NULL, host VARCHAR(255) NOT NULL,"
            " name VARCHAR(255) NOT NULL, installed VARCHAR(255), version VARCHAR(255) NOT NULL,"
            " approved BOOLEAN NOT NULL, reason TEXT NOT NULL, advisories JSON NOT NULL, severity VARCHAR(16) NOT NULL)")
        conn.exec_driver_sql("INSERT INTO decisions VALUES (1, 'old', 'h', 'p', '1', '2', 1, 'approved', '[]', '')")
    store = Store(url)
    assert {"cves", "published", "sla_due"} <= {c["name"] for c in inspect(store.engine).get_columns("decisions")}
    (old,) = store.decisions("old")
    assert old.name == "p" and old.cves == () and old.published == ""
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version FROM schema_info").scalar() == SCHEMA_VERSION


def test_a_schema_8_store_gets_leases_and_claims(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    url = f"sqlite:///{tmp_path / 'v8.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE schema_info (version INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO schema_info VALUES (8)")
        conn.exec_driver_sql("CREATE TABLE cycle_locks (cycle_id VARCHAR(64) PRIMARY KEY, pid INTEGER NOT NULL,"
                             " hostname VARCHAR(255) NOT NULL, acquired_at DATETIME NOT NULL)")
        conn.exec_driver_sql("INSERT INTO cycle_locks VALUES ('old', 1, 'elsewhere', '2026-01-01 00:00:00')")
    store = Store(url)
    columns = {c["name"] for c in inspect(store.engine).get_columns("cycle_locks")}
    assert {"holder", "lease_until"} <= columns
    assert {"claimed_by", "claimed_until"} <= {c["name"] for c in inspect(store.engine).get_columns("outbox")}
    with pytest.raises(PatchwaveError, match="being driven by pid 1 on elsewhere"):
        store.lock("old")  # a lock from before leases: another machine's, kept until someone stops it
