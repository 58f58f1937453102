"""Deploy benchmark: Patchwave's stage + deploy (exact versions, verification, rollback journal,
two waves) vs a plain `apt-get dist-upgrade` playbook with the same waves, on the same 6 fresh lab
hosts and the same updates. Prints seconds and the ratio; never fails on a timing.

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
APPROVED = ["pw-libssl=1.0-2", "pw-kernel=6.1.0-2", "pw-tools=2.0-1", "pw-tools-common=2.0-1", "pw-config=1.1-1"]
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


def ours(tmp: Path) -> float:
    hosts = fresh_lab()
    names = sorted(str(h["name"]) for h in hosts)
    canary = min(hosts, key=lambda h: (int(str(h["criticality"])), str(h["name"])))["name"]
    manifest = tmp / "bench-manifest.json"
    manifest.write_text(json.dumps({"cycle_id": "bench", "hosts": {n: {"packages": APPROVED} for n in names}}))
    extra = f"patchwave_manifest_file={manifest}"
    started = time.monotonic()
    playbook("playbooks/stage.yml", "-e", extra)
    playbook("playbooks/deploy.yml", "-e", extra, "-l", str(canary))
    playbook("playbooks/deploy.yml", "-e", extra, "-l", f"all:!{canary}")
    return time.monotonic() - started


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
    mine, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            mine.append(ours(Path(tmp)))
            theirs.append(baseline())
    mo, mb = statistics.median(mine), statistics.median(theirs)
    print(f"6 lab hosts, 5 updates each (one asks for a reboot), waves: canary 1 + rest; rounds: {rounds}")
    print(f"patchwave stage + deploy: median {mo:.1f}s  {[round(x, 1) for x in mine]}")
    print(f"plain dist-upgrade:       median {mb:.1f}s  {[round(x, 1) for x in theirs]}")
    print(f"ratio patchwave/plain: {mo / mb:.2f}x (target: at most 1.3x)")


if __name__ == "__main__":
    main()
