"""The demo end to end: it really changed the hosts, as read inside the containers with dpkg,
and the store, `cycle status --json` and the workbook all tell the same story."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, installed_versions
from openpyxl import load_workbook

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")


def test_demo_patches_the_fleet_in_two_waves(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    proc = subprocess.run([PATCHWAVE, "demo", "--json", "--store", store], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    demo = json.loads(proc.stdout)
    assert demo["status"] == "completed"
    assert [w["name"] for w in demo["waves"]] == ["canary", "broad"]
    assert len(demo["waves"][0]["hosts"]) == 1
    assert all(w["status"] == "passed" for w in demo["waves"])

    by_host = {h["host"]: h for h in demo["hosts"]}
    assert set(by_host) == {h.name for h in lab.hosts()}
    patched = 0
    for host in lab.hosts():
        result = by_host[host.name]
        on_host = installed_versions(host.container)
        for package in result["packages"]:
            # what dpkg says inside the container is what the manifest asked for
            assert on_host.get(package["name"]) == package["wanted"] == package["after"], (host.name, package)
            patched += 1
        if result["packages"]:
            assert result["state"] == "patched"
        assert on_host["pw-pinned"] == "1.0-1"  # held: never touched
        assert on_host["pw-tzdata"] == "2026a-1"  # regular update: not approved by the default policy
    assert patched >= len(by_host)  # every host had something to patch

    status = subprocess.run([PATCHWAVE, "cycle", "status", "--json", "--store", store], capture_output=True,
                            text=True, cwd=ROOT, check=True)
    stored = json.loads(status.stdout)
    assert stored["cycle_id"] == demo["cycle_id"]
    assert {h["host"]: (h["state"], h["packages"]) for h in stored["hosts"]} == {
        h["host"]: (h["state"], h["packages"]) for h in demo["hosts"]}

    workbook = Path(demo["workbook"])
    assert workbook.is_file() and workbook.parent == ROOT / "output"
    wb = load_workbook(workbook)
    assert {"Summary", "Hosts"} | set(by_host) <= set(wb.sheetnames)
    for name, result in by_host.items():
        rows = list(wb[name].iter_rows(values_only=True))
        for package in result["packages"]:
            assert (package["name"], package["before"], package["wanted"], package["after"]) in [r[:4] for r in rows]

    # the baseline assessment of the patched lab: every host assessed, stored, in its workbook
    assessment = demo["assessment"]
    assert {h["host"] for h in assessment["hosts"]} == set(by_host)
    assert all(h["ok"] and h["summary"]["total"] >= 80 and h["summary"]["error"] == 0 for h in assessment["hosts"])
    book = load_workbook(assessment["workbook"])
    assert book.sheetnames == ["Hosts", "Failing rules"]
    scores = {r[0]: r[4] for r in book["Hosts"].iter_rows(min_row=2, values_only=True)}
    assert scores == {h["host"]: h["score"] for h in assessment["hosts"]}
    failing = list(book["Failing rules"].iter_rows(min_row=2, values_only=True))
    assert sum(h["summary"]["fail"] + h["summary"]["error"] for h in assessment["hosts"]) == len(
        [r for r in failing if r[4] in ("fail", "error")])

    # and every standard workbook, written from what the demo stored
    kinds = sorted(Path(book).name.split("-")[0] for book in demo["reports"])
    assert kinds == ["compliance", "cycle", "owner", "patch", "trend", "vendor"]
    patch_book = load_workbook(next(b for b in demo["reports"] if Path(b).name.startswith("patch-")))
    patches = list(patch_book["Patches"].iter_rows(min_row=2, values_only=True))
    assert len(patches) == sum(len(h["packages"]) for h in demo["hosts"])
