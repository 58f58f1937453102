"""Real-content benchmark: on the real-content lab (Debian 11, 12 and 13 hosts, the security
archive's real updates pending, through http, file: and copy:), Patchwave's stage + deploy
playbooks against a plain playbook running `apt-get dist-upgrade` of the same updates on the same
hosts, both `serial: [1, "100%"]`, and Patchwave's rollback of all of it. Prints seconds and the
ratios; never fails on a timing.

    .venv/bin/python tests/bench/bench_real.py [rounds]

Before every timed run the lab is recreated (lab down/up --content real, not timed), so each one
starts from the main suite's versions.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventories/lab-real/hosts.yml"
CONF = ROOT / "orchestrator/src/patchwave/lab/data/containers.conf"


def env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_HOST_KEY_CHECKING="True",
                CONTAINERS_CONF=str(CONF), PATH=f"{BIN}:{os.environ.get('PATH', '')}")


def fresh_lab() -> list[dict[str, object]]:
    subprocess.run([str(BIN / "patchwave"), "lab", "down", "--content", "real"], cwd=ROOT, env=env(), check=True,
                   capture_output=True)
    up = subprocess.run([str(BIN / "patchwave"), "lab", "up", "--content", "real", "--json"], cwd=ROOT, env=env(),
                        check=True, capture_output=True, text=True)
    hosts: list[dict[str, object]] = json.loads(up.stdout)["hosts"]
    return hosts


def pending(container: str) -> list[str]:
    out = subprocess.run(["podman", "exec", container, "apt-get", "-s", "-q", "dist-upgrade"], env=env(), check=True,
                         capture_output=True, text=True).stdout
    return [f"{n}={v}" for n, v in re.findall(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ", out, re.M)]


def playbook(name: str, *args: str) -> float:
    started = time.monotonic()
    subprocess.run([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), name, *args], cwd=ROOT, env=env(), check=True,
                   capture_output=True)
    return time.monotonic() - started


def ours(tmp: Path) -> tuple[float, float, float, int]:
    hosts = fresh_lab()
    packages = {str(h["name"]): pending(str(h["container"])) for h in hosts}
    manifest = tmp / "bench-real-manifest.json"
    manifest.write_text(json.dumps({"cycle_id": "bench-real", "hosts": {n: {"packages": p} for n, p in packages.items()}}))
    extra = json.dumps({"patchwave_manifest_file": str(manifest), "patchwave_serial": [1, "100%"]})
    stage = playbook("playbooks/stage.yml", "-e", extra)
    deploy = playbook("playbooks/deploy.yml", "-e", extra)
    rollback = playbook("playbooks/rollback.yml", "-e", json.dumps({"patchwave_cycle_id": "bench-real"}))
    return stage, deploy, rollback, sum(len(p) for p in packages.values())


def baseline() -> float:
    fresh_lab()
    return playbook("tests/bench/baseline_deploy.yml")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    stages, deploys, rollbacks, theirs = [], [], [], []
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            stage, deploy, rollback, count = ours(Path(tmp))
            stages.append(stage)
            deploys.append(deploy)
            rollbacks.append(rollback)
            theirs.append(baseline())
    ms, md, mr, mb = (statistics.median(x) for x in (stages, deploys, rollbacks, theirs))
    print(f"real-content lab: 9 hosts (Debian 11/12/13 x http/file:/copy:), {count} real updates in all; "
          f"serial [1, 100%]; rounds: {rounds}")
    print(f"patchwave stage          {ms:7.1f} s")
    print(f"patchwave deploy         {md:7.1f} s")
    print(f"patchwave stage+deploy   {ms + md:7.1f} s")
    print(f"plain apt-get dist-upgrade {mb:5.1f} s")
    print(f"ratio stage+deploy / plain: {(ms + md) / mb:.2f}   deploy alone / plain: {md / mb:.2f}")
    print(f"patchwave rollback of all {mr:6.1f} s   rollback / plain deploy: {mr / mb:.2f}")


if __name__ == "__main__":
    main()
