"""Processes running replaced code (module_utils/restarts.py) and the restart_services module.

The scan logic is judged on a fake /proc in tmp_path; one test runs a real process on this
controller that maps a copied shared library, then deletes and replaces that library."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.patchwave.endpoint.plugins.module_utils import restarts
from ansible_collections.patchwave.endpoint.plugins.module_utils.endstate import END_STATES, end_state
from ansible_collections.patchwave.endpoint.plugins.modules import restart_services

from patchwave import states


class FakeProc:
    """A /proc tree: per pid exe (a symlink's text), comm, status (PPid), cgroup and maps."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(self, pid: int, comm: str, exe: str | None, maps: list[str], ppid: int = 1,
            cgroup: str = "0::/\n") -> None:
        base = self.root / str(pid)
        base.mkdir()
        if exe is not None:
            (base / "exe").symlink_to(exe)
        (base / "comm").write_text(comm + "\n")
        (base / "status").write_text(f"Name:\t{comm}\nPPid:\t{ppid}\n")
        (base / "cgroup").write_text(cgroup)
        (base / "maps").write_text("".join(line + "\n" for line in maps))


def maps_line(path: str, perms: str = "r-xp", dev: str = "fd:01", inode: int = 4242) -> str:
    return f"7f0000000000-7f0000001000 {perms} 00000000 {dev} {inode}                    {path}"


LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
LIBCRYPTO = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


def scan(proc: FakeProc, run: Path | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    return restarts.stale_processes(str(proc.root), run_root=str(run or proc.root.parent / "run"), ignore_pids=[],
                                    **kwargs)


def test_deleted_code_counts_data_and_special_mappings_do_not(proc: FakeProc) -> None:
    # paths that do not exist here: a live path is compared with the real file (another test)
    proc.add(100, "pw-tls", "/usr/bin/pw-fake-openssl", [
        maps_line("/usr/bin/pw-fake-openssl"),
        maps_line(LIBSSL + " (deleted)"),
        maps_line(LIBSSL + " (deleted)", perms="r--p"),
        maps_line("/usr/lib/locale/locale-archive (deleted)", perms="r--p"),  # data, not code
        maps_line("/dev/shm/pulse-shm-1 (deleted)", perms="rwxs"),
        maps_line("/memfd:jit (deleted)"),
        maps_line("/SYSV00000000 (deleted)", perms="rwxs", inode=7),
        maps_line("/tmp/ffi1234 (deleted)"),
        "7f0000002000-7f0000003000 rw-p 00000000 00:00 0 ",
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
    ])
    proc.add(101, "cron", "/usr/sbin/pw-fake-cron", [maps_line("/usr/sbin/pw-fake-cron"),
                                                     maps_line(LIBCRYPTO + " (deleted)", perms="r--p")])
    found = scan(proc)
    assert [(p["pid"], p["command"], p["exe"], p["files"]) for p in found] == [
        (100, "pw-tls", "/usr/bin/pw-fake-openssl", [LIBSSL])]
    assert found[0]["pid1"] is False and found[0]["service"] is None


def test_a_deleted_executable_and_kernel_threads(proc: FakeProc) -> None:
    proc.add(200, "sshd", "/usr/sbin/sshd (deleted)", [maps_line("/usr/sbin/sshd (deleted)")])
    proc.add(2, "kthreadd", None, [])  # kernel threads have no exe and no maps
    (proc.root / "self").mkdir()  # not a pid
    found = scan(proc)
    assert [(p["pid"], p["exe"], p["files"]) for p in found] == [(200, "/usr/sbin/sshd", ["/usr/sbin/sshd"])]


def test_a_file_replaced_under_the_same_name_is_told_by_its_inode(proc: FakeProc, tmp_path: Path) -> None:
    lib = tmp_path / "lib" / "libpw.so.1"
    lib.parent.mkdir()
    lib.write_bytes(b"new")
    st = lib.stat()
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    other = "ff:01" if dev != "ff:01" else "fe:01"
    roots = (str(tmp_path / "lib"),)
    proc.add(300, "old", "/usr/bin/old", [maps_line(str(lib), dev=dev, inode=st.st_ino + 1)])
    proc.add(301, "same", "/usr/bin/same", [maps_line(str(lib), dev=dev, inode=st.st_ino)])
    proc.add(302, "otherdev", "/usr/bin/otherdev", [maps_line(str(lib), dev=other, inode=st.st_ino)])
    # overlayfs, btrfs: anonymous device numbers differ for one file, only the inode tells
    proc.add(303, "overlay", "/usr/bin/overlay", [maps_line(str(lib), dev="00:3b", inode=st.st_ino)])
    proc.add(304, "gone", "/usr/bin/gone", [maps_line(str(tmp_path / "lib" / "vanished.so"))])
    found = {p["pid"]: p["files"] for p in scan(proc, roots=roots)}
    assert found == ({300: [str(lib)], 302: [str(lib)]} if os.major(st.st_dev) else {300: [str(lib)]})
    assert scan(proc) == []  # outside the default roots (/usr, /lib, ...) nothing counts


def test_the_file_list_is_capped_and_sorted(proc: FakeProc) -> None:
    proc.add(400, "big", "/usr/bin/big", [maps_line(f"/usr/lib/libx{n:02d}.so (deleted)") for n in range(30, 0, -1)])
    files = scan(proc)[0]["files"]
    assert files == [f"/usr/lib/libx{n:02d}.so" for n in range(1, 21)]
    assert len(scan(proc, max_files=3)[0]["files"]) == 3


@pytest.mark.parametrize(("cgroup", "unit"), [
    ("0::/system.slice/cron.service\n", "cron.service"),
    ("0::/system.slice/system-getty.slice/getty@tty1.service\n", "getty@tty1.service"),
    ("12:pids:/system.slice/x.service\n1:name=systemd:/system.slice/ssh.service\n", "ssh.service"),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", None),
    ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service\n", None),
    ("0::/init.scope\n", None),
    ("0::/machine.slice/libpod-0e16df78.scope/container\n", None),
    ("4:memory:/process_api/5cd7\n0::/\n", None),
    ("", None),
])
def test_systemd_unit_from_the_cgroup(cgroup: str, unit: str | None) -> None:
    assert restarts.systemd_unit(cgroup) == unit


def test_services_from_units_and_pid_files(proc: FakeProc, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "pw").mkdir(parents=True)
    (run / "pw-tls.pid").write_text("500\n")
    (run / "pw" / "worker.pid").write_text("600")
    (run / "sshd.pid").write_text("1\n")
    (run / "junk.pid").write_text("not a pid\n")
    (run / "-o.pid").write_text("700\n")  # would be an option to systemctl: never a name
    stale = [maps_line(LIBSSL + " (deleted)")]
    proc.add(1, "sshd", "/usr/sbin/sshd", stale, ppid=0)
    proc.add(500, "openssl", "/usr/bin/openssl", stale)
    proc.add(510, "openssl", "/usr/bin/openssl", stale, ppid=500)  # a child: the parent's pid file names it
    proc.add(600, "worker", "/usr/bin/worker", stale)
    proc.add(700, "dash", "/usr/bin/dash", stale)
    proc.add(800, "cron", "/usr/sbin/cron", stale, cgroup="0::/system.slice/cron.service\n")
    proc.add(900, "sshd", "/usr/sbin/sshd", stale, ppid=1)  # a session: PID 1's pid file does not name it
    found = {p["pid"]: (p["service"], p["pidfile"], p["pid1"]) for p in scan(proc, run)}
    assert found == {
        1: ("sshd", str(run / "sshd.pid"), True),
        500: ("pw-tls", str(run / "pw-tls.pid"), False),
        510: ("pw-tls", str(run / "pw-tls.pid"), False),
        600: ("worker", str(run / "pw" / "worker.pid"), False),
        700: (None, str(run / "-o.pid"), False),
        800: ("cron.service", None, False),
        900: (None, None, False),
    }


def test_our_own_chain_and_other_roots_are_left_out(proc: FakeProc) -> None:
    stale = [maps_line(LIBSSL + " (deleted)")]
    proc.add(1000, "sshd", "/usr/sbin/sshd", stale)
    proc.add(1001, "python3", "/usr/bin/python3.11", stale, ppid=1000)
    assert restarts.ancestry(str(proc.root), 1001) == [1001, 1000]
    assert restarts.stale_processes(str(proc.root), run_root=str(proc.root), ignore_pids=[1001, 1000]) == []
    assert [p["pid"] for p in scan(proc)] == [1000, 1001]


def test_restart_plan_prefers_needrestart_and_never_restarts_pid1() -> None:
    processes = [
        {"pid": 1, "command": "sshd", "service": "sshd", "pidfile": "/run/sshd.pid", "pid1": True},
        {"pid": 50, "command": "cron", "service": "cron.service", "pidfile": None, "pid1": False},
        {"pid": 51, "command": "openssl", "service": "pw-tls", "pidfile": "/run/pw-tls.pid", "pid1": False},
        {"pid": 52, "command": "vim", "service": None, "pidfile": None, "pid1": False},
    ]
    plan = restarts.restart_plan(processes)
    assert plan["services"] == ["cron.service", "pw-tls"] and plan["pid1"] is processes[0]
    assert [p["pid"] for p in plan["unmanaged"]] == [52] and plan["held_back"] == []
    plan = restarts.restart_plan(processes, ["cron", "systemd-manager", "perl-daemon.service", "ssh", "-x"],
                                 protected=["ssh"])
    assert plan["services"] == ["cron", "perl-daemon.service", "pw-tls"]  # needrestart's spelling wins
    assert plan["held_back"] == ["ssh"]
    assert restarts.needing_restart(plan) == ["cron", "perl-daemon.service", "pw-tls", "ssh", "sshd"]
    assert restarts.stale_names(plan) == ["cron", "perl-daemon.service", "pw-tls", "sshd (PID 1)", "vim"]
    assert restarts.restart_plan([]) == {"services": [], "unmanaged": [], "pid1": None, "held_back": []}


def test_pid1_names_and_init_scripts(tmp_path: Path) -> None:
    run, init = tmp_path / "run", tmp_path / "init.d"
    run.mkdir()
    init.mkdir()
    (run / "sshd.pid").write_text("1\n")
    (run / "pw-tls.pid").write_text("77\n")
    (init / "ssh").write_text(f"#!/bin/sh\nstart-stop-daemon --pidfile {run}/sshd.pid --exec /usr/sbin/sshd\n")
    (init / "pw-tls").write_text("#!/bin/sh\nPIDFILE=/run/pw-tls.pid\n")
    (init / "old").write_text("#!/bin/sh\nPIDFILE=/var/run/olddaemon.pid\n")
    (init / "web").write_text("#!/bin/sh\n### BEGIN INIT INFO\n# Provides:          web httpd\n### END INIT INFO\n")
    proc = FakeProc(tmp_path / "proc")
    proc.add(1, "sshd", "/usr/sbin/sshd", [], ppid=0)
    assert restarts.pid1_services(str(run), str(init), str(proc.root)) == ["ssh", "sshd"]
    (run / "sshd.pid").unlink()  # no pid file: PID 1's command is enough
    (init / "ssh").write_text("#!/bin/sh\n# Provides: sshd\n")
    assert restarts.pid1_services(str(run), str(init), str(proc.root)) == ["ssh", "sshd"]
    assert restarts.pid1_services(str(run), str(init), str(tmp_path / "noproc")) == []
    assert restarts.init_script("pw-tls", None, str(init)) == "pw-tls"
    assert restarts.init_script("sshd", "/run/sshd.pid", str(init)) == "ssh"
    assert restarts.init_script("httpd", None, str(init)) == "web"
    assert restarts.init_script("olddaemon", "/run/olddaemon.pid", str(init)) == "old"
    assert restarts.init_script("nothing", "/run/nothing.pid", str(init)) is None
    assert restarts.init_script("../../bin/sh", None, str(init)) is None


# --- a real process on this controller -------------------------------------------------------

def _real_library() -> Path:
    for name in ("libz.so.1", "libbz2.so.1.0", "libexpat.so.1", "libffi.so.8"):
        for folder in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
            path = Path(folder) / name
            if path.exists():
                return path.resolve()
    raise AssertionError("no shared library to copy on this controller")


@contextlib.contextmanager
def mapping(lib: Path) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen([sys.executable, "-c", (
        "import ctypes, sys, time\nctypes.CDLL(sys.argv[1])\nprint('loaded', flush=True)\ntime.sleep(60)"), str(lib)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "loaded"
        yield child
    finally:
        child.kill()
        child.wait()


def test_a_real_process_mapping_a_deleted_library(tmp_path: Path) -> None:
    lib = tmp_path / "lib" / _real_library().name
    lib.parent.mkdir()
    shutil.copy2(_real_library(), lib)
    roots = (str(lib.parent),)
    with mapping(lib) as child:
        assert child.pid not in [p["pid"] for p in restarts.stale_processes(roots=roots)]
        lib.unlink()
        found = [p for p in restarts.stale_processes(roots=roots) if p["pid"] == child.pid]
        assert [p["files"] for p in found] == [[str(lib)]]
        assert found[0]["exe"] == os.path.realpath(sys.executable) and found[0]["pid1"] is False


def test_a_real_process_mapping_a_library_replaced_by_rename(tmp_path: Path) -> None:
    lib = tmp_path / "lib" / _real_library().name
    lib.parent.mkdir()
    shutil.copy2(_real_library(), lib)
    run = tmp_path / "run"
    run.mkdir()
    with mapping(lib) as child:
        (run / "pw-test.pid").write_text(f"{child.pid}\n")
        new = lib.with_name(lib.name + ".dpkg-new")
        shutil.copy2(_real_library(), new)
        new.replace(lib)  # what dpkg does: the new file renamed over the old one
        found = [p for p in restarts.stale_processes(roots=(str(lib.parent),), run_root=str(run))
                 if p["pid"] == child.pid]
        assert [(p["files"], p["service"]) for p in found] == [([str(lib)], "pw-test")]
    assert child.pid not in [p["pid"] for p in restarts.stale_processes(roots=(str(lib.parent),))]


# --- end states -------------------------------------------------------------------------------

def test_end_state_pending_restart() -> None:
    state, detail, _packages = end_state({"a": "2"}, {"a": "2"}, False, stale=["pw-tls", "sshd (PID 1)"])
    assert state == "patched-pending-restart" and "pw-tls, sshd (PID 1)" in detail
    state, detail, _packages = end_state({"a": "2"}, {"a": "2"}, True, stale=["pw-tls"])
    assert state == "patched-pending-reboot" and "pw-tls" in detail  # the reboot restarts everything
    assert end_state({"a": "2"}, {"a": "2"}, False, stale=[])[0] == "patched"
    assert end_state({"a": "2", "b": "2"}, {"a": "2"}, False, stale=["x"])[0] == "partially-patched"
    assert end_state({}, {}, False, stale=["x"])[0] == "excluded"
    many = [f"svc{n:02d}" for n in range(15)]
    assert "svc09 and 5 more" in end_state({"a": "2"}, {"a": "2"}, False, stale=many)[1]


def test_both_lists_of_end_states_agree() -> None:
    # the collection's confirmation states are the orchestrator's first host states, in order
    assert tuple(states.HostState)[:len(END_STATES)] == END_STATES
    assert "patched-pending-restart" not in states.FAILED_STATES
    assert set(states.PATCHED_STATES) == {"patched", "patched-pending-reboot", "patched-pending-restart"}
    from patchwave.reporting.engine import STATE_FILLS

    ends = set(states.HostState) | states.FINAL_CYCLE_STATUSES | {w for w in states.WaveStatus if w.final}
    assert ends <= set(STATE_FILLS)  # every state has its colour in the workbooks


# --- the restart_services module ---------------------------------------------------------------

def _process(pid: int, service: str | None, command: str = "daemon", pidfile: str | None = None) -> dict[str, Any]:
    return {"pid": pid, "command": command, "exe": "/usr/sbin/" + command, "files": [LIBSSL], "service": service,
            "pidfile": pidfile, "pid1": pid == 1}


class Host:
    """What the module sees: scans in turn, commands with their answers, systemd or not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scans: list[list[dict[str, Any]]],
                 systemd: bool = False, answers: dict[str, int] | None = None,
                 needrestart: list[str] | None = None) -> None:
        self.scans, self.calls, self.answers = list(scans), [], answers or {}
        run, init = tmp_path / "run", tmp_path / "init.d"
        run.mkdir()
        init.mkdir()
        if not systemd:  # a container: sshd is PID 1
            (run / "sshd.pid").write_text("1\n")
        (init / "ssh").write_text(f"#!/bin/sh\n--pidfile {run}/sshd.pid\n")
        proc = FakeProc(tmp_path / "proc")
        proc.add(1, "systemd" if systemd else "sshd", "/usr/sbin/sshd", [], ppid=0)
        monkeypatch.setattr(restart_services, "PROC_ROOT", str(proc.root))
        (init / "pw-tls").write_text("#!/bin/sh\nPIDFILE=/run/pw-tls.pid\n")
        (tmp_path / "systemd").mkdir()
        monkeypatch.setattr(restart_services, "RUN_ROOT", str(run))
        monkeypatch.setattr(restart_services, "INIT_DIR", str(init))
        monkeypatch.setattr(restart_services, "SYSTEMD_RUNNING", str(tmp_path / ("systemd" if systemd else "none")))
        monkeypatch.setattr(restart_services.time, "sleep", lambda _s: None)
        monkeypatch.setattr(restarts, "stale_processes", self.scan)
        tools = {"systemctl": "/usr/bin/systemctl", "service": "/usr/sbin/service"}
        if needrestart is not None:
            tools["needrestart"] = "/usr/sbin/needrestart"
        self.needrestart = list(needrestart or [])
        monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda _m, name, required=False, opt_dirs=None: tools.get(name))
        monkeypatch.setattr(AnsibleModule, "run_command", self.run)

    def scan(self, *_args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
        return self.scans.pop(0) if len(self.scans) > 1 else self.scans[0]

    def run(self, argv: list[str], **kwargs: Any) -> tuple[int, str, str]:
        assert kwargs.get("environ_update") == {"LC_ALL": "C"} and isinstance(argv, list)
        if argv[0].endswith("needrestart"):
            return 0, self.needrestart.pop(0) if len(self.needrestart) > 1 else self.needrestart[0], ""
        self.calls.append(argv)
        rc = self.answers.get(argv[-2] if argv[-1] == "restart" else argv[-1], 0)
        return rc, "", "failed to restart" if rc else ""


def run_module(args: dict[str, Any]) -> dict[str, Any]:
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        restart_services.main()
    return json.loads(out.getvalue())


def test_restarts_a_sysv_service_and_never_pid1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    before = [_process(1, "sshd", "sshd", "/run/sshd.pid"), _process(40, "pw-tls", "openssl", "/run/pw-tls.pid"),
              _process(41, None, "vim")]
    after = [before[0], before[2]]
    host = Host(monkeypatch, tmp_path, [before, after],
                needrestart=["NEEDRESTART-SVC: ssh\nNEEDRESTART-SVC: pw-tls\n", "NEEDRESTART-SVC: ssh\n"])
    result = run_module({})
    assert host.calls == [["/usr/sbin/service", "pw-tls", "restart"]]  # never ssh: it is PID 1
    assert result["changed"] is True and result["restarted"] == ["pw-tls"] and result["failed_services"] == []
    assert result["services"] == ["pw-tls", "ssh", "sshd"]
    assert [s["service"] for s in result["not_restarted"]] == ["sshd", "ssh"]
    assert result["pending_restart"] == ["ssh", "sshd"] and result["reboot_required"] is True
    assert [p["pid"] for p in result["stale"]] == [1, 40, 41] and [p["pid"] for p in result["remaining"]] == [1, 41]


def test_systemd_units_restart_with_systemctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = Host(monkeypatch, tmp_path, [[_process(50, "cron.service"), _process(51, "ssh.service")], []], systemd=True)
    result = run_module({})
    assert host.calls == [["/usr/bin/systemctl", "restart", "cron.service"],
                          ["/usr/bin/systemctl", "restart", "ssh.service"]]
    assert result["restarted"] == ["cron.service", "ssh.service"] and result["pending_restart"] == []
    assert result["reboot_required"] is False and result["remaining"] == []


def test_check_mode_restarts_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = Host(monkeypatch, tmp_path, [[_process(50, "cron.service")]], systemd=True)
    result = run_module({"_ansible_check_mode": True})
    assert host.calls == [] and result["changed"] is True and result["restarted"] == ["cron.service"]
    assert result["reboot_required"] is False


def test_a_failed_restart_and_a_service_still_stale_need_a_reboot(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    stale = [_process(50, "cron.service"), _process(51, "stuck.service")]
    host = Host(monkeypatch, tmp_path, [stale, [stale[1]]], systemd=True, answers={"cron.service": 1})
    result = run_module({})
    assert len(host.calls) == 2 and result["restarted"] == ["stuck.service"]
    assert result["failed_services"] == [{"service": "cron.service", "cmd": ["/usr/bin/systemctl", "restart", "cron.service"],
                                 "rc": 1, "stdout": "", "stderr": "failed to restart"}]
    assert result["pending_restart"] == ["stuck.service"] and result["reboot_required"] is True


def test_excluded_and_unsafe_services_are_left_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stale = [_process(50, "postgresql@15-main.service"), _process(51, "dbus.service"),
             _process(52, "getty@tty1.service")]
    host = Host(monkeypatch, tmp_path, [stale], systemd=True)
    result = run_module({"exclude": ["postgresql@15-main"]})
    assert host.calls == [] and result["changed"] is False
    assert {s["service"]: s["reason"].split()[0] for s in result["not_restarted"]} == {
        "postgresql@15-main.service": "excluded", "dbus.service": "unsafe", "getty@tty1.service": "unsafe"}
    assert result["reboot_required"] is True  # dbus and getty only restart cleanly with the host


def test_only_excluded_services_need_no_reboot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    Host(monkeypatch, tmp_path, [[_process(50, "postgresql@15-main.service")]], systemd=True)
    result = run_module({"exclude": ["postgresql@15-main.service"]})
    assert result["reboot_required"] is False and result["pending_restart"] == ["postgresql@15-main.service"]


@pytest.mark.parametrize(("policy", "reboot"), [("never", False), ("reboot", True)])
def test_policies_that_restart_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: str,
                                       reboot: bool) -> None:
    host = Host(monkeypatch, tmp_path, [[_process(50, "cron.service"), _process(51, None, "vim")]], systemd=True)
    result = run_module({"restart": policy})
    assert host.calls == [] and result["changed"] is False and result["restarted"] == []
    assert result["reboot_required"] is reboot and result["pending_restart"] == ["cron.service"]


def test_nothing_stale_nothing_done(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = Host(monkeypatch, tmp_path, [[]])
    result = run_module({"restart": "reboot"})
    assert host.calls == [] and result["changed"] is False and result["reboot_required"] is False


def test_a_service_without_init_script_fails_to_restart(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = Host(monkeypatch, tmp_path, [[_process(60, "orphan", "orphan", "/run/orphan.pid")]])
    result = run_module({})
    assert host.calls == [] and result["failed_services"][0]["service"] == "orphan" and result["reboot_required"] is True


def test_a_bad_exclude_name_fails_before_anything_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = Host(monkeypatch, tmp_path, [[_process(50, "cron.service")]], systemd=True)
    result = run_module({"exclude": ["--force"]})
    assert result["failed"] is True and "not a service name" in result["msg"] and host.calls == []


# --- the confirm rescan (pending_updates with expect) ----------------------------------------

def test_the_confirm_rescan_reports_pending_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.apt import AptManager
    from ansible_collections.patchwave.endpoint.plugins.modules import pending_updates

    reboot = {"required": False, "packages": [], "signals": [],
              "details": {"needrestart": {"kernel_status": 1, "services": ["cron.service"]}}}
    answers = {"refresh": None, "pending_updates": ([], []), "health": {"clean": True, "output": ""},
               "lock_holders": [], "reboot_required": reboot, "installed_versions": {"pw-libssl": "1.0-2"}}
    for name, value in answers.items():
        monkeypatch.setattr(AptManager, name, lambda _self, *_a, _v=value, **_k: _v)
    monkeypatch.setattr(pending_updates, "free_space_mb", lambda _path: 1000)
    stale = [_process(1, "sshd", "sshd", "/run/sshd.pid"), _process(40, "pw-tls", "openssl", "/run/pw-tls.pid"),
             _process(41, None, "vim")]
    monkeypatch.setattr(restarts, "stale_processes", lambda *_a, **_k: stale)
    monkeypatch.setattr(restarts, "pid1_services", lambda *_a, **_k: ["ssh", "sshd"])
    out = io.StringIO()
    with patch_module_args({"update_cache": False, "expect": ["pw-libssl=1.0-2"]}), contextlib.redirect_stdout(out), \
            pytest.raises(SystemExit):
        pending_updates.main()
    result = json.loads(out.getvalue())
    assert result["confirmation"]["state"] == "patched-pending-restart", result
    assert result["confirmation"]["detail"] == ("all 1 package(s) installed; still running replaced code: "
                                                "cron.service, pw-tls, sshd (PID 1), vim")
    assert result["restart_required"] == {"processes": stale, "services": ["cron.service", "pw-tls", "sshd"]}
