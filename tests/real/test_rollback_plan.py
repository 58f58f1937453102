"""A rollback that cannot be exact says so before touching anything: after the real updates are
installed, an admin installs a package that needs the new version of one of them. apt's plan
for the rollback would have to remove that package too, so the module refuses, changes nothing
and the host stays consistent at the new versions. Once the package is gone, the same rollback
is exact."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from conftest import installed_versions, podman_exec, run_module
from reallab import INVENTORY, health, healthy, pending

CYCLE = "plan-refuses"
NEEDS_NEW = "pw-needs-new"


def build_dependent(tmp_path: Path, name: str, version: str) -> Path:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {NEEDS_NEW}\nVersion: 1.0\nArchitecture: all\nMaintainer: Patchwave tests <t@patchwave.invalid>\n"
        f"Depends: {name} (= {version})\nDescription: needs the patched {name}\n")
    out = tmp_path / f"{NEEDS_NEW}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)], check=True, capture_output=True)
    return out


def test_rollback_that_cannot_be_exact_changes_nothing(real_lab: Any, tmp_path: Path) -> None:
    host = next(h for h in real_lab.hosts() if h.name == "d13-http")
    c = host.container
    before = installed_versions(c)
    updates = pending(c)
    specs = [f"{n}={v}" for n, v in sorted(updates.items())]
    assert run_module(host.name, "patchwave.endpoint.stage_updates", {"cycle_id": CYCLE, "packages": specs},
                      inventory=INVENTORY)["failed"] is False
    applied = run_module(host.name, "patchwave.endpoint.apply_updates", {"packages": specs}, inventory=INVENTORY)
    assert applied["failed"] is False, applied.get("msg")
    patched = installed_versions(c)
    try:
        name = sorted(updates)[0]
        deb = build_dependent(tmp_path, name, updates[name])
        subprocess.run(["podman", "cp", str(deb), f"{c}:/tmp/{deb.name}"], check=True, env=real_lab_env(real_lab))
        podman_exec(c, "dpkg", "-i", f"/tmp/{deb.name}")

        refused = run_module(host.name, "patchwave.endpoint.rollback_updates", {"cycle_id": CYCLE}, inventory=INVENTORY)
        assert refused["failed"] is True
        assert "exact rollback is impossible" in str(refused["msg"]) and NEEDS_NEW in str(refused["msg"]), refused["msg"]
        now = installed_versions(c)
        assert {n: now.get(n) for n in updates} == {n: patched[n] for n in updates}  # nothing was touched
        assert healthy(health(host, real_lab))

        podman_exec(c, "dpkg", "--purge", NEEDS_NEW)
        done = run_module(host.name, "patchwave.endpoint.rollback_updates", {"cycle_id": CYCLE}, inventory=INVENTORY)
        assert done["failed"] is False, done.get("msg")
        assert installed_versions(c) == before
        assert healthy(health(host, real_lab))
    finally:
        podman_exec(c, "sh", "-c", f"dpkg --purge {NEEDS_NEW} >/dev/null 2>&1; apt-get clean; "
                    f"rm -rf /var/lib/patchwave/cycles/{CYCLE} /tmp/{NEEDS_NEW}_1.0_all.deb")


def real_lab_env(lab: Any) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(lab.paths.containers_conf)}
