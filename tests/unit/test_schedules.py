"""Schedules, discovery and freshness without lab hosts: two cadences fire at the right simulated
times, a slot runs once and a job never twice at once (claims in a real store), bad schedules are
refused with file:line, the inventory's changes are recorded, overdue and never-assessed hosts
are listed (also by `patchwave hosts --overdue --json`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reportdata import fill

from patchwave.errors import InputError
from patchwave.fleet import discover, schedule
from patchwave.models import Host
from patchwave.patching.policy import thin_link_vars
from patchwave.store import Store

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = """\
timezone: Europe/Berlin
jobs:
  - {name: server-scan, kind: scan, every: 6h, groups: [web, db]}
  - {name: nightly-assess, kind: assess, cron: "0 2 * * *"}
  - {name: discovery, kind: discover, every: 1d}
new_devices:
  default: observe
  groups: {web: remediate-now, db: patch-now, workstations: next-cycle}
"""
INVENTORY = """\
all:
  children:
    web:
      hosts:
        web1: {patchwave_device_type: server, patchwave_owner: team-web}
        web2: {patchwave_device_type: server, patchwave_owner: team-web}
    db:
      hosts:
        db1: {patchwave_device_type: server, patchwave_owner: team-data}
    workstations:
      hosts:
        ws1: {patchwave_device_type: workstation, patchwave_owner: alice}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_two_cadences_fire_at_the_right_simulated_times_and_each_slot_once(tmp_path: Path) -> None:
    plan = schedule.load(write(tmp_path, "schedule.yml", SCHEDULE))
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    fired: list[tuple[str, datetime]] = []

    def tick(now: datetime) -> list[str]:
        names = []
        for job, slot in schedule.due(plan, store.last_slots(), now):
            run = store.claim_slot(job.name, slot, "test:1")
            assert run is not None
            store.finish_slot(run, "ok", {})
            fired.append((job.name, slot))
            names.append(job.name)
        return sorted(names)

    # Sunday Nov 29, 09:30 UTC = 10:30 Berlin: nothing ran yet, so every job is due once
    assert tick(utc(29, 9, 30)) == ["discovery", "nightly-assess", "server-scan"]
    assert tick(utc(29, 9, 45)) == []  # the same slots: nothing again
    # 6-hour slots in Berlin time: 00, 06, 12, 18 local = 23, 05, 11, 17 UTC in winter
    assert tick(utc(29, 10, 59)) == []
    assert tick(utc(29, 11, 0)) == ["server-scan"]
    assert tick(utc(29, 17, 30)) == ["server-scan"]
    assert tick(utc(29, 23, 0)) == ["discovery", "server-scan"]  # local midnight: the daily one too
    # 02:00 Berlin = 01:00 UTC
    assert tick(utc(30, 0, 59)) == []
    assert tick(utc(30, 1, 0)) == ["nightly-assess"]
    # a machine that was off for two days catches up once per job, not once per missed slot
    assert tick(utc(30, 1, 0) + timedelta(days=2, hours=5)) == ["discovery", "nightly-assess", "server-scan"]
    slots = [s for n, s in fired if n == "nightly-assess"]
    assert slots[1:] == [utc(30, 1, 0), utc(30, 1, 0) + timedelta(days=2)]


def test_a_job_never_runs_twice_at_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    import socket

    me = f"{socket.gethostname()}:{os.getpid()}"
    first = store.claim_slot("scan", utc(29, 11), me)
    assert first is not None
    assert store.claim_slot("scan", utc(29, 11), me) is None  # the same slot: taken
    assert store.claim_slot("scan", utc(29, 17), me) is None  # a later slot while the first still runs
    assert store.claim_slot("assess", utc(29, 17), me) is not None  # another job may run
    store.finish_slot(first, "ok", {})
    assert store.claim_slot("scan", utc(29, 17), me) is not None
    # a run whose process died does not block the job for ever
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert store.claim_slot("digest", utc(29, 1), f"{socket.gethostname()}:{dead}") is not None
    assert store.claim_slot("digest", utc(29, 2), me) is not None


BAD = [
    ("unknown key", SCHEDULE.replace("every: 6h, groups", "every: 6h, grups"), r"schedule.yml:3: jobs\[0\].grups: unknown key"),
    ("both cadences", SCHEDULE.replace("every: 6h,", "every: 6h, cron: '* * * * *',"),
     r"schedule.yml:3: jobs\[0\]: give either every"),
    ("bad cron", SCHEDULE.replace('"0 2 * * *"', '"0 25 * * *"'), r"schedule.yml:4: jobs\[1\].cron: '0 25 \* \* \*' is not"),
    ("bad interval", SCHEDULE.replace("every: 6h,", "every: often,"), r"schedule.yml:3: jobs\[0\].every: 'often' is not"),
    ("too short", SCHEDULE.replace("every: 6h,", "every: 10s,"), r"jobs\[0\].every: '10s' is shorter than a minute"),
    ("bad time zone", SCHEDULE.replace("Europe/Berlin", "Moon/Base"), r"schedule.yml:1: timezone: unknown time zone"),
    ("duplicate job", SCHEDULE.replace("name: discovery", "name: server-scan"), r"job names must be unique: server-scan"),
    ("unknown new-device action", SCHEDULE.replace("db: patch-now", "db: format-disk"),
     r"schedule.yml:8: new_devices.groups.db: Input should be"),
    ("groups on discovery", SCHEDULE.replace("kind: discover, every: 1d", "kind: discover, every: 1d, groups: [web]"),
     r"a discover job covers the whole inventory"),
    ("baseline on a catch-up", SCHEDULE.replace("kind: discover, every: 1d",
                                                "kind: catch-up, every: 1d, baseline: x.yml"),
     r"baseline is for assess jobs"),
    ("thin link with a bad relay", SCHEDULE + "thin_links:\n  - {groups: [web], relay: 'http://r:3142/ x'}\n",
     r"schedule.yml:\d+: thin_links\[0\].relay: relay 'http://r:3142/ x' must be an apt proxy URL"),
    ("empty file", "", r"schedule.yml:1: empty schedule file"),
    ("only comments", "# jobs to come\n", r"schedule.yml:1: empty schedule file"),
    ("a list", "- {name: d, kind: digest, every: 1d}\n", r"schedule.yml:1: a schedule is a mapping"),
    ("cron that never fires", SCHEDULE.replace('cron: "0 2 * * *"', 'cron: "0 2 31 2 *"'),
     r"schedule.yml:4: jobs\[1\].cron: '0 2 31 2 \*' never fires"),
    ("interval beyond a year", SCHEDULE.replace("every: 1d", "every: 400d"), r"jobs\[2\].every: '400d' is longer than a year"),
    ("infinite backoff", SCHEDULE + "retry: {backoff_seconds: .inf}\n", r"retry.backoff_seconds: Input should be a finite"),
    ("time zone that is a folder", SCHEDULE.replace("Europe/Berlin", "Europe"), r"schedule.yml:1: timezone: unknown time zone"),
    ("missing inventory", "inventory: nowhere.yml\n" + SCHEDULE, r"schedule.yml:1: inventory: nowhere.yml does not exist"),
    ("missing organisation baseline", "baseline: nowhere.yml\n" + SCHEDULE,
     r"schedule.yml:1: baseline: nowhere.yml does not exist"),
    ("missing exceptions register", "exceptions: none.yml\n" + SCHEDULE,
     r"schedule.yml:1: exceptions: none.yml does not exist"),
    ("groups on a ticket sync", SCHEDULE.replace("kind: discover, every: 1d", "kind: ticket-sync, every: 15m, groups: [web]"),
     r"a ticket-sync job covers the whole inventory"),
    ("template in a group", SCHEDULE.replace("groups: [web, db]", "groups: ['{{ x }}']"),
     r"schedule.yml:3: jobs\[0\].groups: '\{\{' is Jinja template syntax"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_schedules_are_refused_with_file_and_line(tmp_path: Path, case: str, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        schedule.load(write(tmp_path, "schedule.yml", text))


def test_unknown_groups_are_refused_against_the_inventory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"schedule.yml:3: jobs\[0\].groups: unknown group 'db'"):
        schedule.load(write(tmp_path, "schedule.yml", SCHEDULE), known_groups={"web", "workstations"})


def test_catch_up_jobs_may_cover_groups_and_device_types(tmp_path: Path) -> None:
    text = SCHEDULE.replace("kind: discover, every: 1d", "kind: catch-up, every: 1h, device_types: [workstation]")
    loaded = schedule.load(write(tmp_path, "schedule.yml", text))
    job = next(j for j in loaded.jobs if j.kind == "catch-up")
    assert job.covers(("workstations",), "workstation") and not job.covers(("web",), "server")


def test_thin_links_name_known_groups_and_apply_per_host(tmp_path: Path) -> None:
    text = SCHEDULE + "thin_links:\n  - {groups: [branch], download_limit_kbps: 64}\n"
    with pytest.raises(InputError, match=r"schedule.yml:\d+: thin_links\[0\].groups: unknown group 'branch'"):
        schedule.load(write(tmp_path, "schedule.yml", text), known_groups={"web", "db", "workstations"})
    loaded = schedule.load(write(tmp_path, "schedule.yml", text), known_groups={"web", "db", "workstations", "branch"})
    hosts = [Host(name="b1", groups=("branch",)), Host(name="w1", groups=("web",))]
    assert thin_link_vars(loaded.thin_links, hosts) == {"b1": {"download_limit_kbps": 64, "relay": ""}}


def test_units_run_schedule_run_from_a_timer(tmp_path: Path) -> None:
    path = write(tmp_path, "schedule.yml", SCHEDULE)
    units = schedule.units(path, ROOT, every_minutes=10)
    assert f'ExecStart="{ROOT}/.venv/bin/patchwave" schedule run' in units["patchwave-schedule.service"]
    assert f'Environment="PATCHWAVE_SCHEDULE={path.resolve()}"' in units["patchwave-schedule.service"]
    assert "OnUnitActiveSec=10min" in units["patchwave-schedule.timer"]


def test_discovery_records_new_gone_changed_and_returned_hosts(tmp_path: Path) -> None:
    plan = schedule.load(write(tmp_path, "schedule.yml", SCHEDULE))
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    inventory = write(tmp_path, "hosts.yml", INVENTORY)
    first = discover.discover(store, inventory, plan, now=utc(29, 8))
    assert {(c["host"], c["kind"], c["decision"]) for c in first["changes"]} == {
        ("web1", "new", "remediate-now"), ("web2", "new", "remediate-now"), ("db1", "new", "patch-now"),
        ("ws1", "new", "next-cycle")}
    assert discover.discover(store, inventory, plan, now=utc(29, 9))["changes"] == []  # nothing changed
    inventory.write_text(INVENTORY.replace("        web2: {patchwave_device_type: server, patchwave_owner: team-web}\n", "")
                         .replace("owner: alice", "owner: bob"))
    second = discover.discover(store, inventory, plan, now=utc(29, 10))
    assert sorted((c["host"], c["kind"], json.dumps(c["detail"])) for c in second["changes"]) == [
        ("web2", "gone", "{}"), ("ws1", "changed", '{"owner": {"from": "alice", "to": "bob"}}')]
    assert next(a for a in store.assets() if a["host"] == "web2")["gone_at"] is not None
    inventory.write_text(INVENTORY)
    third = discover.discover(store, inventory, plan, now=utc(29, 11))
    assert sorted((c["host"], c["kind"]) for c in third["changes"]) == [("web2", "returned"), ("ws1", "changed")]
    events = store.asset_events()
    assert [e["kind"] for e in events].count("new") == 4 and events[-1]["at"].day == 29
    assert {e["host"]: e["decision"] for e in store.asset_events(kind="new", pending=True)} == {
        "web1": "remediate-now", "web2": "remediate-now", "db1": "patch-now", "ws1": "next-cycle"}


def test_a_host_patched_pending_a_restart_counts_as_patched(tmp_path: Path) -> None:
    from conftest import end_cycle

    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    store.create_cycle("c9", "inv.yml", {"name": "p"})
    store.add_end_state("c9", "web1", "patched-pending-restart", [], "pw-httpd still runs the old library")
    store.add_end_state("c9", "db1", "partially-patched", [], "")
    end_cycle(store, "c9", "completed")
    times = store.last_times()
    assert "patched" in times["web1"] and "patched" not in times.get("db1", {})


def test_overdue_and_never_assessed_hosts(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    fill(store)  # assessments of web1 (Nov 1, 2), web2 (Nov 3), ws1 (Nov 4); a cycle scan of every host Nov 10
    inventory = write(tmp_path, "hosts.yml", INVENTORY)
    path = write(tmp_path, "schedule.yml", SCHEDULE.replace('cron: "0 2 * * *"', "every: 7d"))
    plan = schedule.load(path)
    rows = {r["host"]: r for r in discover.freshness(store, inventory, plan, now=utc(11, 12))}
    # on Nov 11: the 6-hourly scan is overdue after 9 hours (last scan Nov 10 10:00); the weekly
    # assessment after 10.5 days: web1 (Nov 2) is not yet, db1 was never assessed
    assert rows["web1"]["overdue"] == ["server-scan"] and not rows["web1"]["never_assessed"]
    assert rows["db1"]["overdue"] == ["server-scan", "nightly-assess"] and rows["db1"]["never_assessed"]
    assert rows["ws1"]["overdue"] == []  # workstations are not in the scan job; assessed Nov 4
    assert rows["web1"]["last_assessed"] == datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    later = {r["host"]: r for r in discover.freshness(store, inventory, plan, now=utc(29, 12))}
    assert later["web1"]["overdue"] == ["server-scan", "nightly-assess"]
    assert later["web1"]["last_scanned"] == datetime(2026, 11, 10, 10, 0, tzinfo=UTC)
    assert later["web1"]["last_patched"] is not None and later["db1"]["last_patched"] is None
    proc = subprocess.run([str(Path(sys.executable).parent / "patchwave"), "hosts", "--overdue", "--json", "-i",
                           str(inventory), "-s", str(path), "--store", store.url], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    listed = {r["host"]: r for r in json.loads(proc.stdout)}
    assert set(listed) == {"web1", "web2", "db1", "ws1"}  # on the real date every host is overdue
    assert listed["db1"]["never_assessed"] and not listed["web1"]["never_assessed"]


def test_hosts_that_do_not_answer_are_retried_with_backoff_within_the_window(tmp_path: Path) -> None:
    from patchwave.fleet.scheduler import with_retries
    from patchwave.models import Host

    plan = schedule.load(write(tmp_path, "schedule.yml", SCHEDULE + "retry: {window_minutes: 0.05, "
                                                                      "backoff_seconds: 0.2}\n"))
    calls: list[list[str]] = []
    answers = {"laptop": iter([False, False, True]), "server": iter([True])}

    def run(batch: list[Host]) -> dict[str, bool]:
        calls.append([h.name for h in batch])
        return {h.name: next(answers[h.name]) for h in batch}

    logged: list[str] = []
    result = with_retries(plan, [Host("server"), Host("laptop")], run, logged.append)
    assert calls == [["server", "laptop"], ["laptop"], ["laptop"]]  # only the missing host again
    assert result == {"hosts": 2, "answered": ["laptop", "server"], "unreachable": [], "tries": 3}
    assert "trying again in 0.2 s" in logged[0] and "trying again in 0.4 s" in logged[1]
    # a host that never answers is reported unreachable once the window (3 s) is over
    never = with_retries(plan, [Host("gone")], lambda batch: {"gone": False}, logged.append)
    assert never["unreachable"] == ["gone"] and 2 <= never["tries"] <= 5
