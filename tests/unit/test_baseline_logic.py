"""Pure logic of the baseline module_utils, on a directory tree standing in for a host's root
(the checks themselves are tested on real lab hosts in tests/integration)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.checks import (
    Host,
    _hex_address,
    check_config_value,
    persisted_sysctl,
)
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.fixes import ensure_line, set_key
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.rules import (
    assess,
    exception_in_force,
    parse_day,
)


def tree(tmp_path: Path, files: dict[str, str]) -> Host:
    for name, text in files.items():
        path = tmp_path / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Host(root=str(tmp_path))


def test_globs_never_enter_network_filesystems(tmp_path: Path) -> None:
    host = tree(tmp_path, {"/proc/self/mounts": "server:/export /mnt/share nfs4 rw,relatime 0 0\n"
                                                "tmpfs /run tmpfs rw,nosuid 0 0\n",
                           "/mnt/share/a.conf": "x", "/mnt/local/b.conf": "y", "/etc/c.conf": "z"})
    assert host.expand(["/mnt/*/*.conf", "/etc/*.conf"]) == ["/mnt/local/b.conf", "/etc/c.conf"]
    assert host.expand(["/mnt/share/a.conf"]) == []


def test_sysctl_persisted_value_follows_procps_order(tmp_path: Path) -> None:
    host = tree(tmp_path, {"/proc/self/mounts": "", "/usr/lib/sysctl.d/10-default.conf": "net.ipv4.ip_forward = 1\n",
                           "/etc/sysctl.d/10-default.conf": "# overrides the vendor file of the same name\n",
                           "/etc/sysctl.d/99-late.conf": "net/ipv4/tcp_syncookies=0\n",
                           "/etc/sysctl.conf": "net.ipv4.tcp_syncookies = 1\n"})
    assert persisted_sysctl(host, "net.ipv4.ip_forward") == (None, "")  # /etc's file of that name wins: unset
    assert persisted_sysctl(host, "net.ipv4.tcp_syncookies") == ("1", "/etc/sysctl.conf:1")


def test_config_value_first_and_last_occurrence(tmp_path: Path) -> None:
    host = tree(tmp_path, {"/proc/self/mounts": "", "/etc/app.d/10.conf": "Mode relaxed\n",
                           "/etc/app.conf": "# comment\nMode strict\nMode paranoid\n"})
    first = check_config_value(host, {"path": ["/etc/app.d/*.conf", "/etc/app.conf"], "key": "mode",
                                      "first_wins": True, "value": "relaxed"}, 5)
    last = check_config_value(host, {"path": ["/etc/app.d/*.conf", "/etc/app.conf"], "key": "mode",
                                     "value": "paranoid"}, 5)
    assert (first.status, first.where, last.status, last.where) == ("pass", "/etc/app.d/10.conf:1", "pass",
                                                                    "/etc/app.conf:3")


def test_proc_net_addresses_decode() -> None:
    assert _hex_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert _hex_address("00000000000000000000000000000000:0016") == ("::", 22)
    assert _hex_address("00000000000000000000000001000000:0019") == ("0:0:0:0:0:0:0:1", 25)


def test_set_key_rewrites_the_first_comments_out_the_rest_and_is_idempotent() -> None:
    text = "# PASS_MAX_DAYS 1\nPASS_MAX_DAYS 99999\nUMASK 022\nPASS_MAX_DAYS 5\n"
    once = set_key(text, "PASS_MAX_DAYS", "365", case_insensitive=False)
    assert once == "# PASS_MAX_DAYS 1\nPASS_MAX_DAYS 365\nUMASK 022\n# PASS_MAX_DAYS 5  # superseded by Patchwave\n"
    assert set_key(once, "PASS_MAX_DAYS", "365", case_insensitive=False) == once
    assert set_key("", "minlen", "14", "=") == "minlen = 14\n"
    assert set_key("minlen=14\n", "minlen", "14", "=") == "minlen=14\n"  # same value: the line stays as written


def test_ensure_line_replaces_or_appends_once() -> None:
    assert ensure_line("hardened no\nlevel 3\n", "hardened yes", "^hardened ") == "hardened yes\nlevel 3\n"
    assert ensure_line("level 3\n", "hardened yes") == "level 3\nhardened yes\n"
    assert ensure_line("hardened yes\n", "hardened yes", "^hardened ") == "hardened yes\n"
    assert ensure_line(None, "Defaults use_pty") == "Defaults use_pty\n"


@pytest.mark.parametrize(("value", "ok"), [
    ("2027-03-31", True), (date(2027, 3, 31), True), ("20270331", False), ("2027-W13-3", False),
    ("2027-03-31T00:00", False), (datetime(2027, 3, 31), False), (20270331, False), (None, False),
    ("2027-3-31", False), ("2027-02-29", False), ("2027-03-31\n", False), (" 2027-03-31", False),
])
def test_the_host_takes_expiry_dates_as_yyyy_mm_dd_only(value: object, ok: bool) -> None:
    if ok:
        assert parse_day(value) == date(2027, 3, 31)
    else:
        with pytest.raises(ValueError):
            parse_day(value)


@pytest.mark.parametrize(("offset", "in_force"), [(-1, False), (0, True), (1, True)])
def test_an_exception_holds_through_its_expiry_day_and_lapses_the_next(offset: int, in_force: bool) -> None:
    today = date.today()
    assert exception_in_force((today + timedelta(days=offset)).isoformat(), today.isoformat()) is in_force
    assert exception_in_force(today + timedelta(days=offset), today) is in_force


def _failing_rule(expires: object) -> dict[str, object]:
    return {"id": "no-telnetd", "type": "file", "args": {"path": "/usr/sbin/in.telnetd", "state": "absent"},
            "exception": {"id": "EXC-7", "expires": expires}}


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_an_expired_exception_leaves_the_failure_standing_on_the_host(tmp_path: Path, offset: int) -> None:
    host = tree(tmp_path, {"/proc/self/mounts": "", "/usr/sbin/in.telnetd": "ELF"})
    expires = (date.today() + timedelta(days=offset)).isoformat()
    (result,), summary = assess([_failing_rule(expires)], host=host)  # today: the host's clock
    if offset < 0:
        assert result["status"] == "fail" and result["exception_expired"] == "EXC-7" and "exception" not in result
        assert result["evidence"]["note"] == f"exception EXC-7 expired on {expires}"
        assert (summary["fail"], summary["excepted"]) == (1, 0)
    else:
        assert result["status"] == "excepted" and result["exception"] == "EXC-7"


def test_a_text_that_sorts_after_today_is_not_an_expiry(tmp_path: Path) -> None:
    """Compared as text, '2999-W01-1', '9' and '29991231' sort after any ISO date: they must not except."""
    host = tree(tmp_path, {"/proc/self/mounts": "", "/usr/sbin/in.telnetd": "ELF"})
    for expires in ("2999-W01-1", "9", "29991231"):
        (result,), _summary = assess([_failing_rule(expires)], host=host, today=date.today().isoformat())
        assert result["status"] == "fail" and "does not count" in result["evidence"]["note"], expires
