"""The lock-out guard exists twice: in the collection (judged on the host, where paths resolve)
and in the orchestrator (judged when a baseline loads, for `file:line`). The orchestrator does
not import the collection, so this test holds the two copies of every table to one another:
a guard added on one side only fails here."""

from __future__ import annotations

import pytest
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline import fixes

from patchwave.baseline import rules as baseline

PAIRS = ["KEY_FILE_NAMES", "SSHD_DROP_IN", "ACCOUNT_FILES", "SSHD_CONNECTION_KEYS", "ROOT_LOGIN_ALLOWED",
         "SUDO_FLAGS_REFUSED", "PROTECTED_PACKAGES", "PROTECTED_UNITS", "CONNECTION_FILES", "REMOVE_REFUSED",
         "LIMITS_DIR", "SYSTEM_DIRS", "MODE_REFUSED"]


def _plain(value: object) -> object:
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("name", PAIRS)
def test_both_copies_of_a_guard_table_agree(name: str) -> None:
    assert _plain(getattr(baseline, f"_{name}")) == _plain(getattr(fixes, name))


def test_the_core_limit_pattern_agrees() -> None:
    assert baseline._CORE_LIMIT.pattern == fixes.CORE_LIMIT.pattern
