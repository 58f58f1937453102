"""Asset revisits on the lab through the CLI: the first discovery sees every host; hosts added
to the inventory afterwards are detected and handled by their group's new-device policy (observe:
scanned and assessed at once; patch-now: an out-of-cycle mini cycle installs its approved fixes,
for real); a host removed from the inventory is marked gone; the compliance workbook lists the
changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from conftest import ROOT, installed_versions
from openpyxl import load_workbook

from patchwave.lab.catalog import installed_version, update_version
from patchwave.store import Store

PATCHWAVE = str(Path(sys.executable).parent / "patchwave")
SCHEDULE = """\
jobs:
  - {name: discovery, kind: discover, every: 1h}
new_devices:
  default: next-cycle
  groups: {workstations: observe, db: patch-now, web: remediate-now}
"""


def without(hosts: set[str], target: Path) -> Path:
    """The lab inventory with hosts left out (as if not added yet, or retired)."""
    data = yaml.safe_load((ROOT / "inventories/lab/hosts.yml").read_text())

    def prune(group: dict[str, Any]) -> None:
        for host in hosts:
            (group.get("hosts") or {}).pop(host, None)
        for child in (group.get("children") or {}).values():
            if isinstance(child, dict):
                prune(child)

    prune(data["all"])
    target.write_text(yaml.safe_dump(data))
    return target


def pw(*args: str, store: str) -> Any:
    proc = subprocess.run([PATCHWAVE, *args, "--json", "--store", store], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_new_host_detected_and_observed_removed_host_gone(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab.down()
    lab.up()  # fresh hosts at the old versions (the demo before this test patched them)
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    schedule = tmp_path / "schedule.yml"
    schedule.write_text(SCHEDULE)
    lab_hosts = {h.name for h in lab.hosts()}
    workstations = {h.name for h in lab.hosts() if "workstations" in h.groups}
    databases = {h.name: h for h in lab.hosts() if "db" in h.groups}
    assert all(installed_versions(h.container)["pw-libssl"] == installed_version("pw-libssl", h.release)
               for h in databases.values())
    web = {h.name for h in lab.hosts() if "web" in h.groups}
    later = {"ws1", "web2", *databases}

    def decision(host: str) -> str:
        return ("observe" if host in workstations else "patch-now" if host in databases
                else "remediate-now" if host in web else "next-cycle")

    first = pw("discover", "-i", str(without(later, tmp_path / "before.yml")), "-s", str(schedule), store=url)
    assert {c["host"]: c["decision"] for c in first["changes"]} == {h: decision(h) for h in lab_hosts - later}

    second = pw("discover", "-i", str(ROOT / "inventories/lab/hosts.yml"), "-s", str(schedule), store=url)
    assert sorted((c["host"], c["kind"], c["decision"]) for c in second["changes"]) == sorted(
        (h, "new", decision(h)) for h in later)
    acted = {a["host"]: a["outcome"] for a in second["acted"]}
    assert acted["ws1"].startswith("scanned (")
    # remediate-now: the shipped baseline's failing rules with a remediation were fixed on web2
    before, after = (float(x.rstrip("%")) for x in acted["web2"].removeprefix("remediated: score ").split(" -> "))
    assert after > before
    store = Store(url)
    for name, host in databases.items():
        assert acted[name].startswith("patched out of cycle in ") and acted[name].endswith("(completed)")
        # the critical fix, installed for real, in the version for the host's release
        assert installed_versions(host.container)["pw-libssl"] == update_version("pw-libssl", host.release)
    # one mini cycle per new database host, each for that host alone
    assert sorted(tuple(e["host"] for e in store.rows("end_states", cycle_id=c["id"])) for c in store.rows("cycles")) \
        == sorted((name,) for name in databases)
    scanned = {r["host"] for r in store.rows("scans", kind="scan", cycle_id=None, columns=("host",))}
    assert scanned == workstations  # scans outside any cycle: only the observed hosts
    assessed = store.last_times()["ws1"]
    assert "assessed" in assessed and "scanned" in assessed  # observed for real, over SSH

    third = pw("discover", "-i", str(without({"web2"}, tmp_path / "after.yml")), "-s", str(schedule), store=url)
    assert [(c["host"], c["kind"]) for c in third["changes"]] == [("web2", "gone")]
    overdue = pw("hosts", "--overdue", "-i", str(ROOT / "inventories/lab/hosts.yml"), store=url)
    assessed = workstations | web  # observed, or assessed around their remediation
    assert {r["host"] for r in overdue} == lab_hosts - assessed

    book = pw("report", "--type", "compliance", "-o", str(tmp_path / "c.xlsx"), store=url)["workbooks"][0]["workbook"]
    rows = list(load_workbook(book)["Asset changes"].iter_rows(values_only=True))
    changes = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    ws1 = next(c for c in changes if c["Host"] == "ws1")
    assert ws1["New-device decision"] == "observe" and ws1["Outcome"].startswith("scanned (")
    assert any(c["Host"] == "web2" and c["Change"] == "gone" for c in changes)
