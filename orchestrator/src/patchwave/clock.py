"""Time as the store keeps it: aware and in UTC. SQLite hands datetimes back naive (they were
stored as UTC), so every reader makes them aware here, once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def now() -> datetime:
    return datetime.now(UTC)


@overload
def aware(stamp: datetime) -> datetime: ...
@overload
def aware(stamp: None) -> None: ...
def aware(stamp: datetime | None) -> datetime | None:
    """The stamp as an aware UTC datetime (a naive one was stored as UTC)."""
    return stamp if stamp is None or stamp.tzinfo else stamp.replace(tzinfo=UTC)
