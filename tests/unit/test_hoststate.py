"""Lock holders, reboot signals and end states: pure logic of the collection's module_utils."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.patchwave.endpoint.plugins.module_utils import hoststate
from ansible_collections.patchwave.endpoint.plugins.module_utils.endstate import end_state

LOCKS = """\
1: POSIX  ADVISORY  WRITE 4242 fd:01:1835049 0 EOF
1: -> POSIX  ADVISORY  WRITE 4343 fd:01:1835049 0 EOF
2: FLOCK  ADVISORY  WRITE 77 00:19:12 0 EOF
"""


def test_parse_proc_locks_skips_waiters() -> None:
    assert hoststate.parse_proc_locks(LOCKS) == [(4242, "fd:01:1835049"), (77, "00:19:12")]


def test_lock_holder_is_found_by_pid_and_command(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl,sys,time\n"
        f"f=open({str(lock)!r},'w'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        found = hoststate.lock_holders([str(lock)])
        assert [(h["pid"], h["file"]) for h in found] == [(holder.pid, str(lock))]
        assert "fcntl" in found[0]["command"]
        clock = iter([0.0, 0.5, 1.0, 1.5, 2.0, 2.5]).__next__
        left, waited = hoststate.wait_for_unlocked([str(lock)], timeout=2, sleep=lambda _s: None, clock=clock)
        assert left and waited >= 2
    finally:
        holder.kill()
        holder.wait()
    assert hoststate.lock_holders([str(lock)]) == []
    assert hoststate.wait_for_unlocked([str(lock)], timeout=5)[0] == []


def test_own_lock_does_not_count(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    with lock.open("w") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        assert hoststate.lock_holders([str(lock)]) == []
    assert os.getpid() > 0 and time.monotonic() > 0


def _cmp(a: str, b: str) -> int:
    from debian.debian_support import version_compare

    return int(version_compare(a, b))


def test_kernel_signal_fires_only_for_a_newer_installed_kernel() -> None:
    assert hoststate.kernel_signal("6.1.0-18-amd64", ["6.1.0-18-amd64", "6.1.0-21-amd64"], _cmp) == {
        "signal": "kernel-newer", "running": "6.1.0-18-amd64", "newest": "6.1.0-21-amd64"}
    assert hoststate.kernel_signal("6.1.0-21-amd64", ["6.1.0-18-amd64", "6.1.0-21-amd64"], _cmp) is None
    assert hoststate.kernel_signal("6.1.0-21-amd64", [], _cmp) is None


def test_installed_kernels_reads_vmlinuz(tmp_path: Path) -> None:
    for name in ("vmlinuz-6.1.0-21-amd64", "vmlinuz-6.1.0-18-amd64", "config-6.1.0-21-amd64"):
        (tmp_path / name).write_text("")
    assert hoststate.installed_kernels(str(tmp_path)) == ["6.1.0-18-amd64", "6.1.0-21-amd64"]


def test_needrestart_batch_output() -> None:
    text = "NEEDRESTART-VER: 3.6\nNEEDRESTART-KCUR: 6.1.0-18-amd64\nNEEDRESTART-KSTA: 3\nNEEDRESTART-SVC: ssh.service\n"
    assert hoststate.parse_needrestart(text) == {"kernel_status": 3, "services": ["ssh.service"]}


@pytest.mark.parametrize(("installed", "reboot", "state"), [
    ({"a": "2", "b": "2"}, False, "patched"),
    ({"a": "2", "b": "2"}, True, "patched-pending-reboot"),
    ({"a": "2", "b": "1"}, False, "partially-patched"),
    ({"a": "1", "b": "1"}, False, "failed"),
])
def test_end_state(installed: dict[str, str], reboot: bool, state: str) -> None:
    assert end_state({"a": "2", "b": "2"}, installed, reboot)[0] == state


def test_end_state_excluded_and_rolled_back() -> None:
    assert end_state({}, {}, False)[0] == "excluded"
    journal = {"before": {"a": "1"}, "new": ["dep"]}
    assert end_state({"a": "2", "dep": "1"}, {"a": "1"}, False, journal)[0] == "rolled-back"
    state, detail, _packages = end_state({"a": "2", "dep": "1"}, {"a": "1", "dep": "1"}, False, journal)
    assert state == "failed" and "dep" in detail
