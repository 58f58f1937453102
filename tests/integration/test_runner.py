"""The runner against real ansible-playbook runs (local connection, no lab needed): events land
in the store as they arrive, results come from events, and the idle timeout stops a silent run."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import ROOT

from patchwave.ansible.runner import PlaybookRunner, TaskEvent, Timeouts
from patchwave.store import Store

PLAYBOOK = """\
- name: Two tasks
  hosts: all
  gather_facts: false
  tasks:
    - name: Say something
      ansible.builtin.debug:
        msg: hello
    - name: Fail on purpose
      ansible.builtin.command: /bin/false
      changed_when: false
"""
SILENT = """\
- name: A task that hangs without output
  hosts: all
  gather_facts: false
  tasks:
    - name: Sleep
      ansible.builtin.command: sleep 30
      changed_when: false
"""


class Seen:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: list[TaskEvent] = []
        self.stored_when_seen: list[int] = []
        self.runs: list[tuple[str, str]] = []

    def begin(self, run: str, hosts: list[str]) -> None:
        self.runs.append(("begin", run))

    def event(self, event: TaskEvent) -> None:
        self.events.append(event)
        if event.kind in ("ok", "failed"):
            # the store already holds the event when the display hears of it
            (row,) = self.store.runs("c1")
            self.stored_when_seen.append(len(self.store.task_events(row["id"])))

    def end(self, run: str, status: str) -> None:
        self.runs.append((status, run))


def _inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    local1:\n      ansible_connection: local\n"
                         "      ansible_python_interpreter: /usr/bin/python3\n")
    return inventory


def test_events_are_stored_as_they_arrive(tmp_path: Path) -> None:
    (tmp_path / "two.yml").write_text(PLAYBOOK)
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    seen = Seen(store)
    runner = PlaybookRunner(ROOT, tmp_path / "runs", recorder=store, cycle_id="c1", observer=seen)
    result = runner.run(str(tmp_path / "two.yml"), _inventory(tmp_path), ident="t1", limit=["local1"])
    assert result.status == "failed" and result.rc != 0
    assert not result.hosts["local1"].ok and "non-zero return code" in result.hosts["local1"].message
    assert seen.stored_when_seen == [1, 2]
    (row,) = store.runs("c1")
    assert (row["ident"], row["status"], row["hosts"]) == ("t1", "failed", ["local1"])
    assert row["seconds"] is not None and row["seconds"] > 0
    events = [(e["task"], e["kind"]) for e in store.task_events(row["id"])]
    assert events == [("Say something", "ok"), ("Fail on purpose", "failed")]
    assert seen.runs == [("begin", "t1"), ("failed", "t1")]


def test_idle_timeout_stops_a_silent_run_and_fails_its_hosts(tmp_path: Path) -> None:
    (tmp_path / "silent.yml").write_text(SILENT)
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    runner = PlaybookRunner(ROOT, tmp_path / "runs", recorder=store, cycle_id="c1", timeouts=Timeouts(idle=3, job=60))
    started = time.monotonic()
    result = runner.run(str(tmp_path / "silent.yml"), _inventory(tmp_path), ident="t2", limit=["local1"])
    assert time.monotonic() - started < 60
    assert result.status == "timeout"
    assert not result.hosts["local1"].ok and "idle timeout (3 s)" in result.hosts["local1"].message
    assert store.runs("c1")[0]["status"] == "timeout"
