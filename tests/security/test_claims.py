"""Claims that the database decides: the cycle lock (and the takeover of a stale one), schedule
slots and outbox deliveries. Two real processes race for each claim at the same moment (a
barrier releases them together), 50 times; exactly one may win every time."""

from __future__ import annotations

import multiprocessing
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from patchwave.errors import PatchwaveError
from patchwave.store import Store
from patchwave.store.schema import cycle_locks

ROUNDS = 50
FORK = multiprocessing.get_context("fork")


def _race(url: str, what: str, barrier: Any, results: Any, rounds: int, racer: int) -> None:
    store = Store(url)  # each process opens its own engine, after the fork
    me = f"{socket.gethostname()}:{os.getpid()}"
    for index in range(rounds):
        barrier.wait(timeout=60)
        won: bool
        if what in ("lock", "takeover"):
            try:
                store.lock(f"{what}-{index}")
                won = True
            except PatchwaveError:
                won = False
        else:  # a slot of the same job, each process a different slot: one run of a job at a time
            slot = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=index)
            offset = timedelta(seconds=racer)  # each racer computed a slot of its own
            won = store.claim_slot(f"job-{index}", slot + offset, me) is not None
        results.put((index, os.getpid(), won))


def race(url: str, what: str, prepare: Any = None) -> dict[int, list[bool]]:
    barrier = FORK.Barrier(2)
    results = FORK.Queue()
    for index in range(ROUNDS):
        if prepare is not None:
            prepare(index)
    procs = [FORK.Process(target=_race, args=(url, what, barrier, results, ROUNDS, racer)) for racer in range(2)]
    for proc in procs:
        proc.start()
    outcome: dict[int, list[bool]] = {}
    for _ in range(2 * ROUNDS):
        index, _pid, won = results.get(timeout=120)
        outcome.setdefault(index, []).append(won)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return outcome


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store that does not exist yet: the two racers of a round create it at the same moment
    (the schema is made once, in one immediate transaction)."""
    return f"sqlite:///{tmp_path / 'claims.db'}"


def test_two_orchestrators_one_lock_each_time(url: str) -> None:
    outcome = race(url, "lock")
    assert all(sorted(wins) == [False, True] for wins in outcome.values()), outcome
    with Store(url).engine.connect() as conn:
        assert conn.execute(select(cycle_locks.c.cycle_id)).scalars().all().__len__() == ROUNDS


def _dead_pid() -> int:
    proc = FORK.Process(target=lambda: None)
    proc.start()
    proc.join()
    assert proc.pid is not None
    return proc.pid


def test_a_stale_lock_is_taken_over_by_exactly_one(url: str) -> None:
    store = Store(url)
    dead = _dead_pid()
    stamp = datetime.now(UTC) - timedelta(hours=1)

    def stale(index: int) -> None:
        # half of them held by a process that is gone from this machine, half by another
        # machine's process whose lease ran out an hour ago
        mine = index % 2 == 0
        with store.engine.begin() as conn:
            conn.execute(insert(cycle_locks).values(
                cycle_id=f"takeover-{index}", pid=dead if mine else 4242,
                hostname=socket.gethostname() if mine else "elsewhere.example.org", acquired_at=stamp,
                holder=f"old-{index}", lease_until=None if mine else stamp))

    outcome = race(url, "takeover", stale)
    assert all(sorted(wins) == [False, True] for wins in outcome.values()), outcome
    logged = [e["message"] for e in store.events(f"takeover-{1}")]
    assert any("lease ran out" in m for m in logged)


def test_a_live_lock_with_a_running_lease_is_not_taken(url: str) -> None:
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(insert(cycle_locks).values(
            cycle_id="busy", pid=4242, hostname="elsewhere.example.org", acquired_at=datetime.now(UTC),
            holder="theirs", lease_until=datetime.now(UTC) + timedelta(minutes=5)))
    with pytest.raises(PatchwaveError, match=r"being driven by pid 4242 on elsewhere\.example\.org"):
        store.lock("busy")


def test_the_lease_is_renewed_while_held_and_the_lock_released(url: str) -> None:
    store = Store(url)
    store.lock("renewed", lease=timedelta(seconds=0.6))
    with store.engine.connect() as conn:
        first = conn.execute(select(cycle_locks.c.lease_until)).scalar()
    import time

    time.sleep(1.0)
    with store.engine.connect() as conn:
        later = conn.execute(select(cycle_locks.c.lease_until)).scalar()
    assert later > first and store.holds_lock("renewed")
    store.unlock("renewed")
    with store.engine.connect() as conn:
        assert conn.execute(select(cycle_locks)).first() is None


def test_one_run_of_a_job_whatever_slot_each_scheduler_computed(url: str) -> None:
    outcome = race(url, "slot")
    assert all(sorted(wins) == [False, True] for wins in outcome.values()), outcome


SECRET = "claims-hmac-key"  # noqa: S105 - a test key
PER_ROUND = 3


def _flusher(url: str, policy: str, start: Any, done: Any, results: Any, rounds: int) -> None:
    from patchwave.notify import config
    from patchwave.notify.outbox import Notifier

    store = Store(url)
    for _index in range(rounds):
        start.wait(timeout=60)
        counts = Notifier(store, config.load(Path(policy)), Path(policy).parent, []).flush()
        results.put(counts["sent"])
        done.wait(timeout=60)


def test_two_flushers_deliver_each_message_exactly_once(url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from notifyservers import WebhookHandler, WebhookState, serving

    monkeypatch.setenv("PW_CLAIMS_SECRET", SECRET)
    store = Store(url)
    with serving(WebhookHandler, WebhookState(SECRET)) as (hook, receiver):
        policy = tmp_path / "notify.yml"
        policy.write_text(f"channels:\n  hook: {{type: webhook, url: '{hook}', secret: {{env: PW_CLAIMS_SECRET}}, "
                          "insecure: true}\nroutes:\n  - {name: all, events: [patch_failed], channels: [hook]}\n")
        start, done = FORK.Barrier(3), FORK.Barrier(3)
        results = FORK.Queue()
        procs = [FORK.Process(target=_flusher, args=(url, str(policy), start, done, results, ROUNDS))
                 for _ in range(2)]
        for proc in procs:
            proc.start()
        for index in range(ROUNDS):
            store.enqueue([{"key": f"m{index}-{n}", "channel": "hook", "route": "all", "event": "patch_failed",
                            "op": "send", "ticket": None, "severity": "high", "subject": f"round {index} #{n}",
                            "body": {"text": "x", "hosts": [], "data": {}}} for n in range(PER_ROUND)])
            start.wait(timeout=60)  # both flushers go at once
            sent = [results.get(timeout=60), results.get(timeout=60)]
            done.wait(timeout=60)
            assert sum(sent) == PER_ROUND, (index, sent)
        for proc in procs:
            proc.join(timeout=60)
            assert proc.exitcode == 0
    ids = receiver.ids()
    assert len(ids) == ROUNDS * PER_ROUND and len(set(ids)) == len(ids)  # each once, none twice
    assert {r["status"] for r in store.outbox_rows()} == {"sent"}


def test_a_stale_read_cannot_claim_a_message_tried_since(url: str) -> None:
    """Flusher B read the row before A tried it, failed and put it back with a backoff: B's claim
    (made with the attempt count it read) must fail, or B would resend at once and reset the
    attempt count that bounds the retries."""
    store = Store(url)
    store.enqueue([{"key": "k1", "channel": "hook", "route": "all", "event": "patch_failed", "op": "send",
                    "ticket": None, "severity": "high", "subject": "s", "body": {}}])
    (row,) = store.outbox_rows()
    at = datetime.now(UTC) + timedelta(seconds=1)
    assert store.claim_outbox(row["id"], 0, at, "a:1:x", timedelta(minutes=1))
    assert store.finish_outbox(row["id"], "a:1:x", status="pending", attempts=1, last_error="timed out",
                               next_at=at + timedelta(minutes=5))
    assert not store.claim_outbox(row["id"], 0, at, "b:2:y", timedelta(minutes=1))  # B's stale read
    assert not store.claim_outbox(row["id"], 1, at, "b:2:y", timedelta(minutes=1))  # not due yet
    assert store.claim_outbox(row["id"], 1, at + timedelta(minutes=6), "b:2:y", timedelta(minutes=1))
    assert not store.finish_outbox(row["id"], "a:1:x", status="sent")  # A no longer holds it


def test_a_dead_flushers_claim_is_released_and_a_live_ones_kept(url: str) -> None:
    store = Store(url)
    store.enqueue([{"key": f"k{n}", "channel": "hook", "route": "all", "event": "patch_failed", "op": "send",
                    "ticket": None, "severity": "high", "subject": "s", "body": {}} for n in range(2)])
    first, second = store.outbox_rows()
    at = datetime.now(UTC) + timedelta(seconds=1)
    assert store.claim_outbox(first["id"], 0, at, f"{socket.gethostname()}:{_dead_pid()}:x", timedelta(hours=1))
    assert store.claim_outbox(second["id"], 0, at, f"{socket.gethostname()}:{os.getpid()}:y", timedelta(hours=1))
    assert store.release_stale_claims() == 1
    assert [r["status"] for r in store.outbox_rows()] == ["pending", "sending"]
