"""Pure logic of the apt backend: parsing and the exact argv it runs (run_command is faked)."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr import apt, base

SIMULATION = """\
Reading package lists...
Inst pw-agent [1.0-1] (1.1-1 Patchwave Lab:patchwave-lab [all])
Inst pw-libssl [1.0-1] (1.0-2 Debian:12.5/stable, Debian-Security:12/stable-security [amd64])
Inst pw-tools-common (2.0-1 Patchwave Lab Security:patchwave-lab-security [all])
Remv old-thing [0.9]
Conf pw-agent (1.1-1 Patchwave Lab:patchwave-lab [all])
"""


def test_parse_simulation_reads_upgrades_new_packages_and_removals() -> None:
    updates, removals = apt.parse_simulation(SIMULATION)
    assert [u["name"] for u in updates] == ["pw-agent", "pw-libssl", "pw-tools-common"]
    agent, libssl, common = updates
    assert (agent["installed"], agent["candidate"], agent["security"]) == ("1.0-1", "1.1-1", False)
    assert libssl["security"] is True
    assert libssl["origins"] == [{"label": "Debian", "suite": "stable"},
                                 {"label": "Debian-Security", "suite": "stable-security"}]
    assert common["new_install"] is True and common["installed"] is None
    assert removals == [{"name": "old-thing", "installed": "0.9"}]


def test_policy_candidate() -> None:
    text = "pw-pinned:\n  Installed: 1.0-1\n  Candidate: 1.1-1\n  Version table:\n"
    assert apt.parse_policy_candidate(text) == ("1.0-1", "1.1-1")


@pytest.mark.parametrize("spec", [
    "pw-libssl=1.0-2", "libc6=2.36-9+deb12u4", "python3.11=3.11.2-6", "openssl=1:3.0.11-1~deb12u2",
])
def test_parse_specs_accepts_real_names(spec: str) -> None:
    name, version = spec.split("=", 1)
    assert base.parse_specs([spec]) == {name: version}


@pytest.mark.parametrize("spec", [
    "pw-libssl", "pw-libssl=", "=1.0", "-o=1.0", "pw;rm -rf /=1", "pw-libssl=1.0;reboot",
    "pw-libssl=$(id)", "pw libssl=1.0", "PW=1.0", "pw-libssl=1.0 --allow-unauthenticated",
])
def test_parse_specs_refuses_injection_and_malformed(spec: str) -> None:
    with pytest.raises(base.PackageSpecError):
        base.parse_specs([spec])


def test_parse_specs_refuses_two_versions_of_one_package() -> None:
    with pytest.raises(base.PackageSpecError, match="two versions"):
        base.parse_specs(["a=1", "a=2"])


class FakeModule:
    def __init__(self, answers: dict[str, tuple[int, str, str]] | None = None) -> None:
        self.calls: list[tuple[list[str], dict[str, str]]] = []
        self.answers = answers or {}

    def get_bin_path(self, name: str, required: bool = False) -> str:
        return f"/usr/bin/{name}"

    def run_command(self, argv: list[str], environ_update: dict[str, str] | None = None, check_rc: bool = False,
                    cwd: str | None = None) -> tuple[int, str, str]:
        self.calls.append((argv, environ_update or {}))
        return self.answers.get(argv[0].rsplit("/", 1)[-1], (0, "", ""))


def test_install_argv_is_exact_noninteractive_and_keeps_local_conffiles() -> None:
    module = FakeModule()
    manager = apt.AptManager(module)
    manager.install({"pw-libssl": "1.0-2", "pw-tools": "2.0-1"}, lock_timeout=42)
    argv, env = module.calls[-1]
    assert argv == ["/usr/bin/apt-get", "-q", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=42",
                    "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
                    "install", "pw-libssl=1.0-2", "pw-tools=2.0-1"]
    assert env["DEBIAN_FRONTEND"] == "noninteractive" and env["LC_ALL"] == "C"


def test_install_changes_held_packages_only_when_asked() -> None:
    module = FakeModule()
    apt.AptManager(module).install({"pw-pinned": "1.1-1"}, allow_held=True, conffile_policy="use_new")
    argv = module.calls[-1][0]
    assert "--allow-change-held-packages" in argv and "Dpkg::Options::=--force-confnew" in argv


def test_installed_versions_ignores_removed_but_configured_packages() -> None:
    out = "pw-a\t1.0\tii \tall\npw-b\t2.0\trc \tamd64\npw-held\t3.0\thi \tamd64\n"
    module = FakeModule({"dpkg-query": (0, out, ""), "dpkg": (0, "amd64\n", "")})
    assert apt.AptManager(module).installed_versions() == {"pw-a": "1.0", "pw-held": "3.0"}
    argv = module.calls[0][0]
    assert argv == ["/usr/bin/dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\t${Architecture}\n"]


def test_installed_versions_names_foreign_architectures_like_apt() -> None:
    out = "libc6\t2.36-9+deb12u4\tii \tamd64\nlibc6\t2.36-9+deb12u4\tii \ti386\nopenssl\t1:3.0.11-1~deb12u2\tii \tamd64\n"
    assert apt.parse_installed(out, "amd64") == {"libc6": "2.36-9+deb12u4", "libc6:i386": "2.36-9+deb12u4",
                                                 "openssl": "1:3.0.11-1~deb12u2"}


def test_simulation_with_multiarch_epoch_and_tilde_versions() -> None:
    text = ("Inst libc6:i386 [2.36-9] (2.36-9+deb12u4 Debian-Security:12/stable-security [i386])\n"
            "Inst openssl [1:3.0.11-1~deb12u1] (1:3.0.11-1~deb12u2 Debian:12.5/stable [amd64])\n")
    updates, _removals = apt.parse_simulation(text)
    assert [(u["name"], u["installed"], u["candidate"], u["arch"]) for u in updates] == [
        ("libc6:i386", "2.36-9", "2.36-9+deb12u4", "i386"),
        ("openssl", "1:3.0.11-1~deb12u1", "1:3.0.11-1~deb12u2", "amd64")]
    assert base.parse_specs(["libc6:i386=2.36-9+deb12u4"]) == {"libc6:i386": "2.36-9+deb12u4"}


def test_every_command_runs_with_lc_all_c() -> None:
    module = FakeModule({"apt-get": (0, "", "")})
    manager = apt.AptManager(module)
    manager.refresh()
    manager.held_packages()
    manager.health()
    for argv, env in module.calls:
        assert env["LC_ALL"] == "C", argv
    assert module.calls[0][0] == ["/usr/bin/apt-get", "-q", "--error-on=any", "update"]
    assert module.calls[1][0] == ["/usr/bin/apt-mark", "showhold"]
    assert module.calls[2][0] == ["/usr/bin/dpkg", "--audit"]


def test_rollback_and_repair_argv() -> None:
    module = FakeModule({"dpkg": (0, "", "")})
    manager = apt.AptManager(module)
    manager.install_files(["/c/rollback/a_1_all.deb", "/c/rollback/b_2_all.deb"])
    manager.remove(["pw-tools-common"])
    assert module.calls[0][0] == ["/usr/bin/dpkg", "--force-confdef", "--force-confold", "--install",
                                  "/c/rollback/a_1_all.deb", "/c/rollback/b_2_all.deb"]
    assert module.calls[1][0] == ["/usr/bin/dpkg", "--remove", "pw-tools-common"]
    broken = FakeModule({"dpkg": (0, "The following packages are only half configured\n pw-agent\n", "")})
    apt.AptManager(broken).repair_interrupted()
    assert broken.calls[-1][0] == ["/usr/bin/dpkg", "--force-confdef", "--force-confold", "--configure", "-a"]


def test_download_and_simulation_argv() -> None:
    module = FakeModule({"apt-get": (0, "", ""), "dpkg-query": (0, "", ""), "apt-mark": (0, "", "")})
    manager = apt.AptManager(module)
    manager.download({"pw-libssl": "1.0-2"}, lock_timeout=7)
    assert module.calls[0][0] == ["/usr/bin/apt-get", "-q", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=7",
                                  "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
                                  "--allow-change-held-packages", "--download-only", "install", "pw-libssl=1.0-2"]
    manager.pending_updates()
    assert ["/usr/bin/apt-get", "-s", "-q", "-o", "Debug::NoLocking=1", "dist-upgrade"] in [c[0] for c in module.calls]


def test_failed_command_carries_evidence() -> None:
    module = FakeModule({"apt-get": (100, "out", "E: Could not get lock")})
    with pytest.raises(base.CommandError) as caught:
        apt.AptManager(module).refresh()
    result: dict[str, Any] = caught.value.as_result()
    assert result["rc"] == 100 and "lock" in result["stderr"] and result["cmd"][0] == "/usr/bin/apt-get"


def test_deb_filename_escapes_epoch() -> None:
    assert apt.deb_filename("openssl", "1:3.0.11-1", "amd64") == "openssl_1%3a3.0.11-1_amd64.deb"
