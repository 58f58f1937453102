"""Maintenance windows: open, closed, blackout, time zones, duration, next opening."""

from __future__ import annotations

from datetime import UTC, datetime

from patchwave.models import Host
from patchwave.patching import windows
from patchwave.patching.policy import Slot, Window

BERLIN = Window(groups=["web"], timezone="Europe/Berlin", slots=[Slot(days=["sat"], start="02:00", end="06:00")],
                blackout=["2026-12-26"])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_open_inside_the_slot_in_its_time_zone() -> None:
    # Saturday 2026-12-05 03:00 in Berlin is 02:00 UTC (winter, UTC+1)
    assert windows.open_for(BERLIN, utc(2026, 12, 5, 2, 0), 60)
    assert not windows.open_for(BERLIN, utc(2026, 12, 5, 0, 30), 60)  # 01:30 Berlin: not yet
    assert not windows.open_for(BERLIN, utc(2026, 12, 5, 4, 30), 60)  # 05:30 Berlin: not an hour left
    assert windows.open_for(BERLIN, utc(2026, 12, 5, 4, 30), 30)
    assert not windows.open_for(BERLIN, utc(2026, 12, 6, 2, 0), 60)  # Sunday


def test_blackout_dates_close_the_window() -> None:
    assert not windows.open_for(BERLIN, utc(2026, 12, 26, 2, 0), 30)


def test_next_start_and_description() -> None:
    after = utc(2026, 11, 30, 12, 0)  # a Monday
    start = windows.next_start([BERLIN], after, 60)
    assert start == utc(2026, 12, 5, 1, 0)  # Saturday 02:00 Berlin
    assert windows.describe([BERLIN], start) == "2026-12-05 02:00 Europe/Berlin"
    # the Saturday after is a blackout: from the 20th, the next opening skips to January
    assert windows.next_start([BERLIN], utc(2026, 12, 20, 12, 0), 60) == utc(2027, 1, 2, 1, 0)


def test_only_windows_of_the_hosts_groups_govern() -> None:
    assert windows.governing([BERLIN], [Host("db1", ("db",))]) == []
    assert windows.governing([BERLIN], [Host("web1", ("web",))]) == [BERLIN]
    assert windows.may_start([], utc(2026, 11, 30, 12, 0), 600)  # no window: any time
