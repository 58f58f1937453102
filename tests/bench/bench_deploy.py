"""Deploy benchmark: Patchwave's stage + deploy playbooks (exact versions, verification, rollback
journal) vs a plain `apt-get dist-upgrade` playbook, both with `serial: [1, "100%"]` (a canary,
then the rest), on the same 6 fresh lab hosts and the same updates. Prints seconds and the ratio;
never fails on a timing.

    .venv/bin/python tests/bench/bench_deploy.py [rounds]

It recreates the lab before every run (lab down/up, not timed).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventories/lab/hosts.yml"
NOT_APPROVED = ["pw-agent", "pw-webapp", "pw-tzdata"]  # held for the baseline so both install the same set


def env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{BIN}:{os.environ.get('PATH', '')}")


def fresh_lab() -> list[dict[str, object]]:
    subprocess.run([str(BIN / "patchwave"), "lab", "down"], cwd=ROOT, env=env(), check=True, capture_output=True)
    up = subprocess.run([str(BIN / "patchwave"), "lab", "up", "--json"], cwd=ROOT, env=env(), check=True,
                        capture_output=True, text=True)
    hosts: list[dict[str, object]] = json.loads(up.stdout)["hosts"]
    return hosts


def playbook(name: str, *args: str) -> None:
    subprocess.run([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), name, *args], cwd=ROOT, env=env(), check=True,
                   capture_output=True)


def ours(tmp: Path) -> tuple[float, float]:
    hosts = fresh_lab()
    from patchwave.lab.catalog import security_updates

    # every security update but the held one, in the version for each host's release
    approved = {str(h["name"]): [f"{n}={v}" for n, v in security_updates(str(h["release"])).items()] for h in hosts}
    manifest = tmp / "bench-manifest.json"
    manifest.write_text(json.dumps({"cycle_id": "bench", "hosts": {n: {"packages": p} for n, p in approved.items()}}))
    extra = json.dumps({"patchwave_manifest_file": str(manifest), "patchwave_serial": [1, "100%"]})
    started = time.monotonic()
    playbook("playbooks/stage.yml", "-e", extra)
    staged = time.monotonic()
    playbook("playbooks/deploy.yml", "-e", extra)
    return staged - started, time.monotonic() - staged


def baseline() -> float:
    hosts = fresh_lab()
    for host in hosts:
        subprocess.run(["podman", "exec", str(host["container"]), "apt-mark", "hold", *NOT_APPROVED], check=True,
                       capture_output=True, env=env())
    started = time.monotonic()
    playbook("tests/bench/baseline_deploy.yml")
    return time.monotonic() - started


def main() -> None:
    import tempfile

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    stages, deploys, theirs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            stage, deploy = ours(Path(tmp))
            stages.append(stage)
            deploys.append(deploy)
            theirs.append(baseline())
    ms, md, mb = statistics.median(stages), statistics.median(deploys), statistics.median(theirs)
    from patchwave.lab.catalog import security_updates

    count = len(security_updates("bookworm"))
    print(f"6 lab hosts, {count} updates each (one asks for a reboot), serial [1, 100%]; rounds: {rounds}")
    print(f"patchwave stage (before the window): median {ms:.1f}s  {[round(x, 1) for x in stages]}")
    print(f"patchwave deploy (in the window):    median {md:.1f}s  {[round(x, 1) for x in deploys]}")
    print(f"plain dist-upgrade:                  median {mb:.1f}s  {[round(x, 1) for x in theirs]}")
    print(f"ratio deploy/plain: {md / mb:.2f}x (target: at most 1.3x); stage+deploy/plain: {(ms + md) / mb:.2f}x")


if __name__ == "__main__":
    main()
