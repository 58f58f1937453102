"""Identifiers of runs: sortable by time, unique enough for one controller."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_cycle_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
