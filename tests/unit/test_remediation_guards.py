"""Remediation cannot lock anyone out: every write path (line, config_value, file_absent,
file_mode, the drop-ins) refuses SSH keys, sshd's own files, sudoers outside `visudo -c` and the
account databases, judged on the resolved path; nothing removes or rewrites what the connection
runs on (sshd, sudo, python3, the shells, PAM, the name service; removals also by the owning
package, `dpkg -S`); no chmod or chown reaches a home's owner bits, a directory above a home or
the keys, the system directories or the connection's binaries; sshd options that shut the
connection out are refused; the modules refuse control characters whoever calls them; baseline
files that ask for any of it are refused at load time with file:line.

The planner runs on a directory tree standing in for the host's root (PathGuard's `root`), with
a fake `run` that records every argv: a refusal must leave the tree as it was and run nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline import fixes
from ansible_collections.patchwave.endpoint.plugins.module_utils.baseline.fixes import (
    Applier,
    PathGuard,
    Planner,
    Refused,
    sshd_check,
)
from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr.apt import dependency_closure

from patchwave.baseline.profile import Baseline
from patchwave.errors import InputError

USER = "patchwave"
ACCOUNTS = ("root:x:0:0:root:/root:/bin/bash\n"
          "patchwave:x:1000:1000::/home/patchwave:/bin/bash\n"
          "alice:x:1001:1001::/home/alice:/bin/bash\n"
          "bob:x:1002:1002::/home/bob:/bin/bash\n"
          "svc:x:998:998::/var/lib/svc:/usr/sbin/nologin\n")
SSHD_CONFIG = "Include /etc/ssh/sshd_config.d/*.conf\nAuthorizedKeysFile .ssh/authorized_keys /srv/sshkeys/%u\n"


class FakeRun:
    """run(argv, timeout) as the planner calls it; answers by program name."""

    def __init__(self, answers: dict[str, tuple[int, str, str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], timeout: int) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        return self.answers.get(argv[0], (0, "", ""))


def host_tree(tmp_path: Path) -> Path:
    """A host root with users, SSH keys, sshd's and sudo's files and an ordinary config file."""
    root = tmp_path / "host"
    files = {
        "/etc/passwd": ACCOUNTS,
        "/etc/shadow": "root:*:19000:0:99999:7:::\n",
        "/etc/ssh/sshd_config": SSHD_CONFIG,
        "/etc/ssh/sshd_config.d/10-site.conf": "X11Forwarding no\n",
        "/etc/ssh/ssh_host_ed25519_key": "KEY\n",
        "/etc/ssh/authorized_keys/alice": "ssh-ed25519 AAAA alice\n",
        "/etc/sudoers": "root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
        "/etc/sudoers.d/patchwave": "patchwave ALL=(ALL) NOPASSWD: ALL\n",
        "/etc/app.conf": "mode relaxed\n",
        "/root/.ssh/authorized_keys": "ssh-ed25519 AAAA root\n",
        "/home/patchwave/.ssh/authorized_keys": "ssh-ed25519 AAAA patchwave\n",
        "/home/alice/.ssh/config": "Host *\n",
        "/var/lib/svc/.ssh/id_ed25519": "KEY\n",
        "/srv/sshkeys/alice": "ssh-ed25519 AAAA alice\n",
        "/srv/bobkeys/id_ed25519": "KEY\n",
        "/srv/keys/authorized_keys2": "ssh-ed25519 AAAA x\n",
    }
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "home/bob").mkdir(parents=True)
    (root / "home/bob/.ssh").symlink_to(root / "srv/bobkeys")  # bob's keys live elsewhere
    (root / "etc/innocent.conf").symlink_to(root / "etc/sudoers")
    (root / "opt").mkdir()
    (root / "opt/notes.txt").symlink_to(root / "home/alice/.ssh/config")
    return root


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path)] = (path.read_text(), path.stat().st_mode)
    return out


def plan(root: Path, *rules: dict[str, Any], user: str = USER, run: FakeRun | None = None) -> Planner:
    planner = Planner(run or FakeRun(), user, root=str(root))
    for rule in rules:
        planner.plan(rule)
    planner.finish()
    return planner


def rule(rid: str, remediation: dict[str, Any], check: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": rid, "remediation": remediation, "check": check or {}}


# --- every write path refuses SSH keys, sshd's files, sudoers and the account files ---------

REFUSED_WRITES = [
    # any user's ~/.ssh: from /etc/passwd, root's, the connection user's, and through a symlinked ~/.ssh
    ("alice's ~/.ssh", {"type": "line", "path": "/home/alice/.ssh/config", "line": "ForwardAgent no"}, "~/.ssh"),
    ("root's keys", {"type": "line", "path": "/root/.ssh/authorized_keys", "line": "ssh-rsa AAAA evil"}, "~/.ssh"),
    ("the connection user's keys", {"type": "file_absent", "path": "/home/patchwave/.ssh/authorized_keys"}, "~/.ssh"),
    ("a system account's ~/.ssh", {"type": "file_absent", "path": "/var/lib/svc/.ssh/id_ed25519"}, "~/.ssh"),
    ("the target of bob's symlinked ~/.ssh", {"type": "file_absent", "path": "/srv/bobkeys/id_ed25519"},
     "is /home/bob/.ssh"),
    ("a symlink into ~/.ssh", {"type": "line", "path": "/opt/notes.txt", "line": "x"}, "~/.ssh"),
    # authorized_keys wherever it is, and every file AuthorizedKeysFile names
    ("authorized_keys2 anywhere", {"type": "config_value", "path": "/srv/keys/authorized_keys2", "key": "x",
                                   "value": "1"}, "authorized keys"),
    ("/etc/ssh/authorized_keys/", {"type": "file_absent", "path": "/etc/ssh/authorized_keys/alice"},
     "authorized keys"),
    ("an AuthorizedKeysFile location", {"type": "line", "path": "/srv/sshkeys/alice", "line": "ssh-rsa AAAA evil"},
     "AuthorizedKeysFile /srv/sshkeys/%u"),
    # sshd's configuration only through the drop-in that sshd -t checks
    ("sshd_config", {"type": "config_value", "path": "/etc/ssh/sshd_config", "key": "PermitRootLogin",
                     "value": "yes"}, "sshd_option"),
    ("an sshd drop-in", {"type": "line", "path": "/etc/ssh/sshd_config.d/10-site.conf", "line": "Port 2222"},
     "sshd_option"),
    ("Patchwave's own sshd drop-in by hand", {"type": "line", "path": fixes.SSHD_DROP_IN, "line": "Port 2222"},
     "sshd_option"),
    ("a host key", {"type": "file_absent", "path": "/etc/ssh/ssh_host_ed25519_key"}, "sshd_option"),
    # sudoers: never /etc/sudoers, drop-ins only through a visudo-checked line
    ("/etc/sudoers", {"type": "line", "path": "/etc/sudoers", "line": "Defaults use_pty"}, "never edits"),
    ("/etc/sudoers via ..", {"type": "line", "path": "/etc/sudoers.d/../sudoers", "line": "Defaults use_pty"},
     "never edits"),
    ("/etc/sudoers via a symlink", {"type": "config_value", "path": "/etc/innocent.conf", "key": "Defaults",
                                    "value": "!authenticate"}, "which is /etc/sudoers"),
    ("a config_value in sudoers.d", {"type": "config_value", "path": "/etc/sudoers.d/patchwave", "key": "patchwave",
                                     "value": "ALL=(ALL) ALL"}, "visudo -c"),
    ("removing a sudoers drop-in", {"type": "file_absent", "path": "/etc/sudoers.d/patchwave"}, "take away"),
    # the account databases and nologin
    ("/etc/shadow", {"type": "line", "path": "/etc/shadow", "line": "patchwave:!:1::::::"}, "who can log in"),
    ("/etc/nologin", {"type": "line", "path": "/etc/nologin", "line": "maintenance"}, "who can log in"),
]


@pytest.mark.parametrize(("what", "remediation", "message"), REFUSED_WRITES, ids=[r[0] for r in REFUSED_WRITES])
def test_every_write_path_refuses_keys_sshd_sudoers_and_accounts(tmp_path: Path, what: str,
                                                                  remediation: dict[str, Any], message: str) -> None:
    root = host_tree(tmp_path)
    before = snapshot(root)
    run = FakeRun()
    planner = plan(root, rule("r1", remediation), run=run)
    assert message in planner.refused.get("r1", ""), (what, planner.refused)
    assert planner.changes == [] and run.calls == []
    assert snapshot(root) == before


def test_file_mode_refuses_keys_and_chown_of_system_files_but_tightens_their_modes(tmp_path: Path) -> None:
    root = host_tree(tmp_path)
    (root / "home/alice/.ssh/config").chmod(0o644)
    (root / "etc/ssh/sshd_config").chmod(0o644)
    keys = plan(root, rule("keys", {"type": "file_mode"}, {"type": "file_mode", "paths": ["/home/*/.ssh/*"],
                                                            "mode": "0600"}))
    assert "~/.ssh" in keys.refused["keys"] and keys.changes == []
    chown = plan(root, rule("own", {"type": "file_mode"}, {"type": "file_mode", "paths": ["/etc/sudoers"],
                                                           "owner": "nobody"}))
    assert "must stay root's" in chown.refused["own"] and chown.changes == []
    tighten = plan(root, rule("sshd", {"type": "file_mode"}, {"type": "file_mode", "paths": ["/etc/ssh/sshd_config"],
                                                              "owner": "root", "mode": "0600"}))
    assert tighten.refused == {}
    assert [(c.path, c.mode, c.owner) for c in tighten.changes] == [(str(root / "etc/ssh/sshd_config"), 0o600, None)]


def test_a_refused_rule_takes_back_its_earlier_changes(tmp_path: Path) -> None:
    """A glob matching an ordinary file first and a protected one later: nothing of the rule stays."""
    root = host_tree(tmp_path)
    (root / "etc/app.conf").chmod(0o666)
    (root / "root/.ssh/authorized_keys").chmod(0o666)
    planner = plan(root, rule("r1", {"type": "file_mode"},
                              {"type": "file_mode", "paths": ["/etc/app.conf", "/root/.ssh/authorized_keys"],
                               "mode": "0644"}))
    assert "~/.ssh" in planner.refused["r1"]
    assert planner.changes == []


def test_ordinary_files_are_still_fixed_and_applied_through_the_guard(tmp_path: Path) -> None:
    root = host_tree(tmp_path)
    planner = plan(root, rule("r1", {"type": "config_value", "path": "/etc/app.conf", "key": "mode",
                                     "value": "strict"}))
    assert planner.refused == {}
    (change,) = planner.changes
    assert (change.path, change.after) == (str(root / "etc/app.conf"), "mode strict\n")
    Applier(FakeRun(), USER, str(tmp_path / "backup"), planner.guard).apply(change)
    assert (root / "etc/app.conf").read_text() == "mode strict\n"


def test_a_path_swapped_for_a_symlink_after_planning_is_refused_when_applied(tmp_path: Path) -> None:
    root = host_tree(tmp_path)
    planner = plan(root, rule("r1", {"type": "line", "path": "/etc/app.conf", "line": "level 3"}))
    (change,) = planner.changes
    (root / "etc/app.conf").unlink()
    (root / "etc/app.conf").symlink_to(root / "etc/sudoers")
    sudoers = (root / "etc/sudoers").read_text()
    with pytest.raises(Refused, match="never edits"):
        Applier(FakeRun(), USER, str(tmp_path / "backup"), planner.guard).apply(change)
    assert (root / "etc/sudoers").read_text() == sudoers


def test_a_fifo_or_a_directory_is_never_read_or_written(tmp_path: Path) -> None:
    root = host_tree(tmp_path)
    os.mkfifo(root / "etc/app.fifo")  # reading it would hang the module
    planner = plan(root, rule("fifo", {"type": "line", "path": "/etc/app.fifo", "line": "x"}),
                   rule("dir", {"type": "config_value", "path": "/etc/ssh/..", "key": "a", "value": "1"}))
    assert "not a regular file" in planner.refused["fifo"]
    assert "/etc/ssh/.. is not a regular file" in planner.refused["dir"]
    assert planner.changes == []


# --- what the connection runs on: sshd, sudo, python3, the shells, PAM, the name service ----

CAROL = "carol:x:1003:1003::/srv/home/carol:/usr/local/bin/fish\n"


def connection_tree(tmp_path: Path) -> Path:
    """host_tree plus the files the connection runs on, a user whose home and shell are in
    unusual places, and two ordinary files (/etc/cron.d/x, /etc/at.deny)."""
    root = host_tree(tmp_path)
    files = {
        "/usr/sbin/sshd": "ELF sshd\n",
        "/usr/bin/sudo": "ELF sudo\n",
        "/usr/lib/openssh/sshd-session": "ELF sshd-session\n",
        "/usr/bin/python3.11": "ELF python\n",
        "/bin/sh": "ELF dash\n",
        "/usr/local/bin/fish": "ELF fish\n",
        "/lib/systemd/system/ssh.service": "[Service]\nExecStart=/usr/sbin/sshd -D\n",
        "/etc/systemd/system/ssh.service.d/override.conf": "[Service]\nRestart=always\n",
        "/etc/pam.d/sshd": "@include common-auth\n",
        "/etc/pam.d/common-auth": "auth required pam_unix.so\n",
        "/etc/security/access.conf": "+:ALL:ALL\n",
        "/etc/security/limits.conf": "# /etc/security/limits.conf\n",
        "/etc/security/limits.d/60-patchwave.conf": "# written by Patchwave\n",
        "/etc/security/pwquality.conf": "minlen = 8\n",
        "/etc/nsswitch.conf": "passwd: files\n",
        "/etc/shells": "/bin/sh\n/bin/bash\n",
        "/etc/default/ssh": "SSHD_OPTS=\n",
        "/usr/lib/x86_64-linux-gnu/libcrypto.so.3": "ELF libcrypto\n",
        "/dev/null": "",
        "/srv/home/carol/.profile": "",
        "/etc/cron.d/x": "# a job\n",
        "/etc/at.deny": "nobody\n",
    }
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    with (root / "etc/passwd").open("a") as handle:
        handle.write(CAROL)
    (root / "usr/bin/sudo").chmod(0o4755)
    for name in ("usr/sbin/sshd", "usr/bin/python3.11", "bin/sh", "usr/local/bin/fish", "etc/cron.d/x"):
        (root / name).chmod(0o755)
    (root / "opt/cleanup.conf").symlink_to(root / "etc/pam.d/common-auth")
    (root / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    (root / "etc/systemd/system/multi-user.target.wants/ssh.service").symlink_to(root / "lib/systemd/system/ssh.service")
    return root


REFUSED_CONNECTION_FILES = [
    # file_absent of what the connection runs on, by path (before dpkg is even asked)
    ("sshd", {"type": "file_absent", "path": "/usr/sbin/sshd"}, "/usr/sbin/sshd is sshd; removing it would lock out"),
    ("sshd by its merged-/usr twin", {"type": "file_absent", "path": "/sbin/sshd"}, "is sshd; removing it"),
    ("sudo", {"type": "file_absent", "path": "/usr/bin/sudo"}, "is sudo (the connection's become); removing it"),
    ("sshd-session", {"type": "file_absent", "path": "/usr/lib/openssh/sshd-session"}, "sshd's helpers"),
    ("sshd's unit", {"type": "file_absent", "path": "/lib/systemd/system/ssh.service"}, "sshd's systemd unit"),
    ("sshd's unit drop-in", {"type": "file_absent", "path": "/etc/systemd/system/ssh.service.d/override.conf"},
     "sshd's systemd unit"),
    ("sshd's enablement link", {"type": "file_absent", "path": "/etc/systemd/system/multi-user.target.wants/ssh.service"},
     "sshd's systemd unit"),
    ("the python3 interpreter", {"type": "file_absent", "path": "/usr/bin/python3.11"}, "the python3 Ansible runs"),
    ("/bin/sh", {"type": "file_absent", "path": "/bin/sh"}, "the shell Ansible runs its commands with"),
    ("a PAM file", {"type": "file_absent", "path": "/etc/pam.d/sshd"}, "PAM's configuration"),
    ("a PAM file through a symlink", {"type": "file_absent", "path": "/opt/cleanup.conf"},
     "(which is /etc/pam.d/common-auth) is PAM's configuration"),
    ("anything in /etc/security", {"type": "file_absent", "path": "/etc/security/pwquality.conf"},
     "the configuration of PAM's modules; removing it could lock out"),
    ("nsswitch.conf", {"type": "file_absent", "path": "/etc/nsswitch.conf"}, "the name service configuration"),
    ("/etc/shells", {"type": "file_absent", "path": "/etc/shells"}, "the list of login shells"),
    ("a user's login shell", {"type": "file_absent", "path": "/usr/local/bin/fish"}, "the login shell of carol"),
    # line and config_value: PAM, pam_access, pam_limits, the name service, sshd's unit
    ("a line in PAM", {"type": "line", "path": "/etc/pam.d/sshd", "line": "auth required pam_deny.so"},
     "PAM hardening is out of scope for automatic remediation"),
    ("a config_value in PAM", {"type": "config_value", "path": "/etc/pam.d/common-auth", "key": "auth",
                               "value": "requisite pam_deny.so"}, "a person fixes it"),
    ("pam_access", {"type": "line", "path": "/etc/security/access.conf", "line": "-:ALL:ALL"},
     "who may log in from where; changing it could lock out"),
    ("limits.conf", {"type": "line", "path": "/etc/security/limits.conf", "line": "* hard core 0"},
     "pam_limits' configuration"),
    ("a limit that stops sessions", {"type": "line", "path": "/etc/security/limits.d/60-patchwave.conf",
                                     "line": "* hard maxlogins 0"}, "may add core limits here, nothing else"),
    ("a core limit that replaces nothing but adds nproc", {"type": "line", "path": "/etc/security/limits.d/x.conf",
                                                          "line": "* hard nproc 0 # core"}, "core limits here"),
    ("a config_value in limits.d", {"type": "config_value", "path": "/etc/security/limits.d/60-patchwave.conf",
                                    "key": "patchwave", "value": "hard core 0"}, "pam_limits' configuration"),
    ("nsswitch.conf", {"type": "line", "path": "/etc/nsswitch.conf", "line": "passwd: nis", "regex": "^passwd:"},
     "the name service configuration (how sshd and sudo find users); changing it could lock out"),
    ("sshd's unit", {"type": "config_value", "path": "/lib/systemd/system/ssh.service", "key": "ExecStart",
                     "value": "/bin/false", "separator": "="}, "sshd's systemd unit"),
    ("the python3 interpreter", {"type": "line", "path": "/usr/bin/python3.11", "line": "x"}, "the python3 Ansible"),
]


@pytest.mark.parametrize(("what", "remediation", "message"), REFUSED_CONNECTION_FILES,
                         ids=[f"{r['type']}: {w}" for w, r, _m in REFUSED_CONNECTION_FILES])
def test_what_the_connection_runs_on_is_never_removed_or_rewritten(tmp_path: Path, what: str,
                                                                    remediation: dict[str, Any], message: str) -> None:
    root = connection_tree(tmp_path)
    before = snapshot(root)
    run = FakeRun()
    planner = plan(root, rule("r1", remediation), run=run)
    assert message in planner.refused.get("r1", ""), (what, planner.refused)
    assert planner.changes == [] and run.calls == []
    assert snapshot(root) == before


def test_removing_a_file_asks_dpkg_who_owns_it_and_refuses_the_connections_packages(tmp_path: Path) -> None:
    root = connection_tree(tmp_path)
    before = snapshot(root)
    run = FakeRun({"dpkg": (0, "openssh-server: /etc/default/ssh\n", "")})
    planner = plan(root, rule("r1", {"type": "file_absent", "path": "/etc/default/ssh"}), run=run)
    assert planner.refused["r1"] == ("/etc/default/ssh belongs to openssh-server (dpkg -S), which the connection "
                                     "needs; removing it would lock out the connection user, so Patchwave does not do it")
    assert run.calls == [["dpkg", "-S", "/etc/default/ssh"]]  # an argv, never a shell; LC_ALL=C is the module's run
    assert planner.changes == [] and snapshot(root) == before


def test_a_file_of_a_package_the_connection_depends_on_is_refused_too(tmp_path: Path) -> None:
    """libssl3 is not in PROTECTED_PACKAGES, but openssh-server depends on it: the closure of
    Pre-Depends/Depends over what is installed decides."""
    root = connection_tree(tmp_path)
    listing = ("ii \topenssh-server\tno\t\t\tlibc6 (>= 2.36), libssl3 (>= 3.0.0) | libssl1.1\n"
               "ii \tlibssl3\t\tlibc6:any\n"  # a short line is skipped, not misread
               "ii \tlibssl3\tno\t\tlibc6\tlibc6 (>= 2.34)\n"
               "ii \tlibc6\tno\t\t\t\n")
    run = FakeRun({"dpkg": (0, "libssl3:amd64: /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n", ""),
                   "dpkg-query": (0, listing, "")})
    planner = plan(root, rule("r1", {"type": "file_absent", "path": "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"}), run=run)
    assert "belongs to libssl3 (dpkg -S), which the connection needs" in planner.refused["r1"]
    dpkg_s, query = run.calls
    assert dpkg_s == ["dpkg", "-S", "/lib/x86_64-linux-gnu/libcrypto.so.3", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"]
    assert query[:3] == ["dpkg-query", "-W", "-f"] and planner.changes == []


def test_the_dependency_closure_follows_alternatives_and_providers_of_installed_packages() -> None:
    listing = ("ii \tsudo\tno\t\tlibc6\tlibpam0g, libpam-modules\n"
               "ii \tlibpam-modules\t\t\t\tlibpam-modules-bin (= 1.5), default-mta | mail-transport-agent\n"
               "ii \tlibpam-modules-bin\t\t\t\t\n"
               "ii \tpostfix\t\tmail-transport-agent\t\t\n"
               "ii \tlibpam0g\t\t\t\tdebconf (>= 0.5) | debconf-2.0\n"
               "ii \tcdebconf\t\tdebconf-2.0\t\t\n"
               "rc \tdebconf\t\t\t\t\n"  # only its configuration files are left: not installed
               "ii \ttelnet\t\t\t\tlibc6\n"
               "ii \tcoreutils\tyes\t\tlibacl1\t\n"  # Essential: needed although nothing names it
               "ii \tlibacl1\t\t\t\t\n"
               "ii \tlibc6\t\t\t\t\n")
    assert dependency_closure(listing, ["sudo", "openssh-server"]) == {
        "sudo", "libc6", "libpam0g", "libpam-modules", "libpam-modules-bin", "postfix", "cdebconf", "coreutils",
        "libacl1"}


@pytest.mark.parametrize(("answer", "message"), [
    ((2, "", "dpkg-query: error: failed to open package info file\n"), "dpkg -S failed (rc 2): dpkg-query: error"),
    (OSError("No such file or directory: 'dpkg'"), "cannot tell which package owns /etc/at.deny"),
])
def test_a_removal_whose_owner_cannot_be_told_is_refused(tmp_path: Path, answer: Any, message: str) -> None:
    root = connection_tree(tmp_path)

    def run(argv: list[str], timeout: int) -> tuple[int, str, str]:
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    planner = Planner(run, USER, root=str(root))
    planner.plan(rule("r1", {"type": "file_absent", "path": "/etc/at.deny"}))
    assert message in planner.refused["r1"] and planner.changes == []


REFUSED_MODES = [
    # (what, check, message)
    ("a home's owner bits", {"paths": ["/home/*"], "mode": "0640"}, "is a home directory; chmod 0640 takes its owner's"),
    ("a home chowned", {"paths": ["/home/alice"], "owner": "nobody"}, "a chown would lock its user out"),
    ("a home chgrp'ed", {"paths": ["/srv/home/carol"], "group": "nogroup"}, "is a home directory"),
    ("/home", {"paths": ["/home"], "mode": "0700"}, "/home is above the home directory /home/"),
    ("above an unusual home", {"paths": ["/srv/home"], "mode": "0700"}, "is above the home directory /srv/home/carol"),
    ("above a symlinked ~/.ssh", {"paths": ["/srv"], "mode": "0700"}, "/srv is above "),
    ("where sshd reads keys from", {"paths": ["/srv/sshkeys"], "mode": "0700"},
     "where sshd reads keys from (AuthorizedKeysFile /srv/sshkeys/%u)"),
    ("/", {"paths": ["/"], "mode": "0700"}, "/ is a system directory"),
    ("/etc", {"paths": ["/etc"], "mode": "0700"}, "/etc is a system directory"),
    ("/usr/bin", {"paths": ["/usr/bin"], "owner": "nobody"}, "/usr/bin is a system directory"),
    ("/dev/null", {"paths": ["/dev/*"], "mode": "0600"}, "/dev/null is a system directory or in /dev"),
    ("sudo's setuid bit", {"paths": ["/usr/bin/*"], "mode": "0755"},
     "/usr/bin/sudo is sudo (the connection's become; it needs its setuid bit); Patchwave never changes its mode"),
    ("sshd", {"paths": ["/usr/sbin/sshd"], "mode": "0700"}, "/usr/sbin/sshd is sshd; Patchwave never changes"),
    ("sshd-session", {"paths": ["/usr/lib/openssh/*"], "mode": "0700"}, "sshd's helpers"),
    ("python3", {"paths": ["/usr/bin/python3*"], "mode": "0700"}, "the python3 Ansible runs"),
    ("/bin/sh", {"paths": ["/bin/sh"], "mode": "0700"}, "the shell Ansible runs its commands with"),
    ("a user's login shell", {"paths": ["/usr/local/bin/fish"], "mode": "0700"}, "the login shell of carol"),
]


@pytest.mark.parametrize(("what", "check", "message"), REFUSED_MODES, ids=[r[0] for r in REFUSED_MODES])
def test_chmod_and_chown_that_could_shut_users_out_are_refused(tmp_path: Path, what: str, check: dict[str, Any],
                                                                message: str) -> None:
    root = connection_tree(tmp_path)
    for directory in ("home", "srv", "srv/home", "srv/sshkeys", "etc", "usr/bin"):
        (root / directory).chmod(0o755)
    root.chmod(0o755)
    before = snapshot(root)
    modes = {str(p): p.stat().st_mode for p in [root, *root.rglob("*")] if not p.is_symlink()}
    planner = plan(root, rule("r1", {"type": "file_mode"}, {"type": "file_mode", **check}))
    assert message in planner.refused.get("r1", ""), (what, planner.refused)
    assert planner.changes == []
    assert snapshot(root) == before
    assert {str(p): p.stat().st_mode for p in [root, *root.rglob("*")] if not p.is_symlink()} == modes


def test_a_chmod_that_keeps_the_owners_bits_of_home_directories_still_goes_through(tmp_path: Path) -> None:
    """The workstation overlay's 0750 on /home/* only takes group and other bits away."""
    root = connection_tree(tmp_path)
    for home in ("patchwave", "alice", "bob"):
        (root / "home" / home).chmod(0o755)
    planner = plan(root, rule("r1", {"type": "file_mode"}, {"type": "file_mode", "paths": ["/home/*"], "mode": "0750"}))
    assert planner.refused == {}
    assert sorted((c.path, c.mode) for c in planner.changes) == [
        (str(root / "home" / home), 0o750) for home in ("alice", "bob", "patchwave")]


def test_ordinary_fixes_next_to_the_connections_files_still_go_through(tmp_path: Path) -> None:
    """The control: a line in /etc/cron.d/x, its mode, pwquality.conf, a core limit in
    limits.d and the removal of a file no needed package owns are planned and applied."""
    root = connection_tree(tmp_path)
    run = FakeRun({"dpkg": (0, "at: /etc/at.deny\n", ""),
                   "dpkg-query": (0, "ii \topenssh-server\tno\t\t\tlibc6\nii \tat\tno\t\t\tlibc6\n", "")})
    planner = plan(root,
                   rule("cron-line", {"type": "line", "path": "/etc/cron.d/x", "line": "MAILTO=root"}),
                   rule("cron-mode", {"type": "file_mode"}, {"type": "file_mode", "paths": ["/etc/cron.d/x"],
                                                             "mode": "0600"}),
                   rule("pwquality", {"type": "config_value", "path": "/etc/security/pwquality.conf", "key": "minlen",
                                      "value": "14", "separator": "="}),
                   rule("core", {"type": "line", "path": "/etc/security/limits.d/60-patchwave.conf",
                                 "line": "* hard core 0"}),
                   rule("at-deny", {"type": "file_absent", "path": "/etc/at.deny"}),
                   run=run)
    assert planner.refused == {}
    assert [c.rule for c in planner.changes] == ["cron-line", "cron-mode", "pwquality", "core", "at-deny"]
    assert [c.via for c in planner.changes if c.rule == "core"] == ["limits"]
    assert run.calls[0] == ["dpkg", "-S", "/etc/at.deny"]
    applier = Applier(FakeRun(), USER, str(tmp_path / "backup"), planner.guard)
    for change in planner.changes:
        applier.apply(change)
    assert (root / "etc/cron.d/x").read_text() == "# a job\nMAILTO=root\n"
    assert (root / "etc/cron.d/x").stat().st_mode & 0o7777 == 0o600
    assert (root / "etc/security/pwquality.conf").read_text() == "minlen = 14\n"
    assert (root / "etc/security/limits.d/60-patchwave.conf").read_text() == "# written by Patchwave\n* hard core 0\n"
    assert not (root / "etc/at.deny").exists()


def test_a_chmod_whose_file_became_a_symlink_to_sudo_is_refused_when_applied(tmp_path: Path) -> None:
    root = connection_tree(tmp_path)
    planner = plan(root, rule("r1", {"type": "file_mode"}, {"type": "file_mode", "paths": ["/etc/cron.d/x"],
                                                            "mode": "0700"}))
    (change,) = planner.changes
    (root / "etc/cron.d/x").unlink()
    (root / "etc/cron.d/x").symlink_to(root / "usr/bin/sudo")
    with pytest.raises(Refused, match=r"which is /usr/bin/sudo.* never changes its mode"):
        Applier(FakeRun(), USER, str(tmp_path / "backup"), planner.guard).apply(change)
    assert (root / "usr/bin/sudo").stat().st_mode & 0o7777 == 0o4755


# --- sudoers drop-ins: visudo -c, and only Defaults lines that keep sudo non-interactive ----

def test_a_sudoers_defaults_line_is_checked_with_visudo_before_it_is_planned(tmp_path: Path) -> None:
    root = host_tree(tmp_path)
    run = FakeRun({"visudo": (0, "", "")})
    planner = plan(root, rule("use-pty", {"type": "line", "path": "/etc/sudoers.d/60-patchwave",
                                          "line": "Defaults use_pty"}), run=run)
    assert planner.refused == {}
    (argv,) = run.calls
    assert argv[:4] == ["visudo", "-c", "-q", "-f"] and len(argv) == 5
    (change,) = planner.changes
    assert (change.after, change.mode, change.via) == ("Defaults use_pty\n", 0o440, "visudo")


def test_visudo_rejecting_the_drop_in_refuses_it(tmp_path: Path) -> None:
    run = FakeRun({"visudo": (1, "", "parse error in /tmp/x near line 1\n")})
    planner = plan(host_tree(tmp_path), rule("r1", {"type": "line", "path": "/etc/sudoers.d/60-patchwave",
                                                    "line": "Defaults use_pty"}), run=run)
    assert "visudo -c rejects" in planner.refused["r1"] and planner.changes == []


@pytest.mark.parametrize(("line", "regex", "message"), [
    ("patchwave ALL=(ALL) ALL", None, "not a plain Defaults line"),  # a later rule wins: asks for a password
    ("Defaults requiretty", None, "requiretty"),
    ("Defaults:patchwave rootpw", None, "not a plain Defaults line"),
    ("Defaults noexec", None, "noexec"),
    ("#include /etc/evil", None, "not a plain Defaults line"),
    ("Defaults use_pty", "^patchwave", "not a plain Defaults line"),  # would replace the NOPASSWD line
])
def test_sudoers_lines_that_change_who_may_run_what_are_refused(tmp_path: Path, line: str, regex: str | None,
                                                                 message: str) -> None:
    run = FakeRun()
    fix = {"type": "line", "path": "/etc/sudoers.d/patchwave", "line": line}
    if regex:
        fix["regex"] = regex
    planner = plan(host_tree(tmp_path), rule("r1", fix), run=run)
    assert message in planner.refused["r1"]
    assert planner.changes == [] and run.calls == []  # refused before visudo even runs


# --- sshd options -------------------------------------------------------------------------

SSHD_T = "pubkeyauthentication yes\npermitrootlogin prohibit-password\n"


@pytest.mark.parametrize(("key", "value", "user", "message"), [
    ("PermitRootLogin", "yes", USER, "log in with a password"),
    ("PermitRootLogin", "YES", USER, "log in with a password"),
    ("PermitRootLogin", "forced-commands-only", USER, "command= option"),
    ("PermitRootLogin", "forced-commands-only", "root", "command= option"),
    ("PermitRootLogin", "no", "root", "lock out the connection user root"),
    ("PermitRootLogin", "maybe", USER, "use no or prohibit-password"),
    ("PubkeyAuthentication", "no", USER, "lock out"),
    ("AllowUsers", "alice bob", USER, "lock out the connection user patchwave"),
    ("MaxSessions", "1", USER, "multiplexed"),
    ("MaxAuthTries", "1", USER, "single try"),
    ("LoginGraceTime", "5s", USER, "too little time"),
    ("Match", "User alice", USER, "one keyword"),
    ("Include", "/tmp/evil.conf", USER, "one keyword"),
    ("AuthorizedKeysFile", "/tmp/keys", USER, "connection itself"),
    ("AuthorizedKeysCommand", "/bin/cat", USER, "connection itself"),
    ("Subsystem", "sftp /bin/false", USER, "connection itself"),
])
def test_sshd_options_that_could_lock_out_are_refused_before_sshd_runs(tmp_path: Path, key: str, value: str,
                                                                        user: str, message: str) -> None:
    root = host_tree(tmp_path)
    run = FakeRun({"sshd": (0, SSHD_T, "")})
    planner = plan(root, rule("r1", {"type": "sshd_option", "key": key, "value": value}), user=user, run=run)
    assert message in planner.refused["r1"]
    assert planner.changes == [] and run.calls == []


@pytest.mark.parametrize(("value", "user"), [("no", USER), ("prohibit-password", USER), ("prohibit-password", "root"),
                                             ("without-password", "root")])
def test_permitrootlogin_values_that_keep_root_password_login_off(tmp_path: Path, value: str, user: str) -> None:
    root = host_tree(tmp_path)
    run = FakeRun({"sshd": (0, SSHD_T.replace("prohibit-password", value), "")})
    planner = plan(root, rule("r1", {"type": "sshd_option", "key": "PermitRootLogin", "value": value}), user=user,
                   run=run)
    assert planner.refused == {}
    (change,) = planner.changes
    assert change.path == str(root / "etc/ssh/sshd_config.d/00-patchwave.conf") and change.via == "sshd"
    assert f"\npermitrootlogin {value}\n" in change.after  # sshd keywords are case-insensitive
    check, effective = run.calls
    assert check[:3] == ["sshd", "-t", "-f"]
    assert effective[:3] == ["sshd", "-T", "-f"] and effective[4:] == ["-C", f"user={user},host=localhost,"
                                                                             "addr=127.0.0.1"]


def test_sshd_check_refuses_a_configuration_that_shuts_root_out_when_root_connects(tmp_path: Path) -> None:
    main = tmp_path / "sshd_config"
    main.write_text("")
    run = FakeRun({"sshd": (0, "pubkeyauthentication yes\npermitrootlogin forced-commands-only\n", "")})
    assert "lock out the connection user root" in sshd_check(run, "root", "X11Forwarding no\n", str(main))
    assert sshd_check(run, USER, "X11Forwarding no\n", str(main)) == ""


def test_a_symlinked_sshd_drop_in_is_not_written_through(tmp_path: Path) -> None:
    root = host_tree(tmp_path)
    (root / "etc/ssh/sshd_config.d/00-patchwave.conf").symlink_to(root / "etc/ssh/sshd_config")
    run = FakeRun({"sshd": (0, SSHD_T, "")})
    planner = plan(root, rule("r1", {"type": "sshd_option", "key": "X11Forwarding", "value": "no"}), run=run)
    assert "sshd_option" in planner.refused["r1"] and planner.changes == [] and run.calls == []


def test_packages_the_connection_needs_are_refused_before_anything_runs(tmp_path: Path) -> None:
    run = FakeRun()
    planner = plan(host_tree(tmp_path), rule("r1", {"type": "package_absent", "name": "openssh-server"}), run=run)
    assert "carries the connection" in planner.refused["r1"] and run.calls == []
    failing = FakeRun({"dpkg-query": (0, "ii ", ""), "apt-get": (100, "", "E: Unable to locate package\n")})
    planner = plan(host_tree(tmp_path / "b"), rule("r2", {"type": "package_absent", "name": "telnet"}), run=failing)
    assert "what it would also remove is unknown" in planner.refused["r2"] and planner.changes == []


def test_the_guard_reads_every_home_and_authorized_keys_file_of_the_host(tmp_path: Path) -> None:
    guard = PathGuard(USER, str(host_tree(tmp_path)))
    assert {"/root", "/home/patchwave", "/home/alice", "/home/bob", "/var/lib/svc"} <= set(guard.homes())
    assert guard.resolve("/home/bob/.ssh/id_ed25519") == "/srv/bobkeys/id_ed25519"
    guard.check("/etc/app.conf", "write")  # an ordinary file passes
    with pytest.raises(Refused, match="AuthorizedKeysFile"):
        guard.check("/srv/sshkeys/bob", "write")


# --- the modules refuse control characters and malformed input, whoever calls them ---------

def run_module(module: Any, args: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[Any]]:
    """Call a module's main() as Ansible would; every process it would start is recorded."""
    import subprocess

    calls: list[Any] = []

    def no_process(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError(f"the module ran {args}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main()
    return json.loads(out.getvalue()), calls


@pytest.mark.parametrize(("what", "remediation", "message"), [
    ("newline in a value", {"type": "config_value", "path": "TARGET", "key": "mode", "value": "strict\nPermitRootLogin yes"},
     "remediation.value holds a control character (U+000A)"),
    ("carriage return in a line", {"type": "line", "path": "TARGET", "line": "a\rb"}, "(U+000D)"),
    ("line separator in a line", {"type": "line", "path": "TARGET", "line": "a\u2028b"}, "(U+2028)"),
    ("NUL in a path", {"type": "file_absent", "path": "TARGET\x00"}, "remediation.path holds a control character"),
    ("tab in a key", {"type": "config_value", "path": "TARGET", "key": "a\tb", "value": "1"}, "(U+0009)"),
    ("a module name that leaves modprobe.d", {"type": "kernel_module", "name": "../../cron.d/x"},
     "is not a kernel module name"),
    ("a unit glob", {"type": "service_disabled", "name": "*"}, "is not a unit name"),
    ("a package option", {"type": "package_absent", "name": "--purge"}, "is not a package name"),
    ("a relative path", {"type": "line", "path": "etc/x", "line": "x"}, "is not an absolute path"),
    ("a broken regex", {"type": "line", "path": "TARGET", "line": "x", "regex": "(["}, "remediation.regex"),
])
def test_remediate_module_refuses_bad_values_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 what: str, remediation: dict[str, Any],
                                                                 message: str) -> None:
    from ansible_collections.patchwave.endpoint.plugins.modules import remediate_baseline

    target = tmp_path / "app.conf"
    target.write_text("mode relaxed\n")
    fix = {k: (v.replace("TARGET", str(target)) if isinstance(v, str) else v) for k, v in remediation.items()}
    result, calls = run_module(remediate_baseline, {"rules": [{"id": "r1", "remediation": fix}], "batch": "b1",
                                                    "state_dir": str(tmp_path / "state")}, monkeypatch)
    assert result["failed"] is True and message in result["msg"], (what, result["msg"])
    assert "nothing was changed" in result["msg"]
    assert calls == [] and target.read_text() == "mode relaxed\n" and not (tmp_path / "state").exists()


@pytest.mark.parametrize(("args", "message"), [
    ({"connection_user": "patchwave,addr=10.0.0.9"}, "is not a user name"),
    ({"connection_user": "patchwave\n"}, "is not a user name"),
    ({"batch": ".."}, "batch"),
    ({"batch": "b1\n"}, "batch"),
])
def test_remediate_module_refuses_a_bad_user_or_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      args: dict[str, Any], message: str) -> None:
    from ansible_collections.patchwave.endpoint.plugins.modules import remediate_baseline

    params = {"rules": [{"id": "r1", "remediation": {"type": "line", "path": str(tmp_path / "x"), "line": "a"}}],
              "batch": "b1", "state_dir": str(tmp_path / "state"), **args}
    result, calls = run_module(remediate_baseline, params, monkeypatch)
    assert result["failed"] is True and message in result["msg"]
    assert calls == [] and not (tmp_path / "x").exists()


def test_remediate_module_reports_guard_refusals_per_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible_collections.patchwave.endpoint.plugins.modules import remediate_baseline

    rules = [{"id": "sudoers", "remediation": {"type": "line", "path": "/etc/sudoers", "line": "Defaults use_pty"}},
             {"id": "keys", "remediation": {"type": "file_absent", "path": "/root/.ssh/authorized_keys"}},
             {"id": "sshd", "remediation": {"type": "file_absent", "path": "/usr/sbin/sshd"}},
             {"id": "pam", "remediation": {"type": "line", "path": "/etc/pam.d/sshd", "line": "auth required pam_deny.so"}},
             {"id": "root", "remediation": {"type": "file_mode"}, "check": {"type": "file_mode", "paths": ["/"],
                                                                           "mode": "0700"}}]
    result, calls = run_module(remediate_baseline, {"rules": rules, "batch": "b1", "state_dir": str(tmp_path / "s"),
                                                    "_ansible_check_mode": True}, monkeypatch)
    assert result["changed"] is False and calls == []
    assert [(r["id"], r["status"]) for r in result["results"]] == [("sudoers", "refused"), ("keys", "refused"),
                                                                   ("sshd", "refused"), ("pam", "refused"),
                                                                   ("root", "refused")]
    assert "would lock out" in result["results"][2]["message"] and "PAM hardening" in result["results"][3]["message"]


@pytest.mark.parametrize(("rules", "today", "message"), [
    ([{"id": "r1", "type": "file", "args": {"path": "/etc/x\n/etc/shadow"}}], None,
     "rules[0].args.path holds a control character (U+000A)"),
    ([{"id": "r1", "type": "command", "args": {"argv": ["id", "\x1b[2J"]}}], None, "rules[0].args.argv[1]"),
    ([{"id": "r1", "type": "file", "args": {"path": "/etc/x"}, "exception": {"id": "E1", "expires": "20270101"}}],
     None, "rules[0].exception.expires: '20270101' is not a date YYYY-MM-DD"),
    ([{"id": "r1", "type": "file", "args": {"path": "/etc/x"}, "exception": {"id": "E1", "expires": "2027-W01-1"}}],
     None, "is not a date YYYY-MM-DD"),
    ([{"id": "r1", "type": "file", "args": {"path": "/etc/x"}}], "2027-01-01T00:00", "today: "),
])
def test_assess_module_refuses_control_characters_and_bad_dates(monkeypatch: pytest.MonkeyPatch,
                                                                rules: list[dict[str, Any]], today: str | None,
                                                                message: str) -> None:
    from ansible_collections.patchwave.endpoint.plugins.modules import assess_baseline

    args: dict[str, Any] = {"rules": rules, "snapshot": False}
    if today:
        args["today"] = today
    result, calls = run_module(assess_baseline, args, monkeypatch)
    assert result["failed"] is True and message in result["msg"]
    assert calls == []  # no rule ran


# --- the orchestrator refuses the same baselines when it loads them, with file:line ----------

RULE = """\
version: 1
name: hostile
rules:
  - id: r1
    title: A rule
    severity: low
    rationale: Why it matters.
    references: {nist: [CM-6]}
    check: {type: file, path: /etc/x}
    remediation: REMEDIATION
"""

BAD_BASELINES = [
    ("sshd_config directly", "{type: config_value, path: /etc/ssh/sshd_config, key: PermitRootLogin, value: 'no'}",
     ":10: rule r1: remediation.path: /etc/ssh/sshd_config: sshd reads /etc/ssh"),
    ("an sshd drop-in", "{type: line, path: /etc/ssh/sshd_config.d/99-x.conf, line: Port 22}",
     ":10: rule r1: remediation.path: .*sshd_option"),
    ("authorized_keys", "{type: line, path: /etc/ssh/authorized_keys, line: 'ssh-rsa AAAA x'}",
     ":10: rule r1: remediation.path: .*authorized keys"),
    ("root's keys", "{type: file_absent, path: /root/.ssh/authorized_keys}", r":10: rule r1: remediation.path: .*~/.ssh"),
    ("anyone's keys", "{type: file_absent, path: /srv/home/x/.ssh/id_rsa}", r"~/.ssh"),
    ("authorized_keys2 anywhere", "{type: config_value, path: /opt/authorized_keys2, key: a, value: b}", "authorized keys"),
    ("/etc/sudoers", "{type: line, path: /etc/sudoers, line: Defaults use_pty}", "never edits or removes /etc/sudoers"),
    ("a sudoers config_value", "{type: config_value, path: /etc/sudoers.d/x, key: a, value: b}", "only through a line"),
    ("removing a sudoers drop-in", "{type: file_absent, path: /etc/sudoers.d/patchwave}", "only through a line"),
    ("a sudoers user spec", "{type: line, path: /etc/sudoers.d/x, line: 'alice ALL=(ALL) NOPASSWD: ALL'}",
     ":10: rule r1: remediation.line: Patchwave writes only plain Defaults lines"),
    ("sudo requiretty", "{type: line, path: /etc/sudoers.d/x, line: Defaults requiretty}", "requiretty"),
    ("/etc/shadow", "{type: line, path: /etc/shadow, line: 'x:!:1::::::'}", "who can log in"),
    ("PermitRootLogin yes", "{type: sshd_option, key: PermitRootLogin, value: 'yes'}",
     ":10: rule r1: remediation.value: PermitRootLogin yes lets root log in with a password"),
    ("PermitRootLogin forced-commands-only", "{type: sshd_option, key: PermitRootLogin, value: forced-commands-only}",
     "command= option"),
    ("an sshd Match block", "{type: sshd_option, key: Match, value: User alice}", ":10: rule r1: remediation.key: match"),
    ("an sshd Port", "{type: sshd_option, key: Port, value: 2222}", "connection itself"),
    ("newline in a value", "{type: config_value, path: /etc/x.conf, key: a, value: \"b\\nPermitRootLogin yes\"}",
     r":10: rule r1: remediation.value: holds a control character \(U\+000A\)"),
    ("line separator in a line", "{type: line, path: /etc/x.conf, line: \"a\\u2028b\"}", r"\(U\+2028\)"),
    ("a path with ..", "{type: line, path: /etc/cron.d/../sudoers, line: Defaults use_pty}",
     "not a normalised absolute path"),
    ("removing openssh-server", "{type: package_absent, name: openssh-server}", "carries the connection"),
    ("a package glob", "{type: package_absent, name: 'openssh*'}", "globs are for checks"),
    ("disabling ssh", "{type: service_disabled, name: ssh}", "ssh.service carries the connection"),
    ("file_mode without a file_mode check", "{type: file_mode}", ":10: rule r1: remediation.type: a file_mode"),
    # what the connection runs on is never removed ...
    ("removing sshd", "{type: file_absent, path: /usr/sbin/sshd}",
     ":10: rule r1: remediation.path: /usr/sbin/sshd: /usr/sbin/sshd is sshd; removing it would lock out the connection"),
    ("removing sshd by its twin", "{type: file_absent, path: /sbin/sshd}", "/sbin/sshd is sshd; removing it"),
    ("removing sudo", "{type: file_absent, path: /usr/bin/sudo}", "is sudo .*; removing it would lock out"),
    ("removing sshd-session", "{type: file_absent, path: /usr/lib/openssh/sshd-session}", "sshd's helpers"),
    ("removing sshd's unit", "{type: file_absent, path: /lib/systemd/system/ssh.service}", "sshd's systemd unit"),
    ("removing sshd's unit in /usr", "{type: file_absent, path: /usr/lib/systemd/system/ssh.socket}",
     "sshd's systemd unit"),
    ("removing sshd's enablement", "{type: file_absent, path: /etc/systemd/system/multi-user.target.wants/ssh.service}",
     "sshd's systemd unit"),
    ("removing python3", "{type: file_absent, path: /usr/bin/python3.11}", "the python3 Ansible runs"),
    ("removing /bin/sh", "{type: file_absent, path: /bin/sh}", "the shell Ansible runs its commands with"),
    ("removing /usr/bin/sh", "{type: file_absent, path: /usr/bin/sh}", "the shell Ansible runs its commands with"),
    ("removing a PAM file", "{type: file_absent, path: /etc/pam.d/sshd}", "PAM's configuration .*removing it"),
    ("removing from /etc/security", "{type: file_absent, path: /etc/security/pwquality.conf}",
     "the configuration of PAM's modules; removing it could lock out"),
    ("removing nsswitch.conf", "{type: file_absent, path: /etc/nsswitch.conf}", "the name service configuration"),
    ("removing /etc/shells", "{type: file_absent, path: /etc/shells}", "the list of login shells"),
    # ... nor rewritten: PAM, pam_access, pam_limits, the name service
    ("a line in PAM", "{type: line, path: /etc/pam.d/common-auth, line: auth required pam_deny.so}",
     ":10: rule r1: remediation.path: /etc/pam.d/common-auth: .*PAM hardening is out of scope for automatic remediation"),
    ("a config_value in PAM", "{type: config_value, path: /etc/pam.d/sshd, key: auth, value: requisite pam_deny.so}",
     "a person fixes it"),
    ("pam_access", "{type: line, path: /etc/security/access.conf, line: '-:ALL:ALL'}", "who may log in from where"),
    ("limits.conf", "{type: line, path: /etc/security/limits.conf, line: '* hard core 0'}", "pam_limits"),
    ("a limit that stops sessions", "{type: line, path: /etc/security/limits.d/x.conf, line: '* hard maxlogins 0'}",
     "may add core limits here, nothing else"),
    ("a config_value in limits.d", "{type: config_value, path: /etc/security/limits.d/x.conf, key: a, value: b}",
     "pam_limits"),
    ("nsswitch.conf", "{type: line, path: /etc/nsswitch.conf, line: 'passwd: nis', regex: '^passwd:'}",
     "how sshd and sudo find users\\); changing it could lock out the connection user"),
    ("sshd's unit", "{type: config_value, path: /etc/systemd/system/ssh.service.d/override.conf, key: ExecStart, "
                    "value: /bin/false}", "sshd's systemd unit; changing it"),
]


@pytest.mark.parametrize(("what", "remediation", "message"), BAD_BASELINES, ids=[b[0] for b in BAD_BASELINES])
def test_baselines_that_ask_for_a_lock_out_are_refused_at_load(tmp_path: Path, what: str, remediation: str,
                                                               message: str) -> None:
    path = tmp_path / "hostile.yml"
    path.write_text(RULE.replace("REMEDIATION", remediation))
    with pytest.raises(InputError, match=message) as caught:
        Baseline(path)
    assert str(caught.value).startswith(f"{path}:"), what


def test_file_mode_rules_on_keys_are_refused_at_the_path_that_names_them(tmp_path: Path) -> None:
    path = tmp_path / "hostile.yml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: hostile
        parameters:
          key_paths: [/etc/ssh/ssh_host_*_key, /home/*/.ssh/authorized_keys]
        rules:
          - id: r1
            title: A rule
            severity: low
            rationale: Why it matters.
            references: {nist: [CM-6]}
            check: {type: file_mode, paths: $key_paths, mode: '0600'}
            remediation: {type: file_mode}
        """))
    with pytest.raises(InputError, match=r":11: rule r1: check.paths\[1\]: .*~/.ssh.*value of \$key_paths, set at "
                                         r".*hostile.yml:4"):
        Baseline(path)


MODE_RULE = """\
version: 1
name: hostile
rules:
  - id: r1
    title: A rule
    severity: low
    rationale: Why it matters.
    references: {nist: [CM-6]}
    check: CHECK
    remediation: {type: file_mode}
"""

BAD_MODES = [
    ("a home's owner bits", "{type: file_mode, paths: [/home/*], mode: '0640'}",
     r":9: rule r1: check.paths\[0\]: /home/\*: a home directory; mode 0640 takes its owner's read, write or search bit"),
    ("a home chowned", "{type: file_mode, paths: [/home/alice], owner: root}", "a chown would lock its user out"),
    ("root's home chgrp'ed", "{type: file_mode, paths: [/root], group: adm}", "a home directory"),
    ("/home", "{type: file_mode, paths: [/home], mode: '0700'}", "above the home directories"),
    ("/", "{type: file_mode, paths: [/], mode: '0700'}", "a system directory"),
    ("everything at the top", "{type: file_mode, paths: ['/*'], mode: '0700'}", "a system directory"),
    ("/usr/bin", "{type: file_mode, paths: [/usr/bin], owner: root}", "a system directory"),
    ("/etc", "{type: file_mode, paths: [/etc], mode: '0750'}", "a system directory"),
    ("/dev", "{type: file_mode, paths: [/dev/null], mode: '0600'}", "/dev"),
    ("sudo's setuid bit", "{type: file_mode, paths: [/etc/cron.d/x, /usr/bin/sudo], mode: '0755'}",
     r":9: rule r1: check.paths\[1\]: /usr/bin/sudo: reaches sudo .*it needs its setuid bit.*never changes its mode"),
    ("sudo through a glob", "{type: file_mode, paths: ['/usr/bin/*'], mode: '0755'}", "reaches sudo"),
    ("sudo by its twin", "{type: file_mode, paths: [/bin/sudo], mode: '0755'}", "reaches sudo"),
    ("sshd", "{type: file_mode, paths: [/usr/sbin/sshd], mode: '0700'}", "reaches sshd;"),
    ("sshd-session", "{type: file_mode, paths: ['/usr/lib/openssh/sshd-*'], mode: '0700'}", "sshd's helpers"),
    ("python3", "{type: file_mode, paths: ['/usr/bin/python3*'], mode: '0700'}", "the python3 Ansible runs"),
    ("/bin/sh", "{type: file_mode, paths: [/bin/sh], mode: '0700'}", "the shell Ansible runs"),
]


@pytest.mark.parametrize(("what", "check", "message"), BAD_MODES, ids=[b[0] for b in BAD_MODES])
def test_file_mode_rules_that_could_shut_users_out_are_refused_at_load(tmp_path: Path, what: str, check: str,
                                                                      message: str) -> None:
    path = tmp_path / "hostile.yml"
    path.write_text(MODE_RULE.replace("CHECK", check))
    with pytest.raises(InputError, match=message) as caught:
        Baseline(path)
    assert str(caught.value).startswith(f"{path}:"), what


def test_ordinary_fixes_next_to_the_connections_files_load(tmp_path: Path) -> None:
    """The control: a line in /etc/cron.d/x, its mode, pwquality.conf, a core limit in
    limits.d, a home's group and other bits, /etc/at.deny removed."""
    path = tmp_path / "fine.yml"
    rules = [("{type: file, path: /etc/x}", "{type: line, path: /etc/cron.d/x, line: MAILTO=root}"),
             ("{type: file_mode, paths: [/etc/cron.d/x], owner: root, mode: '0600'}", "{type: file_mode}"),
             ("{type: file_mode, paths: [/home/*], mode: '0750'}", "{type: file_mode}"),
             ("{type: file, path: /etc/x}", "{type: config_value, path: /etc/security/pwquality.conf, key: minlen, "
                                            "value: 14, separator: '='}"),
             ("{type: file, path: /etc/x}", "{type: line, path: /etc/security/limits.d/60-patchwave.conf, "
                                            "line: '* hard core 0'}"),
             ("{type: file, path: /etc/x}", "{type: file_absent, path: /etc/at.deny}")]
    path.write_text("version: 1\nname: fine\nrules:\n" + "".join(
        f"  - id: r{index}\n    title: A rule\n    severity: low\n    rationale: Why it matters.\n"
        f"    references: {{nist: [CM-6]}}\n    check: {check}\n    remediation: {fix}\n"
        for index, (check, fix) in enumerate(rules)))
    assert sorted(Baseline(path).rules_by_id()) == [f"r{index}" for index in range(len(rules))]


def test_the_shipped_baseline_passes_the_guards() -> None:
    from patchwave.baseline.profile import DEFAULT_PROFILE, SHIPPED

    assert len(Baseline(SHIPPED / "debian-server.yml").rules_by_id()) >= 80
    assert Baseline(DEFAULT_PROFILE).rules_by_id()
