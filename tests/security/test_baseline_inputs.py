"""Hostile and malformed baseline input through the real CLI: an exceptions register whose
expiry is not a date YYYY-MM-DD, a baseline that asks remediation to edit SSH keys, sshd's
configuration or sudoers, to remove or rewrite what the connection runs on (sshd, sudo, PAM,
the name service), to chmod a home directory, the directories above it or sudo, or smuggles a
newline into a value. Each is refused before any host
is contacted: exit code 2, `file:line: where: what`, and no store, no state written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATCHWAVE = str(Path(sys.executable).parent / "patchwave")

INVENTORY = "all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n"

RULES = """\
version: 1
name: tiny
rules:
  - id: telnet
    title: telnet is absent
    severity: medium
    rationale: Cleartext protocols leak passwords.
    references: {nist: [CM-7]}
    check: {type: package, name: telnet, state: absent}
    remediation: REMEDIATION
"""

EXCEPTIONS = """\
version: 1
exceptions:
  - id: EXC-1
    rule: telnet
    scope: {hosts: [web1]}
    owner: alice@example.com
    justification: the old switch console needs telnet
    compensating_control: reachable only from the jump host
    expires: EXPIRES
"""


def patchwave(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATCHWAVE_STATE_DIR=str(tmp_path / "state"), PATCHWAVE_OUTPUT_DIR=str(tmp_path / "output"),
               ANSIBLE_HOME=str(tmp_path / "ansible"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible" / "tmp"),
               COLUMNS="500")
    env.pop("PATCHWAVE_STORE", None)
    return subprocess.run([PATCHWAVE, *args], capture_output=True, text=True, cwd=ROOT, env=env, check=False,
                          timeout=300)


def refused(tmp_path: Path, command: str, rules: str, exceptions: str | None, message: str) -> None:
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "rules.yml").write_text(rules)
    store = tmp_path / "pw.db"
    args = [command, "-i", str(tmp_path / "hosts.yml"), "-b", str(tmp_path / "rules.yml"), "--store",
            f"sqlite:///{store}"]
    if exceptions is not None:
        (tmp_path / "exceptions.yml").write_text(exceptions)
        args += ["-e", str(tmp_path / "exceptions.yml")]
    proc = patchwave(tmp_path, *args)
    stderr = proc.stderr.replace("\n", "")
    assert proc.returncode == 2, proc.stderr
    assert message.format(dir=tmp_path) in stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not store.exists() and not (tmp_path / "state").exists()


RULES_OK = RULES.replace("REMEDIATION", "{type: package_absent, name: telnet}")

BAD_EXCEPTIONS = [
    ("basic format", '"20270101"', "{dir}/exceptions.yml:9: exceptions[0].expires: '20270101' is not a date YYYY-MM-DD"),
    ("week date", '"2027-W01-1"', "{dir}/exceptions.yml:9: exceptions[0].expires: '2027-W01-1' is not a date YYYY-MM-DD"),
    ("ordinal date", '"2027-001"', "{dir}/exceptions.yml:9: exceptions[0].expires: '2027-001' is not a date"),
    ("a number", "20270101", "{dir}/exceptions.yml:9: exceptions[0].expires: 20270101 is not a date YYYY-MM-DD"),
    ("date and time", "2027-01-01 08:00:00", "{dir}/exceptions.yml:9: exceptions[0].expires: '2027-01-01T08:00:00' "
                                             "is a date and time"),
    ("no such day", '"2027-02-29"', "{dir}/exceptions.yml:9: exceptions[0].expires: '2027-02-29' is not a date"),
]


@pytest.mark.parametrize(("what", "expires", "message"), BAD_EXCEPTIONS, ids=[b[0] for b in BAD_EXCEPTIONS])
def test_an_expiry_that_is_not_yyyy_mm_dd_stops_assess(tmp_path: Path, what: str, expires: str, message: str) -> None:
    refused(tmp_path, "assess", RULES_OK, EXCEPTIONS.replace("EXPIRES", expires), message)


def test_a_bad_expiry_stops_remediate_too(tmp_path: Path) -> None:
    refused(tmp_path, "remediate", RULES_OK, EXCEPTIONS.replace("EXPIRES", '"2027-W01-1"'),
            "{dir}/exceptions.yml:9: exceptions[0].expires: '2027-W01-1' is not a date YYYY-MM-DD")


BAD_BASELINES = [
    ("sshd_config edited directly", "{type: config_value, path: /etc/ssh/sshd_config, key: PermitRootLogin, value: 'yes'}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: /etc/ssh/sshd_config: sshd reads /etc/ssh"),
    ("root login with forced commands", "{type: sshd_option, key: PermitRootLogin, value: forced-commands-only}",
     "{dir}/rules.yml:10: rule telnet: remediation.value: PermitRootLogin forced-commands-only"),
    ("root password login", "{type: sshd_option, key: PermitRootLogin, value: 'yes'}",
     "{dir}/rules.yml:10: rule telnet: remediation.value: PermitRootLogin yes lets root log in with a password"),
    ("authorized_keys removed", "{type: file_absent, path: /home/patchwave/.ssh/authorized_keys}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: /home/patchwave/.ssh/authorized_keys: a user's ~/.ssh"),
    ("authorized keys under /etc/ssh", "{type: line, path: /etc/ssh/authorized_keys/root, line: 'ssh-ed25519 AAAA x'}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: /etc/ssh/authorized_keys/root: authorized keys"),
    ("sudoers edited", "{type: line, path: /etc/sudoers, line: 'patchwave ALL=(ALL) ALL'}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: /etc/sudoers: Patchwave never edits or removes /etc/sudoers"),
    ("sudo rights granted", "{type: line, path: /etc/sudoers.d/zz, line: 'mallory ALL=(ALL) NOPASSWD: ALL'}",
     "{dir}/rules.yml:10: rule telnet: remediation.line: Patchwave writes only plain Defaults lines"),
    ("newline smuggled into a value",
     '{type: config_value, path: /etc/login.defs, key: UMASK, value: "027\\nPermitRootLogin yes"}',
     "{dir}/rules.yml:10: rule telnet: remediation.value: holds a control character (U+000A)"),
    ("a path climbing out", "{type: line, path: /etc/cron.d/../sudoers, line: Defaults use_pty}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: '/etc/cron.d/../sudoers' is not a normalised absolute path"),
    ("sshd removed", "{type: file_absent, path: /usr/sbin/sshd}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: /usr/sbin/sshd: /usr/sbin/sshd is sshd; removing it would "
     "lock out the connection user"),
    ("sshd's unit removed", "{type: file_absent, path: /lib/systemd/system/ssh.service}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: /lib/systemd/system/ssh.service: "
     "/lib/systemd/system/ssh.service is sshd's systemd unit; removing it would lock out"),
    ("PAM edited", "{type: line, path: /etc/pam.d/sshd, line: 'auth required pam_deny.so'}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: /etc/pam.d/sshd: /etc/pam.d/sshd is PAM's configuration "
     "(sshd and sudo authenticate through it); changing it could lock out the connection user, so Patchwave reports "
     "the rule and a person fixes it (PAM hardening is out of scope for automatic remediation)"),
    ("a session limit", "{type: line, path: /etc/security/limits.d/zz.conf, line: '* hard maxlogins 0'}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: /etc/security/limits.d/zz.conf: "),
    ("the name service", "{type: config_value, path: /etc/nsswitch.conf, key: passwd, value: nis}",
     "{dir}/rules.yml:10: rule telnet: remediation.path: /etc/nsswitch.conf: /etc/nsswitch.conf is the name service "
     "configuration"),
]


@pytest.mark.parametrize(("what", "remediation", "message"), BAD_BASELINES, ids=[b[0] for b in BAD_BASELINES])
def test_a_baseline_that_asks_for_a_lock_out_stops_remediate(tmp_path: Path, what: str, remediation: str,
                                                            message: str) -> None:
    refused(tmp_path, "remediate", RULES.replace("REMEDIATION", remediation), None, message)


MODE_RULES = """\
version: 1
name: tiny
rules:
  - id: modes
    title: permissions are tight
    severity: medium
    rationale: Loose permissions leak data.
    references: {nist: [AC-6]}
    check: CHECK
    remediation: {type: file_mode}
"""

BAD_MODES = [
    ("sudo loses its setuid bit", "{type: file_mode, paths: [/etc/cron.d/x, /usr/bin/sudo], mode: '0755'}",
     "{dir}/rules.yml:9: rule modes: check.paths[1]: /usr/bin/sudo: reaches sudo (the connection's become; it needs "
     "its setuid bit); Patchwave never changes its mode or owner, which would lock out the connection user"),
    ("homes lose their owner's bits", "{type: file_mode, paths: [/home/*], mode: '0600'}",
     "{dir}/rules.yml:9: rule modes: check.paths[0]: /home/*: a home directory; mode 0600 takes its owner's read, "
     "write or search bit and would lock its user out"),
    ("/home chmod", "{type: file_mode, paths: [/home], mode: '0700'}",
     "{dir}/rules.yml:9: rule modes: check.paths[0]: /home: a system directory, /dev or a directory above the home "
     "directories"),
]


@pytest.mark.parametrize(("what", "check", "message"), BAD_MODES, ids=[b[0] for b in BAD_MODES])
def test_a_chmod_that_could_shut_users_out_stops_remediate(tmp_path: Path, what: str, check: str, message: str) -> None:
    refused(tmp_path, "remediate", MODE_RULES.replace("CHECK", check), None, message)


def test_a_hostile_baseline_stops_assess_and_compile_as_well(tmp_path: Path) -> None:
    """Not only remediate: the rules a plain ansible-playbook run would get are never written."""
    rules = RULES.replace("REMEDIATION", "{type: sshd_option, key: PermitRootLogin, value: forced-commands-only}")
    refused(tmp_path, "assess", rules, None, "{dir}/rules.yml:10: rule telnet: remediation.value:")
    (tmp_path / "rules.json").unlink(missing_ok=True)
    proc = patchwave(tmp_path, "assess", "-i", str(tmp_path / "hosts.yml"), "-b", str(tmp_path / "rules.yml"),
                     "--compile", str(tmp_path / "rules.json"))
    assert proc.returncode == 2 and "rules.yml:10: rule telnet: remediation.value:" in proc.stderr.replace("\n", "")
    assert not (tmp_path / "rules.json").exists()


EMPTY_FILES = [
    ("nothing", ""),
    ("only comments", "# everything was deleted by a bad merge\n"),
    ("null", "null\n"),
    ("a document marker", "---\n"),
]


@pytest.mark.parametrize(("what", "text"), EMPTY_FILES, ids=[e[0] for e in EMPTY_FILES])
def test_an_empty_baseline_is_refused_not_read_as_no_rules(tmp_path: Path, what: str, text: str) -> None:
    refused(tmp_path, "assess", text, None, "{dir}/rules.yml:1: empty baseline file")


@pytest.mark.parametrize(("what", "text"), EMPTY_FILES, ids=[e[0] for e in EMPTY_FILES])
def test_an_empty_exceptions_register_is_refused(tmp_path: Path, what: str, text: str) -> None:
    refused(tmp_path, "assess", RULES_OK, text, "{dir}/exceptions.yml:1: empty exceptions register file")


def test_an_alias_bomb_in_a_baseline_is_refused_quickly(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
    refused(tmp_path, "assess", bomb, None, "{dir}/rules.yml:")
