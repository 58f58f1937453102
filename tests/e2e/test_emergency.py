"""Out-of-cycle emergency: a manifest of just the named fix, recorded as such."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, installed_versions

from patchwave.lab.catalog import installed_version, update_version

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")


def test_emergency_cycle_installs_only_the_named_fix(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab.down()
    lab.up()
    db = tmp_path / "pw.db"
    proc = subprocess.run([PATCHWAVE, "cycle", "run", "--emergency", "--advisory", "CVE-2026-10002", "--json",
                           "--store", f"sqlite:///{db}"], capture_output=True, text=True, cwd=ROOT, check=False,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads(proc.stdout)
    for host in lab.hosts():
        result = next(h for h in status["hosts"] if h["host"] == host.name)
        assert [p["name"] for p in result["packages"]] == ["pw-kernel"]
        assert result["state"] == "patched"  # rebooted: the kernel fix asked for it
        versions = installed_versions(host.container)
        assert (versions["pw-kernel"], versions["pw-libssl"]) == (update_version("pw-kernel", host.release),
                                                                  installed_version("pw-libssl", host.release))
    with sqlite3.connect(db) as conn:
        logged = [m for (m,) in conn.execute("SELECT message FROM events WHERE kind = 'emergency'")]
    assert logged == ["out-of-cycle emergency for CVE-2026-10002"]

    # and on demand, the whole cycle is rolled back: exact old versions, confirmed by a rescan
    back = subprocess.run([PATCHWAVE, "cycle", "rollback", status["cycle_id"], "--json", "--store", f"sqlite:///{db}"],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=1800)
    assert back.returncode == 0, back.stderr[-3000:]
    rolled = json.loads(back.stdout)
    assert rolled["status"] == "rolled-back"
    assert {h["state"] for h in rolled["hosts"]} == {"rolled-back"}
    for host in lab.hosts():
        assert installed_versions(host.container)["pw-kernel"] == installed_version("pw-kernel", host.release)
    scan = subprocess.run([PATCHWAVE, "scan", "--json", "--store", f"sqlite:///{db}"], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=600)
    assert scan.returncode == 0, scan.stderr[-2000:]
    releases = {h.name: h.release for h in lab.hosts()}
    for entry in json.loads(scan.stdout):
        kernel = next(u for u in entry["updates"] if u["name"] == "pw-kernel")
        release = releases[entry["host"]]
        assert (kernel["installed"], kernel["candidate"]) == (installed_version("pw-kernel", release),
                                                              update_version("pw-kernel", release))


def test_unknown_emergency_advisory_starts_nothing(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "pw.db"
    proc = subprocess.run([PATCHWAVE, "cycle", "run", "--emergency", "--advisory", "CVE-1999-0001", "--store",
                           f"sqlite:///{db}"], capture_output=True, text=True, cwd=ROOT, check=False, timeout=300)
    assert proc.returncode == 2
    assert "--advisory CVE-1999-0001: not in the advisory sources" in proc.stderr.replace("\n", " ")
    assert not db.exists()
