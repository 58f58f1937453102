"""Bad input: a clear message naming the file, exit code 2, and nothing stored or changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, inspect

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")


def patchwave(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PATCHWAVE, *args], capture_output=True, text=True, cwd=cwd, check=False, timeout=120)


def test_missing_inventory_names_the_file(tmp_path: Path) -> None:
    store = tmp_path / "pw.db"
    proc = patchwave("cycle", "run", "-i", str(tmp_path / "nope.yml"), "--store", f"sqlite:///{store}",
                     cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2
    assert "nope.yml: inventory not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_broken_advisory_stops_the_cycle_before_anything_is_stored(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    advisories = tmp_path / "adv"
    advisories.mkdir()
    (advisories / "bad.json").write_text('{"id": "X-1",\n "affected": [\n}')
    store = tmp_path / "pw.db"
    proc = patchwave("cycle", "run", "-i", str(inventory), "--advisories", str(advisories), "--store",
                     f"sqlite:///{store}", cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2, proc.stderr
    assert "bad.json:3: invalid JSON" in proc.stderr.replace("\n", "")
    engine = create_engine(f"sqlite:///{store}")
    if "cycles" in inspect(engine).get_table_names():
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select count(*) from cycles").scalar() == 0


def test_unknown_cycle_is_a_clear_error(tmp_path: Path) -> None:
    proc = patchwave("cycle", "status", "no-such-cycle", "--store", f"sqlite:///{tmp_path / 'pw.db'}",
                     cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2
    assert "no cycle 'no-such-cycle'" in proc.stderr


def test_unusable_store_url_is_a_clear_error(tmp_path: Path) -> None:
    proc = patchwave("cycle", "status", "--store", "nosuchdb://x", cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2
    assert "store URL" in proc.stderr and "Traceback" not in proc.stderr


def _isolated(tmp_path: Path) -> dict[str, str]:
    """Everything a command may write, in tmp_path (state, output, Ansible's home and sockets)."""
    import os

    return dict(os.environ, PATCHWAVE_STATE_DIR=str(tmp_path / "state"), PATCHWAVE_OUTPUT_DIR=str(tmp_path / "output"),
                ANSIBLE_HOME=str(tmp_path / "ansible"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible" / "tmp"),
                ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp_path / "ansible" / "cp"))


def test_plan_exits_1_when_a_host_cannot_be_scanned_and_still_shows_the_plan(tmp_path: Path) -> None:
    import json

    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1, ansible_port: 9, ansible_user: nobody}\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([PATCHWAVE, "cycle", "plan", "-i", str(inventory), "--json"], capture_output=True, text=True,
                          cwd=root, env=_isolated(tmp_path), check=False, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["unscanned"] == ["h1"]  # the plan is still printed, for the hosts that answered
    assert "1 of 1 host(s) could not be scanned" in proc.stderr and "h1" in proc.stderr
    assert "Traceback" not in proc.stderr
