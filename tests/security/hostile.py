"""Running the real `patchwave` command on hostile input, and what every refusal must show: exit
code 2, the file and line, the problem in words, no traceback, and nothing stored or written.

Each case runs the CLI's own entry point (`patchwave.cli.main`, the console script's target)
in this process, with argv, environment and working directory set as a user's shell would set
them: ~1 s for the whole policy suite instead of ~1 s per case as a subprocess. Set
PATCHWAVE_HOSTILE_SUBPROCESS=1 to run every case through `.venv/bin/patchwave` instead (the
suites also run a few cases that way on every run, so both ways are always exercised).

Everything a case may create lives in its tmp_path: the store (PATCHWAVE_STORE), Patchwave's
state and output directories, and Ansible's home, temporary files and control sockets.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATCHWAVE = Path(sys.executable).parent / "patchwave"
SUBPROCESS = os.environ.get("PATCHWAVE_HOSTILE_SUBPROCESS") == "1"

# hosts that need not exist: nothing in these suites may get as far as contacting one (and if a
# bug let it, port 9 on the loopback refuses at once)
INVENTORY = """\
all:
  vars:
    ansible_host: 127.0.0.1
    ansible_port: 9
    ansible_user: nobody
  children:
    web:
      hosts:
        web1: {patchwave_owner: team-web, patchwave_device_type: server}
        web2: {patchwave_owner: team-web, patchwave_device_type: server}
    db:
      hosts:
        db1: {patchwave_owner: team-db, patchwave_device_type: server, patchwave_criticality: 5}
    workstations:
      hosts:
        ws1: {patchwave_owner: alice, patchwave_device_type: workstation}
"""

# a value that would leave a file behind if anything ever rendered it as a Jinja template
MARKER_NAME = "MARKER"


def jinja(tmp: Path) -> str:
    return "{{ lookup('pipe', 'touch " + str(tmp / MARKER_NAME) + "') }}"


@dataclass(frozen=True)
class Case:
    """One hostile file: its content, the words the refusal must contain and the line it must
    name (None where there is no line to name: the file is missing or unreadable)."""

    id: str
    text: str | bytes
    expect: str
    line: int | None = 1
    xfail: str | None = None  # "owner: <file>: <what is wrong>" for a bug in a file this suite does not own
    code: int = 2


def params(cases: Iterable[Case]) -> list[Any]:
    out = []
    for case in cases:
        marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def flat(self) -> str:
        """The output with every run of whitespace (and rich's box drawing) made one space."""
        return " ".join(re.sub(r"[│╭╮╰╯─]", " ", self.output).split())


class Sandbox:
    """A tmp_path with an inventory, where the store, state and output would go."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = tmp_path
        self.store = tmp_path / "store.db"
        self.url = f"sqlite:///{self.store}"
        self.output = tmp_path / "output"
        self.marker = tmp_path / MARKER_NAME
        self.inventory = self.write("inventory.yml", INVENTORY)
        self.env = {
            "PATCHWAVE_ROOT": str(ROOT),
            "PATCHWAVE_STORE": self.url,
            "PATCHWAVE_STATE_DIR": str(tmp_path / "state"),
            "PATCHWAVE_OUTPUT_DIR": str(self.output),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_HOME": str(tmp_path / "ansible"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible" / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "ansible" / "cp"),
            "COLUMNS": "140",
        }
        self.unset = ("PATCHWAVE_NOTIFY", "PATCHWAVE_SCHEDULE", "PATCHWAVE_USER")
        self._monkeypatch = monkeypatch

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")
        return path

    def run(self, *args: str | Path, subprocess_: bool = SUBPROCESS) -> Result:
        argv = [str(a) for a in args]
        return self._subprocess(argv) if subprocess_ else self._in_process(argv)

    def _subprocess(self, argv: list[str]) -> Result:
        env = {k: v for k, v in os.environ.items() if k not in self.unset} | self.env
        proc = subprocess.run([str(PATCHWAVE), *argv], capture_output=True, text=True, cwd=self.dir, env=env,
                              check=False, timeout=300)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def _in_process(self, argv: list[str]) -> Result:
        from patchwave import cli

        mp = self._monkeypatch
        for name in self.unset:
            mp.delenv(name, raising=False)
        for name, value in self.env.items():
            mp.setenv(name, value)
        mp.chdir(self.dir)
        mp.setattr(sys, "argv", ["patchwave", *argv])
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001 - what a user would see as a traceback is what the test looks for
                traceback.print_exc()
                code = 1
        return Result(code, out.getvalue(), err.getvalue())

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table of the store (to prove a refused command changed nothing)."""
        with contextlib.closing(sqlite3.connect(self.store)) as conn:
            tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table' order by name")]
            return {t: sorted(conn.execute(f'select * from "{t}"').fetchall(), key=repr)  # noqa: S608 - table names from sqlite_master
                    for t in tables}

    def seed_store(self) -> dict[str, list[tuple[Any, ...]]]:
        """A store with a cycle waiting at a manual gate (wave 'pilot'), and an agent token;
        returns its dump."""
        from patchwave.store import Store

        store = Store(self.url)
        store.create_cycle("C1", str(self.inventory), {"name": "monthly"})
        store.plan_waves("C1", [(0, "canary", ["web1"]), (1, "pilot", ["web2", "db1"])])
        store.set_wave_status(store.waves("C1")[1]["id"], "awaiting-approval")
        for status in ("approved", "deploying", "awaiting-approval"):  # the moves a real cycle makes to get there
            store.set_cycle_status("C1", status)
        store.set_agent_token("web1", "0" * 64)
        store.engine.dispose()
        return self.dump()


def assert_refused(result: Result, box: Sandbox, path: Path | None, case: Case | None = None, *,
                   expect: str | None = None, line: int | None = None, code: int = 2,
                   store_before: dict[str, list[tuple[Any, ...]]] | None = None) -> None:
    """The refusal a user must see: the exit code, `file:line:` (when there is a file and a
    line), the problem in words, no traceback; no store created (or, given `store_before`,
    the store unchanged), no workbook or unit written, no template rendered."""
    if case is not None:
        expect, line, code = case.expect, case.line, case.code
    shown = result.output
    assert "Traceback" not in shown, shown
    assert result.code == code, f"exit {result.code}, wanted {code}:\n{shown}"
    if expect is not None:
        assert expect.lower() in result.flat.lower(), f"{expect!r} not in:\n{shown}"
    if path is not None:
        where = f"{path}:{line}:" if line is not None else f"{path}"
        assert where in shown.replace("\n", ""), f"{where!r} not in:\n{shown}"
    if store_before is None:
        assert not box.store.exists(), f"the store was created:\n{shown}"
    else:
        assert box.dump() == store_before, "the store changed"
    assert not box.output.exists() or not any(box.output.iterdir()), "something was written to output/"
    assert not box.marker.exists(), "a template was rendered"


def lines(*items: str) -> str:
    return "".join(f"{item}\n" for item in items)


def alias_bomb(levels: int = 9) -> str:
    """The classic "billion laughs": ~300 bytes that stand for 9**levels strings (387 million)."""
    names = "abcdefghijkl"[:levels]
    out = [f"{names[0]}: &{names[0]} [" + ",".join(["lol"] * 9) + "]"]
    out += [f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]" for prev, name in itertools.pairwise(names)]
    return lines(*out)


def huge(megabytes: int = 11) -> str:
    """A file over the size limit that is otherwise well-formed YAML (comments)."""
    row = "# " + "x" * 1021 + "\n"
    return row * (megabytes * 1024)


def cases_by_id(cases: Sequence[Case]) -> dict[str, Case]:
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return {c.id: c for c in cases}
