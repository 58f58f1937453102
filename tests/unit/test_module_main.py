"""Every module's main(), in check mode and for real, with every command it runs pinned.

As community.general tests its `pacman` module: AnsibleModule.run_command, get_bin_path,
exit_json and fail_json are faked; the fake run_command answers from a table keyed by the exact
argv and fails the test on any argv it does not know, so each test states exactly what runs (and
check mode, that nothing which downloads, installs, removes or restarts does). The baseline
modules run their commands through a runner of their own (a timeout each, no run_command): that
runner is faked the same way, and run_command must then not be called at all.

Nothing here touches the real /var, /etc, /run or /proc: the package cache, the reboot-required
file, the locks, os-release, the journals and the host's file tree are moved to tmp_path through
the modules' parameters (state_dir) or the path constants of the collection's module_utils.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.patchwave.endpoint.plugins.module_utils import changelog, hoststate, osrelease, restarts
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline import checks
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr import apt
from ansible_collections.patchwave.endpoint.plugins.modules import (
    apply_updates,
    assess_baseline,
    pending_updates,
    remediate_baseline,
    restart_services,
    rollback_updates,
    stage_updates,
)

Answer = tuple[int, str, str] | Callable[[list[str], str | None], tuple[int, str, str]]

APT_GET, APT_MARK, APT_CACHE = "/usr/bin/apt-get", "/usr/bin/apt-mark", "/usr/bin/apt-cache"
DPKG, DPKG_QUERY, DPKG_DEB = "/usr/bin/dpkg", "/usr/bin/dpkg-query", "/usr/bin/dpkg-deb"
APT_TOOLS = {name: "/usr/bin/" + name for name in ("apt-get", "apt-mark", "apt-cache", "dpkg", "dpkg-query",
                                                   "dpkg-deb", "dpkg-repack")}
INSTALLED_FORMAT = "${Package}\t${Version}\t${db:Status-Abbrev}\t${Architecture}\n"
ARCH = (DPKG, "--print-architecture")
AUDIT = (DPKG, "--audit")
APT_CHECK = (APT_GET, "-q", "-o", "Debug::NoLocking=1", "check")
SHOWHOLD = (APT_MARK, "showhold")
SOURCES = (DPKG_QUERY, "-W", "-f", "${Package}\t${source:Package}\n")
CLEAN = {"clean": True, "output": "", "apt_check": {"ok": True, "output": ""}}
NO_REBOOT = {"required": False, "packages": [], "signals": [], "details": {}}
INSTALL_OPTIONS = ("-q", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300",
                   "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
# what must never run in check mode
MUTATING = ("install", "remove", "--download-only", "download", "update", "restart", "--configure", "-w")


def installed_argv(*names: str) -> tuple[str, ...]:
    return (DPKG_QUERY, "-W", "-f", INSTALLED_FORMAT, *names)


def listing(versions: dict[str, str]) -> str:
    return "".join(f"{name}\t{version}\tii \tall\n" for name, version in sorted(versions.items()))


class ExitJson(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result)
        self.result = result


class FailJson(ExitJson):
    pass


class FakeHost:
    """The host a module sees: commands answered from `answers` (exact argv, as a tuple), tools
    on the PATH from `tools`, and its files under tmp_path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, answers: dict[tuple[str, ...], Answer],
                 tools: dict[str, str] | None = None) -> None:
        self.answers = dict(answers)
        self.tools = dict(APT_TOOLS if tools is None else tools)
        self.calls: list[list[str]] = []
        self.root = tmp_path
        self.archives = tmp_path / "archives"
        (self.archives / "partial").mkdir(parents=True)
        self.state_dir = tmp_path / "state"
        self.reboot_file = tmp_path / "run" / "reboot-required"
        self.reboot_file.parent.mkdir()
        etc = tmp_path / "etc"
        etc.mkdir()
        (etc / "os-release").write_text('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nNAME="Debian GNU/Linux"\n')
        monkeypatch.setattr(apt, "ARCHIVES", str(self.archives))
        monkeypatch.setattr(apt, "REBOOT_REQUIRED", str(self.reboot_file))
        monkeypatch.setattr(apt, "LOCK_FILES", (str(tmp_path / "lock-frontend"), str(tmp_path / "lock")))
        monkeypatch.setattr(osrelease, "PATHS", (str(etc / "os-release"),))
        # /boot and /proc stay unread: no newer kernel installed, nobody holds a lock
        monkeypatch.setattr(hoststate, "installed_kernels", lambda boot="/boot": [])
        monkeypatch.setattr(hoststate, "lock_holders", lambda paths, proc="/proc": [])
        # plain functions, not bound methods, so that AnsibleModule binds them: the module comes first
        def run_command(module: AnsibleModule, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
            return self.run_command(module, *args, **kwargs)

        def get_bin_path(module: AnsibleModule, *args: Any, **kwargs: Any) -> str | None:
            return self.get_bin_path(module, *args, **kwargs)

        monkeypatch.setattr(AnsibleModule, "run_command", run_command)
        monkeypatch.setattr(AnsibleModule, "get_bin_path", get_bin_path)
        monkeypatch.setattr(AnsibleModule, "exit_json", _exit_json)
        monkeypatch.setattr(AnsibleModule, "fail_json", _fail_json)

    def get_bin_path(self, module: AnsibleModule, arg: str, required: bool = False,
                     opt_dirs: list[str] | None = None) -> str | None:
        path = self.tools.get(arg)
        if path is None and required:
            module.fail_json(msg=f"Failed to find required {arg} in paths")
        return path

    def run_command(self, _module: AnsibleModule, args: list[str], check_rc: bool = False,
                    environ_update: dict[str, str] | None = None, cwd: str | None = None,
                    **_kwargs: Any) -> tuple[int, str, str]:
        assert isinstance(args, list), args  # an argv, never a shell string
        assert (environ_update or {}).get("LC_ALL") == "C", args
        assert check_rc is False, args
        if tuple(args) not in self.answers:
            pytest.fail(f"the module ran a command this test does not expect: {args!r}")
        self.calls.append(list(args))
        answer = self.answers[tuple(args)]
        return answer(args, cwd) if callable(answer) else answer

    def ran(self, *words: str) -> list[list[str]]:
        return [c for c in self.calls if any(w in c for w in words)]


def _exit_json(_module: AnsibleModule, **kwargs: Any) -> None:
    raise ExitJson(kwargs)


def _fail_json(_module: AnsibleModule, msg: str, **kwargs: Any) -> None:
    raise FailJson(dict(kwargs, failed=True, msg=msg))


def run_main(module: Any, args: dict[str, Any], check: bool = False, diff: bool = False) -> dict[str, Any]:
    """The module's result: what it passed to exit_json, or to fail_json (with failed: true)."""
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)), \
            pytest.raises(ExitJson) as caught:
        module.main()
    return caught.value.result


def sequence(*answers: tuple[int, str, str]) -> Answer:
    """One answer per call, in order; a call more fails the test."""
    left = list(answers)

    def answer(argv: list[str], _cwd: str | None) -> tuple[int, str, str]:
        if not left:
            pytest.fail(f"{argv!r} ran more often than this test expects")
        return left.pop(0)
    return answer


# --- apply_updates ----------------------------------------------------------------------------

def apply_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, install_rc: int = 0) -> tuple[FakeHost, dict[str, str]]:
    state = {"pw-libssl": "1.0-1", "pw-tools": "2.0-1"}

    def install(_argv: list[str], _cwd: str | None) -> tuple[int, str, str]:
        if install_rc == 0:
            state["pw-libssl"] = "1.0-2"
            return 0, "Setting up pw-libssl (1.0-2) ...\n", ""
        return install_rc, "", "E: Sub-process /usr/bin/dpkg returned an error code (1)\n"

    host = FakeHost(monkeypatch, tmp_path, {
        installed_argv("pw-libssl", "pw-tools"): lambda _a, _c: (0, listing(state), ""),
        ARCH: (0, "amd64\n", ""),
        SHOWHOLD: (0, "", ""),
        AUDIT: (0, "", ""),
        APT_CHECK: (0, "", ""),
        (APT_GET, *INSTALL_OPTIONS, "install", "pw-libssl=1.0-2"): install,
    })
    return host, state


APPLY_ARGS = {"packages": ["pw-libssl=1.0-2", "pw-tools=2.0-1"]}
APPLY_DIFF = {"before": "pw-libssl 1.0-1\npw-tools 2.0-1\n", "after": "pw-libssl 1.0-2\npw-tools 2.0-1\n"}


def test_apply_updates_check_mode_reports_the_plan_and_installs_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    host, state = apply_host(monkeypatch, tmp_path)
    result = run_main(apply_updates, APPLY_ARGS, check=True)
    assert host.calls == [list(installed_argv("pw-libssl", "pw-tools")), list(ARCH), list(SHOWHOLD)]
    assert result == {"changed": True, "diff": APPLY_DIFF, "reboot_required": NO_REBOOT, "packages": [
        {"name": "pw-libssl", "wanted": "1.0-2", "before": "1.0-1", "after": "1.0-2"},
        {"name": "pw-tools", "wanted": "2.0-1", "before": "2.0-1", "after": "2.0-1"}]}
    assert state["pw-libssl"] == "1.0-1" and host.ran(*MUTATING) == []


def test_apply_updates_installs_exact_versions_and_rereads_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host, _state = apply_host(monkeypatch, tmp_path)
    result = run_main(apply_updates, APPLY_ARGS)
    assert host.calls == [
        list(installed_argv("pw-libssl", "pw-tools")), list(ARCH), list(SHOWHOLD),
        list(AUDIT), list(APT_CHECK),  # repair_interrupted: nothing half-configured, so no dpkg --configure -a
        [APT_GET, *INSTALL_OPTIONS, "install", "pw-libssl=1.0-2"],  # only what changes; no wall: not installed
        list(installed_argv("pw-libssl", "pw-tools")),
    ]
    assert result == {
        "changed": True, "diff": APPLY_DIFF, "lock_waited": 0.0, "notified": False, "rc": 0,
        "stdout": "Setting up pw-libssl (1.0-2) ...\n", "stderr": "", "reboot_required": NO_REBOOT,
        "packages": [{"name": "pw-libssl", "wanted": "1.0-2", "before": "1.0-1", "after": "1.0-2"},
                     {"name": "pw-tools", "wanted": "2.0-1", "before": "2.0-1", "after": "2.0-1"}]}
    # a second run finds nothing to do and runs no install
    host.calls.clear()
    again = run_main(apply_updates, APPLY_ARGS)
    assert again["changed"] is False and host.calls == [list(installed_argv("pw-libssl", "pw-tools")), list(ARCH),
                                                        list(SHOWHOLD)]


def test_apply_updates_failed_install_fails_with_the_evidence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host, _state = apply_host(monkeypatch, tmp_path, install_rc=100)
    result = run_main(apply_updates, APPLY_ARGS)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == "install failed (rc=100); not at the requested version: pw-libssl"
    assert result["rc"] == 100 and "returned an error code" in result["stderr"] and result["dpkg"] == CLEAN
    assert host.calls[-2:] == [list(AUDIT), list(APT_CHECK)]  # the database's health, as evidence


def test_apply_updates_refuses_held_packages_and_hosts_without_apt(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    host, _state = apply_host(monkeypatch, tmp_path)
    host.answers[SHOWHOLD] = (0, "pw-libssl\n", "")
    result = run_main(apply_updates, APPLY_ARGS)
    assert result["failed"] is True and result["msg"].startswith("held packages would change: pw-libssl")
    assert host.ran("install") == []
    host.calls.clear()
    host.tools = {}
    result = run_main(apply_updates, APPLY_ARGS)
    assert result == {"failed": True, "msg": "no supported package manager on this host: Patchwave knows apt "
                                             "(apt-get and dpkg on the PATH)"}
    assert host.calls == []


# --- pending_updates --------------------------------------------------------------------------

SIMULATION = "Inst pw-libssl [1.0-1] (1.0-2 Debian-Security:12/stable-security [all])\n"


def pending_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHost:
    return FakeHost(monkeypatch, tmp_path, {
        (APT_GET, "-q", "--error-on=any", "update"): (0, "", ""),
        (APT_GET, "-s", "-q", "-o", "Debug::NoLocking=1", "dist-upgrade"): (0, SIMULATION, ""),
        SOURCES: (0, "pw-libssl\tpw-libssl\npw-libssl-doc\tpw-libssl\n", ""),
        SHOWHOLD: (0, "", ""),
        AUDIT: (0, "", ""),
        APT_CHECK: (0, "", ""),
        installed_argv("pw-libssl"): (0, listing({"pw-libssl": "1.0-1"}), ""),
        ARCH: (0, "amd64\n", ""),
    })


@pytest.mark.parametrize("check", [False, True])
def test_pending_updates_scans_the_same_in_check_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      check: bool) -> None:
    host = pending_host(monkeypatch, tmp_path)
    result = run_main(pending_updates, {"query": ["pw-libssl"], "state_dir": str(host.state_dir)}, check=check)
    assert host.calls == [
        [APT_GET, "-q", "--error-on=any", "update"],  # the lists only: it runs in check mode too
        [APT_GET, "-s", "-q", "-o", "Debug::NoLocking=1", "dist-upgrade"], list(SOURCES), list(SHOWHOLD),
        list(AUDIT), list(APT_CHECK), list(installed_argv("pw-libssl")), list(ARCH)]
    assert isinstance(result.pop("free_space_mb"), int)
    assert result == {
        "changed": False, "removals": [], "installed": {"pw-libssl": "1.0-1"}, "package_manager": "apt",
        "dpkg": dict(CLEAN, lock_holders=[]), "reboot_required": NO_REBOOT,
        "os": {"id": "debian", "version_id": "12", "version_codename": "bookworm", "name": "Debian GNU/Linux",
               "ecosystem": "Debian:12"},
        "updates": [{"name": "pw-libssl", "installed": "1.0-1", "candidate": "1.0-2", "arch": "all",
                     "origins": [{"label": "Debian-Security", "suite": "stable-security"}], "security": True,
                     "new_install": False, "held": False, "source": "pw-libssl", "new_packages": [], "removes": [],
                     "required_by": [], "needs_new_packages": False}]}
    assert host.ran("install", "remove", "--download-only") == []


def test_pending_updates_confirms_a_rolled_back_cycle_from_its_journal(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    host = pending_host(monkeypatch, tmp_path)
    host.reboot_file.write_text("*** System restart required ***\n")
    cycle = host.state_dir / "cycles" / "c1"
    cycle.mkdir(parents=True)
    (cycle / "journal.json").write_text(json.dumps({
        "packages": {"pw-libssl": {"before": "1.0-1", "file": "/x.deb", "method": "cache"}}, "new": ["pw-dep"],
        "rolled_back": "2026-11-29T11:00:00Z"}))
    monkeypatch.setattr(restarts, "stale_processes", lambda *_a, **_k: [])
    monkeypatch.setattr(restarts, "pid1_services", lambda *_a, **_k: [])
    result = run_main(pending_updates, {"update_cache": False, "expect": ["pw-libssl=1.0-2"], "cycle_id": "c1",
                                        "state_dir": str(host.state_dir)}, check=True)
    assert host.calls[0] == [APT_GET, "-s", "-q", "-o", "Debug::NoLocking=1", "dist-upgrade"]  # no refresh
    assert result["confirmation"] == {"state": "rolled-back", "detail": "every package is back at its version before "
                                      "the cycle", "packages": [{"name": "pw-libssl", "wanted": "1.0-2",
                                                                 "installed": "1.0-1"}]}
    assert result["reboot_required"]["signals"] == ["reboot-required-file"]
    assert result["restart_required"] == {"processes": [], "services": []}


def test_pending_updates_confirm_names_a_broken_package_database(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    host = pending_host(monkeypatch, tmp_path)
    host.answers[installed_argv("pw-libssl")] = (0, listing({"pw-libssl": "1.0-2"}), "")
    host.answers[APT_CHECK] = (100, "", "E: Unmet dependencies. Try 'apt --fix-broken install'\n")
    monkeypatch.setattr(restarts, "stale_processes", lambda *_a, **_k: [])
    monkeypatch.setattr(restarts, "pid1_services", lambda *_a, **_k: [])
    result = run_main(pending_updates, {"update_cache": False, "expect": ["pw-libssl=1.0-2"]})
    assert result["confirmation"]["state"] == "failed"
    assert result["confirmation"]["detail"] == ("all 1 package(s) at the approved version, but the host's packages are "
                                                "broken (apt-get check): E: Unmet dependencies. Try 'apt --fix-broken "
                                                "install'")


# --- stage_updates ----------------------------------------------------------------------------

DEBS = {"pw-libssl_1.0-2_all.deb": b"new libssl", "pw-tools-common_2.0-1_all.deb": b"new common",
        "pw-libssl_1.0-1_all.deb": b"old libssl"}
SHOW = "Package: pw-libssl\nVersion: 1.0-2\nSize: 10\n\nPackage: pw-tools-common\nVersion: 2.0-1\nSize: 10\n"
CHANGELOG = ("pw-libssl (1.0-2) bookworm-security; urgency=high\n\n  * Fix CVE-2026-10001.\n\n"
             " -- Patchwave <lab@example.org>  Sun, 29 Nov 2026 10:00:00 +0000\n")


def sha256(name: str) -> str:
    return hashlib.sha256(DEBS[name]).hexdigest()


def stage_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHost:
    host = FakeHost(monkeypatch, tmp_path, {})

    def download(_argv: list[str], _cwd: str | None) -> tuple[int, str, str]:
        for name in ("pw-libssl_1.0-2_all.deb", "pw-tools-common_2.0-1_all.deb"):
            (host.archives / name).write_bytes(DEBS[name])
        return 0, "", ""

    def fetch_old(_argv: list[str], cwd: str | None) -> tuple[int, str, str]:
        assert cwd is not None and Path(cwd) == host.state_dir / "cycles" / "c1" / "rollback"
        (Path(cwd) / "pw-libssl_1.0-1_all.deb").write_bytes(DEBS["pw-libssl_1.0-1_all.deb"])
        return 0, "", ""

    uris = "".join(f"'http://mirror.example/pool/{name}' {name} 10 SHA256:{sha256(name)}\n"
                   for name in ("pw-libssl_1.0-2_all.deb", "pw-tools-common_2.0-1_all.deb"))
    rollback = host.state_dir / "cycles" / "c1" / "rollback" / "pw-libssl_1.0-1_all.deb"
    host.answers.update({
        installed_argv("pw-libssl", "pw-tools-common"): (1, listing({"pw-libssl": "1.0-1"}),
                                                         "dpkg-query: no packages found matching pw-tools-common\n"),
        ARCH: (0, "amd64\n", ""),
        (APT_CACHE, "show", "pw-libssl=1.0-2", "pw-tools-common=2.0-1"): (0, SHOW, ""),
        (APT_CACHE, "show", "pw-libssl=1.0-1"): (0, "Package: pw-libssl\nVersion: 1.0-1\nSize: 10\n", ""),
        (APT_GET, *INSTALL_OPTIONS, "--allow-change-held-packages", "--download-only", "install", "pw-libssl=1.0-2",
         "pw-tools-common=2.0-1"): download,
        (APT_GET, "-q", "--print-uris", "download", "pw-libssl=1.0-2", "pw-tools-common=2.0-1"): (0, uris, ""),
        (DPKG_DEB, "-f", str(host.archives / "pw-libssl_1.0-2_all.deb"), "Package", "Version"):
            (0, "Package: pw-libssl\nVersion: 1.0-2\n", ""),
        (DPKG_DEB, "-f", str(host.archives / "pw-tools-common_2.0-1_all.deb"), "Package", "Version"):
            (0, "Package: pw-tools-common\nVersion: 2.0-1\n", ""),
        SOURCES: (0, "pw-libssl\tpw-libssl\n", ""),
        (APT_GET, "-q", "download", "pw-libssl=1.0-1"): fetch_old,
        (DPKG_DEB, "-f", str(rollback), "Package", "Version"): (0, "Package: pw-libssl\nVersion: 1.0-1\n", ""),
    })
    # the changelog is streamed out of the .deb by dpkg-deb --fsys-tarfile (Popen, not run_command)
    host.changelogs = []  # type: ignore[attr-defined]

    def read_deb(dpkg_deb: str, path: str, package: str, limit: int = 0) -> str | None:
        host.changelogs.append([dpkg_deb, path, package])  # type: ignore[attr-defined]
        return CHANGELOG if package == "pw-libssl" else None

    monkeypatch.setattr(changelog, "read_deb", read_deb)
    return host


STAGE_ARGS = {"packages": ["pw-libssl=1.0-2", "pw-tools-common=2.0-1"], "cycle_id": "c1", "min_free_mb": 0}
STAGE_PLAN = [list(installed_argv("pw-libssl", "pw-tools-common")), list(ARCH),
              [APT_CACHE, "show", "pw-libssl=1.0-2", "pw-tools-common=2.0-1"], [APT_CACHE, "show", "pw-libssl=1.0-1"]]


def test_stage_updates_check_mode_plans_and_downloads_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = stage_host(monkeypatch, tmp_path)
    result = run_main(stage_updates, dict(STAGE_ARGS, state_dir=str(host.state_dir)), check=True)
    assert host.calls == STAGE_PLAN and host.ran(*MUTATING) == []
    cycle = host.state_dir / "cycles" / "c1"
    assert result == {
        "changed": True, "journal": str(cycle / "journal.json"), "cycle_dir": str(cycle),
        "download": {"bytes": 0, "seconds": 0.0, "limit_kbps": 0, "relay": None},
        "staged": [{"name": "pw-libssl", "version": "1.0-2", "file": None, "downloaded": True},
                   {"name": "pw-tools-common", "version": "2.0-1", "file": None, "downloaded": True}],
        "rollback": [{"name": "pw-libssl", "version": "1.0-1", "file": None, "method": "planned"}]}
    assert not host.state_dir.exists()  # no journal, no rollback directory


def test_stage_updates_downloads_verifies_saves_rollback_material_and_the_journal(monkeypatch: pytest.MonkeyPatch,
                                                                                  tmp_path: Path) -> None:
    host = stage_host(monkeypatch, tmp_path)
    result = run_main(stage_updates, dict(STAGE_ARGS, state_dir=str(host.state_dir)))
    cycle = host.state_dir / "cycles" / "c1"
    old = str(cycle / "rollback" / "pw-libssl_1.0-1_all.deb")
    new_libssl, new_common = (str(host.archives / n) for n in ("pw-libssl_1.0-2_all.deb", "pw-tools-common_2.0-1_all.deb"))
    assert host.calls == [*STAGE_PLAN,
        [APT_GET, *INSTALL_OPTIONS, "--allow-change-held-packages", "--download-only", "install", "pw-libssl=1.0-2",
         "pw-tools-common=2.0-1"],
        [APT_GET, "-q", "--print-uris", "download", "pw-libssl=1.0-2", "pw-tools-common=2.0-1"],
        [DPKG_DEB, "-f", new_libssl, "Package", "Version"], [DPKG_DEB, "-f", new_common, "Package", "Version"],
        list(SOURCES),
        [APT_GET, "-q", "download", "pw-libssl=1.0-1"],  # the installed version, from the repository
        [DPKG_DEB, "-f", old, "Package", "Version"], [DPKG_DEB, "-f", old, "Package", "Version"]]
    assert host.changelogs == [[DPKG_DEB, new_libssl, "pw-libssl"],  # type: ignore[attr-defined]
                               [DPKG_DEB, new_common, "pw-tools-common"]]
    download = result.pop("download")
    assert download["bytes"] == 20 and download["seconds"] >= 0
    fix = {"urgency": "high", "cves": ["CVE-2026-10001"], "versions": ["1.0-2"]}
    assert result == {
        "changed": True, "journal": str(cycle / "journal.json"), "cycle_dir": str(cycle),
        "staged": [{"name": "pw-libssl", "version": "1.0-2", "file": new_libssl, "downloaded": True,
                    "source": "http://mirror.example/pool/pw-libssl_1.0-2_all.deb", "changelog": fix},
                   {"name": "pw-tools-common", "version": "2.0-1", "file": new_common, "downloaded": True,
                    "source": "http://mirror.example/pool/pw-tools-common_2.0-1_all.deb", "changelog": None}],
        "rollback": [{"name": "pw-libssl", "version": "1.0-1", "file": old, "method": "repository"}]}
    journal = json.loads((cycle / "journal.json").read_text())
    assert journal.pop("updated").endswith("Z")
    assert journal == {"cycle_id": "c1", "new": ["pw-tools-common"],
                       "packages": {"pw-libssl": {"before": "1.0-1", "file": old, "method": "repository"}},
                       "requested": {"pw-libssl": "1.0-2", "pw-tools-common": "2.0-1"}}
    # staged again: everything is cached and saved; nothing downloads, the journal stays
    host.calls.clear()
    again = run_main(stage_updates, dict(STAGE_ARGS, state_dir=str(host.state_dir)))
    assert again["changed"] is False and host.ran("--download-only", "download") == [
        [APT_GET, "-q", "--print-uris", "download", "pw-libssl=1.0-2", "pw-tools-common=2.0-1"]]


def test_stage_updates_removes_a_file_that_does_not_match_the_signed_index(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    host = stage_host(monkeypatch, tmp_path)
    key = (APT_GET, "-q", "--print-uris", "download", "pw-libssl=1.0-2", "pw-tools-common=2.0-1")
    host.answers[key] = (0, "".join(f"'http://mirror.example/pool/{name}' {name} 10 SHA256:{'0' * 64}\n"
                                    for name in ("pw-libssl_1.0-2_all.deb", "pw-tools-common_2.0-1_all.deb")), "")
    result = run_main(stage_updates, dict(STAGE_ARGS, state_dir=str(host.state_dir)))
    assert result["failed"] is True and result["msg"].startswith("pw-libssl=1.0-2: ")
    assert result["msg"].endswith("does not match the index's SHA256 (0000000000000000...); the file was removed from "
                                  "the cache")
    assert not (host.archives / "pw-libssl_1.0-2_all.deb").exists() and host.calls[-1] == list(key)
    assert not (host.state_dir / "cycles" / "c1" / "journal.json").exists()


# --- rollback_updates -------------------------------------------------------------------------

def rollback_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                  simulation: str = "Inst pw-libssl [1.0-2] (1.0-1 local-deb [all])\nRemv pw-tools-common [2.0-1]\n",
                  ) -> tuple[FakeHost, Path, dict[str, str]]:
    host = FakeHost(monkeypatch, tmp_path, {})
    cycle = host.state_dir / "cycles" / "c1"
    (cycle / "rollback").mkdir(parents=True)
    deb = cycle / "rollback" / "pw-libssl_1.0-1_all.deb"
    deb.write_bytes(b"old libssl")
    (cycle / "journal.json").write_text(json.dumps({
        "cycle_id": "c1", "new": ["pw-tools-common"], "requested": {"pw-libssl": "1.0-2"},
        "packages": {"pw-libssl": {"before": "1.0-1", "file": str(deb), "method": "cache"}}}))
    state = {"pw-libssl": "1.0-2", "pw-tools-common": "2.0-1"}
    restore = (APT_GET, *INSTALL_OPTIONS, "--allow-change-held-packages", "--allow-downgrades", "--fix-broken")

    def roll_back(_argv: list[str], _cwd: str | None) -> tuple[int, str, str]:
        state["pw-libssl"] = "1.0-1"
        del state["pw-tools-common"]
        return 0, "Removing pw-tools-common (2.0-1) ...\n", ""

    host.answers.update({
        installed_argv("pw-libssl", "pw-tools-common"): lambda _a, _c: (0, listing(state), ""),
        ARCH: (0, "amd64\n", ""),
        AUDIT: (0, "", ""),
        APT_CHECK: (0, "", ""),
        (*restore, "-s", "-o", "Debug::NoLocking=1", "install", str(deb), "pw-tools-common-"): (0, simulation, ""),
        (*restore, "install", str(deb), "pw-tools-common-"): roll_back,
    })
    return host, deb, state


ROLLBACK_DIFF = {"before": "pw-libssl 1.0-2\npw-tools-common 2.0-1\n", "after": "pw-libssl 1.0-1\n"}
ROLLBACK_PLAN = {"install": ["pw-libssl=1.0-1"], "remove": ["pw-tools-common"]}


def test_rollback_updates_check_mode_simulates_and_changes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    host, deb, state = rollback_host(monkeypatch, tmp_path)
    journal = host.state_dir / "cycles" / "c1" / "journal.json"
    before = journal.read_text()
    result = run_main(rollback_updates, {"cycle_id": "c1", "state_dir": str(host.state_dir)}, check=True)
    restore = [APT_GET, *INSTALL_OPTIONS, "--allow-change-held-packages", "--allow-downgrades", "--fix-broken"]
    assert host.calls == [list(installed_argv("pw-libssl", "pw-tools-common")), list(ARCH),
                          [*restore, "-s", "-o", "Debug::NoLocking=1", "install", str(deb), "pw-tools-common-"],
                          list(AUDIT), list(APT_CHECK)]
    assert result == {"changed": True, "diff": ROLLBACK_DIFF, "plan": ROLLBACK_PLAN, "dpkg": CLEAN,
                      "restored": [{"name": "pw-libssl", "from": "1.0-2", "to": "1.0-1", "file": str(deb)}],
                      "removed": ["pw-tools-common"]}
    assert state == {"pw-libssl": "1.0-2", "pw-tools-common": "2.0-1"} and journal.read_text() == before


def test_rollback_updates_restores_in_one_call_and_marks_the_journal(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    host, deb, state = rollback_host(monkeypatch, tmp_path)
    result = run_main(rollback_updates, {"cycle_id": "c1", "state_dir": str(host.state_dir)})
    restore = [APT_GET, *INSTALL_OPTIONS, "--allow-change-held-packages", "--allow-downgrades", "--fix-broken"]
    assert host.calls == [
        list(installed_argv("pw-libssl", "pw-tools-common")), list(ARCH),
        list(AUDIT), list(APT_CHECK),  # repair_interrupted: clean, so no dpkg --configure -a
        [*restore, "-s", "-o", "Debug::NoLocking=1", "install", str(deb), "pw-tools-common-"],
        [*restore, "install", str(deb), "pw-tools-common-"],
        list(installed_argv("pw-libssl", "pw-tools-common")), list(AUDIT), list(APT_CHECK)]
    assert result == {"changed": True, "diff": ROLLBACK_DIFF, "plan": ROLLBACK_PLAN, "dpkg": CLEAN, "repaired": None,
                      "stdout": "Removing pw-tools-common (2.0-1) ...\n",
                      "restored": [{"name": "pw-libssl", "from": "1.0-2", "to": "1.0-1", "file": str(deb)}],
                      "removed": ["pw-tools-common"]}
    assert state == {"pw-libssl": "1.0-1"}
    journal = json.loads((host.state_dir / "cycles" / "c1" / "journal.json").read_text())
    assert journal["rolled_back"].endswith("Z") and journal["new"] == ["pw-tools-common"]
    # rolled back again: nothing to restore, nothing runs but the reads
    host.calls.clear()
    again = run_main(rollback_updates, {"cycle_id": "c1", "state_dir": str(host.state_dir)})
    assert again["changed"] is False and host.calls == [list(installed_argv("pw-libssl", "pw-tools-common")),
                                                        list(ARCH), list(AUDIT), list(APT_CHECK)]


def test_rollback_updates_refuses_an_inexact_plan_before_changing_anything(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    simulation = "Inst pw-libssl [1.0-2] (1.0-1 local-deb [all])\nRemv pw-tools-common [2.0-1]\nRemv pw-agent [1.1-1]\n"
    host, _deb, state = rollback_host(monkeypatch, tmp_path, simulation)
    result = run_main(rollback_updates, {"cycle_id": "c1", "state_dir": str(host.state_dir)})
    assert result["failed"] is True
    assert result["msg"] == "an exact rollback is impossible, so nothing was changed: apt would also remove pw-agent"
    assert [c for c in host.calls if "install" in c and "-s" not in c] == []
    assert state == {"pw-libssl": "1.0-2", "pw-tools-common": "2.0-1"}
    host.calls.clear()
    missing = run_main(rollback_updates, {"cycle_id": "c2", "state_dir": str(host.state_dir)})
    assert missing["msg"].startswith("no journal for cycle c2 at ") and host.calls == []


# --- restart_services -------------------------------------------------------------------------

def restart_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHost:
    needrestart = ("/usr/sbin/needrestart", "-b", "-r", "l")
    host = FakeHost(monkeypatch, tmp_path, {
        needrestart: sequence((0, "NEEDRESTART-SVC: cron.service\n", ""), (0, "", "")),
        ("/usr/bin/systemctl", "restart", "cron.service"): (0, "", ""),
    }, tools={"systemctl": "/usr/bin/systemctl", "needrestart": "/usr/sbin/needrestart"})
    for name in ("systemd", "proc/1", "run-pids", "init.d"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "proc/1/comm").write_text("systemd\n")
    monkeypatch.setattr(restart_services, "SYSTEMD_RUNNING", str(tmp_path / "systemd"))
    monkeypatch.setattr(restart_services, "PROC_ROOT", str(tmp_path / "proc"))
    monkeypatch.setattr(restart_services, "RUN_ROOT", str(tmp_path / "run-pids"))
    monkeypatch.setattr(restart_services, "INIT_DIR", str(tmp_path / "init.d"))
    monkeypatch.setattr(restart_services.time, "sleep", lambda _s: None)
    stale = [{"pid": 50, "command": "cron", "exe": "/usr/sbin/cron", "files": ["/usr/lib/libssl.so.3"],
              "service": "cron.service", "pidfile": None, "pid1": False}]
    scans = [stale, []]
    monkeypatch.setattr(restarts, "stale_processes", lambda *_a, **_k: scans.pop(0) if len(scans) > 1 else scans[0])
    host.stale = stale  # type: ignore[attr-defined]
    return host


def test_restart_services_check_mode_restarts_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = restart_host(monkeypatch, tmp_path)
    result = run_main(restart_services, {}, check=True)
    assert host.calls == [["/usr/sbin/needrestart", "-b", "-r", "l"]] and host.ran(*MUTATING) == []
    assert result == {"changed": True, "stale": host.stale, "services": ["cron.service"],  # type: ignore[attr-defined]
                      "restarted": ["cron.service"], "failed_services": [], "not_restarted": [],
                      "remaining": host.stale, "pending_restart": [], "reboot_required": False}  # type: ignore[attr-defined]


def test_restart_services_restarts_through_systemd_and_rescans(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = restart_host(monkeypatch, tmp_path)
    result = run_main(restart_services, {})
    assert host.calls == [["/usr/sbin/needrestart", "-b", "-r", "l"], ["/usr/bin/systemctl", "restart", "cron.service"],
                          ["/usr/sbin/needrestart", "-b", "-r", "l"]]
    assert result == {"changed": True, "stale": host.stale, "services": ["cron.service"],  # type: ignore[attr-defined]
                      "restarted": ["cron.service"], "failed_services": [], "not_restarted": [], "remaining": [],
                      "pending_restart": [], "reboot_required": False}


# --- the baseline modules: commands through their own runner --------------------------------

class FakeRunner:
    """run(argv, timeout) as the baseline's checks, planner and applier call it: answers from
    a table keyed by argv; any other argv fails the test."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[str], int]] = []
        self.env: dict[str, str] | None = None

    def __call__(self, argv: list[str], timeout: int) -> tuple[int, str, str]:
        assert isinstance(argv, list) and timeout > 0, argv
        if tuple(argv) not in self.answers:
            pytest.fail(f"the module ran a command this test does not expect: {argv!r}")
        self.calls.append((list(argv), timeout))
        return self.answers[tuple(argv)]

    def argvs(self) -> list[list[str]]:
        return [argv for argv, _timeout in self.calls]


STATUS = ("Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2+deb12u3\n\n"
          "Package: telnet\nStatus: install ok installed\nVersion: 0.17+2.4-2\n\n"
          "Package: nis\nStatus: deinstall ok config-files\nVersion: 4.17\n")


def host_tree(root: Path) -> Path:
    files = {"etc/os-release": "ID=debian\nVERSION_ID=\"12\"\n", "var/lib/dpkg/status": STATUS,
             "etc/passwd": "root:x:0:0:root:/root:/bin/bash\npatchwave:x:1000:1000::/home/patchwave:/bin/bash\n",
             "etc/motd": "hello\n", "etc/app.conf": "mode relaxed\n", "etc/at.deny": "daemon\n",
             "etc/ssh/sshd_config": "X11Forwarding yes\n"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


ASSESS_RULES = [
    {"id": "telnet-absent", "type": "package", "args": {"name": "telnet", "state": "absent"}},
    {"id": "dpkg-audit-clean", "type": "command", "args": {"argv": ["dpkg", "--audit"]}, "timeout": 5},
    {"id": "motd", "type": "file", "args": {"path": "/etc/motd"}},
]


@pytest.mark.parametrize("check", [False, True])
def test_assess_baseline_reads_the_tree_and_runs_only_its_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                   check: bool) -> None:
    host = FakeHost(monkeypatch, tmp_path / "fake", {})  # run_command answers nothing: none may run through it
    root = host_tree(tmp_path / "host")
    runner = FakeRunner({("dpkg", "--audit"): (0, "", "")})
    monkeypatch.setattr(checks, "_run", runner)
    monkeypatch.setattr(assess_baseline, "HOST_ROOT", str(root))
    result = run_main(assess_baseline, {"rules": ASSESS_RULES, "today": "2026-11-29"}, check=check)
    assert runner.calls == [(["dpkg", "--audit"], 4)] and host.calls == []
    for item in result["results"]:
        assert item.pop("duration") >= 0
    assert result["summary"].pop("duration") >= 0
    assert result == {
        "changed": False,
        "results": [
            {"id": "telnet-absent", "status": "fail", "evidence": {
                "expected": "telnet not installed", "observed": "telnet 0.17+2.4-2", "where": "/var/lib/dpkg/status"}},
            {"id": "dpkg-audit-clean", "status": "pass", "evidence": {
                "expected": "rc in [0]", "observed": "rc 0: ", "where": "dpkg --audit"}},
            {"id": "motd", "status": "pass", "evidence": {
                "expected": "/etc/motd exists", "observed": "exists", "where": "/etc/motd"}}],
        "summary": {"pass": 2, "fail": 1, "error": 0, "not_applicable": 0, "excepted": 0, "total": 3,
                    "facts": {"distribution": "debian", "version": "12"}},
        "snapshot": {"listening": [], "ports": [], "services": [], "uid0": ["root"],
                     "packages": {"openssh-server": "1:9.2p1-2+deb12u3", "telnet": "0.17+2.4-2"}}}


REMEDIATE_RULES = [
    {"id": "app-mode", "remediation": {"type": "config_value", "path": "/etc/app.conf", "key": "mode", "value": "strict"}},
    {"id": "no-telnet", "remediation": {"type": "package_absent", "name": "telnet"}},
    {"id": "no-at-deny", "remediation": {"type": "file_absent", "path": "/etc/at.deny"}},
    {"id": "no-forwarding", "remediation": {"type": "sysctl", "key": "net.ipv4.ip_forward", "value": "0"}},
]
NEEDED = ("dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Essential}\t${Provides}\t${Pre-Depends}\t"
          "${Depends}\n")
REMEDIATE_PLAN = [
    ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "telnet"],
    ["apt-get", "-s", "-o", "Debug::NoLocking=1", "remove", "telnet"],
    ["dpkg", "-S", "/etc/at.deny"],
    list(NEEDED),
]


def remediate_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[FakeHost, FakeRunner, Path]:
    host = FakeHost(monkeypatch, tmp_path / "fake", {})  # run_command answers nothing: none may run through it
    root = host_tree(tmp_path / "host")
    runner = FakeRunner({
        ("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "telnet"): (0, "ii ", ""),
        ("apt-get", "-s", "-o", "Debug::NoLocking=1", "remove", "telnet"): (0, "Remv telnet [0.17+2.4-2]\n", ""),
        ("dpkg", "-S", "/etc/at.deny"): (0, "at: /etc/at.deny\n", ""),
        NEEDED: (0, "ii \topenssh-server\tno\t\t\tlibc6\nii \tat\tno\t\t\tlibc6\nii \tlibc6\tno\t\t\t\n", ""),
        ("apt-get", "-y", "-q", "remove", "telnet"): (0, "Removing telnet (0.17+2.4-2) ...\n", ""),
        ("sysctl", "-w", "net.ipv4.ip_forward=0"): (0, "net.ipv4.ip_forward = 0\n", ""),
    })

    def command_runner(extra_env: dict[str, str]) -> FakeRunner:
        runner.env = extra_env
        return runner

    monkeypatch.setattr(remediate_baseline, "command_runner", command_runner)
    monkeypatch.setattr(remediate_baseline, "HOST_ROOT", str(root))
    return host, runner, root


def remediate_results(root: Path) -> list[dict[str, Any]]:
    return [
        {"id": "app-mode", "status": "changed", "actions": [f"write {root}/etc/app.conf"], "message": ""},
        {"id": "no-telnet", "status": "changed", "actions": ["run apt-get -y -q remove telnet"], "message": ""},
        {"id": "no-at-deny", "status": "changed", "actions": [f"remove {root}/etc/at.deny"], "message": ""},
        {"id": "no-forwarding", "status": "changed",
         "actions": [f"create {root}/etc/sysctl.d/60-patchwave.conf (mode 0644)"], "message": ""}]


def test_remediate_baseline_check_mode_plans_with_a_diff_and_changes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                             tmp_path: Path) -> None:
    host, runner, root = remediate_host(monkeypatch, tmp_path)
    state = tmp_path / "state"
    result = run_main(remediate_baseline, {"rules": REMEDIATE_RULES, "batch": "b1", "state_dir": str(state),
                                           "connection_user": "patchwave"}, check=True, diff=True)
    assert runner.argvs() == REMEDIATE_PLAN and host.calls == []  # nothing removed, no sysctl -w
    assert runner.env == {"DEBIAN_FRONTEND": "noninteractive"}
    assert result == {
        "changed": True, "sshd_reloaded": False, "backup_dir": str(state / "remediation" / "b1"),
        "results": remediate_results(root),
        "diff": [{"before_header": f"{root}/etc/app.conf", "after_header": f"{root}/etc/app.conf",
                  "before": "mode relaxed\n", "after": "mode strict\n"},
                 {"before_header": f"{root}/etc/at.deny", "after_header": f"{root}/etc/at.deny",
                  "before": "daemon\n", "after": ""},
                 {"before_header": f"{root}/etc/sysctl.d/60-patchwave.conf",
                  "after_header": f"{root}/etc/sysctl.d/60-patchwave.conf", "before": "",
                  "after": "# written by Patchwave\nnet.ipv4.ip_forward = 0\n"}]}
    assert (root / "etc/app.conf").read_text() == "mode relaxed\n" and (root / "etc/at.deny").exists()
    assert not (root / "etc/sysctl.d").exists() and not state.exists()


def test_remediate_baseline_applies_the_plan_with_backups(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host, runner, root = remediate_host(monkeypatch, tmp_path)
    state = tmp_path / "state"
    result = run_main(remediate_baseline, {"rules": REMEDIATE_RULES, "batch": "b1", "state_dir": str(state),
                                           "connection_user": "patchwave"})
    assert runner.calls == [(argv, timeout) for argv, timeout in zip(REMEDIATE_PLAN, (30, 120, 30, 60), strict=True)] + [
        (["apt-get", "-y", "-q", "remove", "telnet"], 600), (["sysctl", "-w", "net.ipv4.ip_forward=0"], 30)]
    assert host.calls == []
    assert result == {"changed": True, "sshd_reloaded": False, "backup_dir": str(state / "remediation" / "b1"),
                      "results": remediate_results(root)}
    assert (root / "etc/app.conf").read_text() == "mode strict\n" and not (root / "etc/at.deny").exists()
    assert (root / "etc/sysctl.d/60-patchwave.conf").read_text() == "# written by Patchwave\nnet.ipv4.ip_forward = 0\n"
    backup = state / "remediation" / "b1" / str(root).lstrip("/")
    assert (backup / "etc/app.conf").read_text() == "mode relaxed\n" and (backup / "etc/at.deny").read_text() == "daemon\n"


def test_remediate_baseline_refuses_to_remove_what_the_connection_needs(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    _host, runner, root = remediate_host(monkeypatch, tmp_path)
    runner.answers[("apt-get", "-s", "-o", "Debug::NoLocking=1", "remove", "telnet")] = (
        0, "Remv telnet [0.17]\nRemv openssh-server [1:9.2p1-2+deb12u3]\n", "")
    result = run_main(remediate_baseline, {"rules": REMEDIATE_RULES[1:2], "batch": "b1",
                                           "state_dir": str(tmp_path / "state"), "connection_user": "patchwave"})
    assert result["changed"] is False and result["results"] == [{
        "id": "no-telnet", "status": "refused", "actions": [],
        "message": "removing telnet would also remove openssh-server, which the connection needs"}]
    assert runner.argvs() == REMEDIATE_PLAN[:2] and (root / "var/lib/dpkg/status").read_text() == STATUS
