"""Maintenance windows: may a wave start now, and if not, when could it? Pure functions.

A host is governed by every window whose groups it is in (a window without groups governs every
host); a host with no window may be patched any time. A wave may start when, for each window
that governs one of its hosts, now falls in an open slot (in the window's time zone, not on a
blackout date) that stays open for the wave's expected duration.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from patchwave.models import Host
from patchwave.patching.policy import DAYS, Window

STEP = timedelta(minutes=5)
HORIZON = timedelta(days=28)


def governing(windows: Sequence[Window], hosts: Iterable[Host]) -> list[Window]:
    groups = {g for h in hosts for g in h.groups}
    return [w for w in windows if not w.groups or set(w.groups) & groups]


def open_for(window: Window, at: datetime, minutes: int) -> bool:
    """Is `window` open at `at` and still open `minutes` later (same slot)?"""
    local = at.astimezone(ZoneInfo(window.timezone))
    if local.date().isoformat() in window.blackout:
        return False
    day = DAYS[local.weekday()]
    clock = local.time().replace(tzinfo=None)
    for slot in window.slots:
        start, end = slot.times()
        if day in slot.days and start <= clock < end:
            slot_end = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
            return local + timedelta(minutes=minutes) <= slot_end
    return False


def may_start(windows: Sequence[Window], at: datetime, minutes: int) -> bool:
    return all(open_for(w, at, minutes) for w in windows)


def next_start(windows: Sequence[Window], after: datetime, minutes: int) -> datetime | None:
    """The first moment (5-minute steps, 4 weeks ahead) when every window allows the wave."""
    if may_start(windows, after, minutes):
        return after
    moment = after.replace(second=0, microsecond=0)
    moment += timedelta(minutes=(5 - moment.minute % 5) % 5 or 5)
    while moment - after <= HORIZON:
        if may_start(windows, moment, minutes):
            return moment
        moment += STEP
    return None


def describe(windows: Sequence[Window], at: datetime | None) -> str:
    if at is None:
        return "no opening in the next four weeks"
    zones = sorted({w.timezone for w in windows}) or ["UTC"]
    return ", ".join(f"{at.astimezone(ZoneInfo(z)):%Y-%m-%d %H:%M} {z}" for z in zones)
