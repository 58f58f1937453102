"""The boundary between the orchestrator and ansible-playbook, checked with real runs on the
controller itself (local connection, no lab): extra vars are inert text, the environment is an
allow-list with host key checking on, run directories are private and pruned."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from conftest import ROOT

from patchwave.ansible.runner import PlaybookRunner, Retention, inert, prune_artifacts, run_environment

PAYLOADS = [
    "{{ lookup('ansible.builtin.pipe', 'touch MARKER_PATH') }}",
    "{% set x = lookup('ansible.builtin.pipe', 'touch MARKER_PATH') %}",
    "prefix {{ query('ansible.builtin.pipe', 'touch MARKER_PATH') }} suffix",
]

PLAYBOOK = """\
- name: Use every kind of value the roles use
  hosts: all
  gather_facts: false
  tasks:
    - name: Text into a module argument
      ansible.builtin.debug:
        msg: "{{ text }}"
    - name: A list of mappings, filtered as the health role does
      ansible.builtin.debug:
        msg: "{{ checks | selectattr('http', 'defined') | map(attribute='http') | list }}"
    - name: A value compared in a condition
      ansible.builtin.debug:
        msg: "{{ mode == 'always' }} {{ count + 1 }}"
      when: mode == 'always'
"""


@pytest.fixture
def local(tmp_path: Path) -> tuple[Path, Path]:
    playbook = tmp_path / "values.yml"
    playbook.write_text(PLAYBOOK)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("controller ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
    return playbook, inventory


@pytest.mark.parametrize("payload", PAYLOADS)
def test_template_text_in_extra_vars_is_inert(local: tuple[Path, Path], tmp_path: Path, payload: str) -> None:
    playbook, inventory = local
    marker = tmp_path / "MARKER"
    text = payload.replace("MARKER_PATH", str(marker))
    runner = PlaybookRunner(ROOT, tmp_path / "runs")
    result = runner.run(str(playbook), inventory, ident="inert",
                        extravars={"text": text, "checks": [{"http": text}], "mode": "always", "count": 2})
    assert result.status == "successful", result
    assert not marker.exists()
    stdout = (tmp_path / "runs" / "inert" / "artifacts" / "run" / "stdout").read_text()
    assert "True 3" in stdout  # plain values still work as values
    events = (tmp_path / "runs" / "inert" / "artifacts" / "run" / "job_events")
    echoed = [json.loads(p.read_text()).get("event_data", {}).get("res", {}).get("msg") for p in events.iterdir()]
    assert text in echoed  # passed on as the characters it is


def test_the_environment_is_an_allow_list_with_host_key_checking(local: tuple[Path, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    playbook, inventory = local
    monkeypatch.setenv("PATCHWAVE_STORE", "postgresql://pw:store-password-1@db/pw")
    monkeypatch.setenv("JIRA_TOKEN", "jira-token-2")
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")
    runner = PlaybookRunner(ROOT, tmp_path / "runs")
    result = runner.run(str(playbook), inventory, ident="env", extravars={"text": "x", "checks": [], "mode": "no",
                                                                        "count": 0})
    assert result.status == "successful"
    run_dir = tmp_path / "runs" / "env"
    written = "\n".join(p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file())
    assert "store-password-1" not in written and "jira-token-2" not in written
    command = json.loads((run_dir / "artifacts" / "run" / "command").read_text())
    assert command["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert "PATCHWAVE_STORE" not in command["env"] and "JIRA_TOKEN" not in command["env"]
    assert command["env"]["ANSIBLE_CONFIG"] == str(ROOT / "ansible.cfg")


def test_run_environment_keeps_what_runs_need() -> None:
    outer = {"PATH": "/bin", "HOME": "/root", "LC_ALL": "C", "ANSIBLE_VAULT_PASSWORD_FILE": "/v", "SECRET": "s",
             "PATCHWAVE_STORE": "postgresql://u:p@h/d", "SSH_AUTH_SOCK": "/a", "ANSIBLE_HOST_KEY_CHECKING": "0"}
    given = {**outer, "PYTHONPATH": "/runner/callbacks", "PATCHWAVE_RUN": "c1:1"}
    env = run_environment(given, outer)
    assert env == {"PATH": "/bin", "HOME": "/root", "LC_ALL": "C", "ANSIBLE_VAULT_PASSWORD_FILE": "/v",
                   "SSH_AUTH_SOCK": "/a", "ANSIBLE_HOST_KEY_CHECKING": "True", "PYTHONPATH": "/runner/callbacks",
                   "PATCHWAVE_RUN": "c1:1", "ANSIBLE_PARAMIKO_HOST_KEY_AUTO_ADD": "False"}


def test_pass_env_adds_what_the_team_names() -> None:
    outer = {"PATH": "/bin", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "VAULT_ADDR": "v", "OTHER": "o",
             "PATCHWAVE_PASS_ENV": "AWS_*, VAULT_ADDR"}
    env = run_environment(dict(outer), outer)
    assert env == {"PATH": "/bin", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "VAULT_ADDR": "v",
                   "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PARAMIKO_HOST_KEY_AUTO_ADD": "False"}


def test_credentials_and_checking_off_do_not_pass() -> None:
    from patchwave.errors import PatchwaveError

    outer = {"ANSIBLE_GALAXY_TOKEN": "t", "ANSIBLE_BECOME_PASSWORD": "p", "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto"}
    assert run_environment(dict(outer), outer) == {"ANSIBLE_SSH_ARGS": "-o ControlMaster=auto",
                                                   "ANSIBLE_HOST_KEY_CHECKING": "True",
                                                   "ANSIBLE_PARAMIKO_HOST_KEY_AUTO_ADD": "False"}
    for args in ("-o StrictHostKeyChecking=no", "-oStrictHostKeyChecking no", "-o UserKnownHostsFile=/dev/null",
                 "-o stricthostkeychecking=accept-new"):
        for name in ("ANSIBLE_SSH_ARGS", "ANSIBLE_SSH_COMMON_ARGS", "ANSIBLE_SSH_EXTRA_ARGS"):
            with pytest.raises(PatchwaveError, match="turns SSH host key checking off"):
                run_environment({name: args}, {name: args})


def test_inert_marks_every_string_and_only_strings() -> None:
    assert inert({"a": "{{ x }}", "b": [1, "y", {"c": None, "d": True}], "e": 2.5}) == {
        "a": {"__ansible_unsafe": "{{ x }}"}, "b": [1, {"__ansible_unsafe": "y"}, {"c": None, "d": True}], "e": 2.5}


def test_run_directories_are_private_and_old_ones_pruned(local: tuple[Path, Path], tmp_path: Path) -> None:
    playbook, inventory = local
    state = tmp_path / "state"
    old = state / "cycles" / "c-old" / "runs" / "02-stage"
    (old / "artifacts").mkdir(parents=True)
    (old / "env").mkdir()
    (old / "env" / "extravars").write_text("{}")
    manifest = state / "cycles" / "c-old" / "manifest.json"
    manifest.write_text("{}")
    month_ago = time.time() - 30 * 86400
    for path in [old / "env" / "extravars", old / "env", old / "artifacts", old]:
        os.utime(path, (month_ago, month_ago))
    runner = PlaybookRunner(ROOT, state / "cycles" / "c-new" / "runs", retention=Retention(state, 14))
    runner.run(str(playbook), inventory, ident="01-scan", extravars={"text": "", "checks": [], "mode": "", "count": 0})
    assert not old.exists() and manifest.exists()  # only the run directory goes; the cycle's own files stay
    new = state / "cycles" / "c-new" / "runs" / "01-scan"
    assert new.is_dir()
    for path in (state, new.parent, new):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert prune_artifacts(state, 0, keep=new) == []  # the run in hand is kept even with no retention
    assert prune_artifacts(state, 0) == [new]
