"""Baseline assessment benchmark. Three ways to evaluate a configuration baseline:

1. Patchwave: playbooks/assess.yml — every rule of a host in ONE assess_baseline call;
2. task per rule: the same rules, one Ansible task per rule (each task runs assess_baseline with
   that single rule, so the checks are identical and only the per-task cost differs);
3. OpenSCAP: `oscap xccdf eval` of a ComplianceAsCode profile from Debian's ssg-debian content,
   whose newest data stream is for Debian 11, against the Debian 11 lab host db1. Debian 11 has
   no openscap package, so oscap (openscap-scanner from Debian 12, in a lab image variant) scans
   db1's filesystem offline (OSCAP_PROBE_ROOT on `podman mount` of db1, read-only): no SSH and
   no Ansible on its side, which favours it.

Prints wall times, seconds per rule and the ratios; never fails on a timing.

    .venv/bin/python tests/bench/bench_baseline.py [rounds] [oscap-profile]
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
INVENTORY = ROOT / "inventories/lab/hosts.yml"
OSCAP_PACKAGES = ("openscap-scanner", "ssg-debian")  # Debian 12's; ssg-debian ships Debian 10 and 11 content
DATA_STREAM = "/usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml"


def env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{BIN}:{os.environ.get('PATH', '')}",
                CONTAINERS_CONF=str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf"))


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    if proc.returncode not in (0, 2):  # oscap exits 2 when a rule fails
        sys.exit(f"{' '.join(argv[:3])} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return took, proc.stdout


def task_per_rule_playbook(count: int) -> str:
    tasks = []
    for index in range(count):
        tasks.append(f"""    - name: Rule {index}
      patchwave.endpoint.assess_baseline:
        rules: "{{{{ patchwave_rules.hosts[inventory_hostname].rules[{index}:{index + 1}] }}}}"
        snapshot: false
      when: patchwave_rules.hosts[inventory_hostname].rules | length > {index}
""")
    return ("- name: One task per rule\n  hosts: all\n  become: true\n  gather_facts: false\n  vars:\n"
            "    patchwave_rules: \"{{ lookup('ansible.builtin.file', patchwave_rules_file) | from_json }}\"\n"
            "  tasks:\n" + "".join(tasks))


def main(rounds: int, profile: str | None) -> None:
    sys.path.insert(0, str(ROOT / "orchestrator" / "src"))
    from patchwave.lab.images import ensure_image

    subprocess.run([str(BIN / "patchwave"), "lab", "up"], cwd=ROOT, env=env(), check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        rules_file = Path(tmp) / "rules.json"
        subprocess.run([str(BIN / "patchwave"), "assess", "--compile", str(rules_file)], cwd=ROOT, env=env(),
                       check=True, capture_output=True)
        compiled = json.loads(rules_file.read_text())["hosts"]
        per_host = {h: len(v["rules"]) for h, v in compiled.items()}
        total_rules = sum(per_host.values())
        extra = ["-e", f"patchwave_rules_file={rules_file}"]
        ours = []
        for _ in range(rounds):
            took, _out = timed([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), "playbooks/assess.yml", *extra])
            ours.append(took)
        one_host = []
        for _ in range(rounds):
            took, _out = timed([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), "playbooks/assess.yml", "-l", "db1",
                                *extra])
            one_host.append(took)
        module_seconds = json.loads(subprocess.run(
            [str(BIN / "ansible"), "-i", str(INVENTORY), "db1", "-b", "-m", "patchwave.endpoint.assess_baseline",
             "-a", json.dumps({"rules": compiled["db1"]["rules"], "snapshot": False}), "-o"],
            cwd=ROOT, env=env(), capture_output=True, text=True, check=True).stdout.split("=>", 1)[1])["summary"]["duration"]
        slow_playbook = Path(tmp) / "per-rule.yml"
        slow_playbook.write_text(task_per_rule_playbook(max(per_host.values())))
        theirs, _out = timed([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(slow_playbook), *extra])

    print(f"rules: {per_host} ({total_rules} in all)")
    print(f"patchwave, 6 hosts, one call per host: median {statistics.median(ours):.2f} s of {rounds} "
          f"({[round(x, 2) for x in ours]})")
    print(f"task per rule, 6 hosts: {theirs:.1f} s -> task-per-rule / patchwave = "
          f"{theirs / statistics.median(ours):.1f}x")
    db1_rules = per_host["db1"]
    print(f"patchwave on db1 (Debian 11), {db1_rules} rules: module {module_seconds:.3f} s "
          f"({1000 * module_seconds / db1_rules:.2f} ms/rule), whole ansible-playbook run "
          f"{statistics.median(one_host):.2f} s ({1000 * statistics.median(one_host) / db1_rules:.1f} ms/rule)")

    log: list[str] = []
    image = ensure_image("bookworm", ROOT / ".patchwave" / "cache", log, OSCAP_PACKAGES)
    status = json.loads(subprocess.run([str(BIN / "patchwave"), "lab", "status", "--json"], cwd=ROOT, env=env(),
                                       capture_output=True, text=True, check=True).stdout)
    db1 = next(h["container"] for h in status["hosts"] if h["name"] == "db1")
    rootfs = subprocess.run(["podman", "mount", db1], env=env(), capture_output=True, text=True, check=True).stdout.strip()
    podman = ["podman", "run", "--rm", "--network", "none", "-v", f"{rootfs}:/target:ro", "-e",
              "OSCAP_PROBE_ROOT=/target", image]
    _took, info = timed([*podman, "oscap", "info", "--profiles", DATA_STREAM])
    profiles = [line.split(":", 1)[0].strip() for line in info.splitlines() if ":" in line]
    chosen = profile or next((p for p in profiles if p.endswith("_standard")), profiles[0])
    container_start, _out = timed([*podman, "true"])
    runs = []
    for _ in range(rounds):
        took, out = timed([*podman, "oscap", "xccdf", "eval", "--profile", chosen, DATA_STREAM])
        runs.append((took, out))
    took = statistics.median(t for t, _o in runs)
    results = re.findall(r"^Result\s+(\S+)", runs[0][1], re.MULTILINE)
    evaluated = [r for r in results if r not in ("notselected", "notapplicable")]
    oscap_net = took - container_start
    print(f"oscap xccdf eval --profile {chosen} (image {image}): median {took:.2f} s, of which container start "
          f"{container_start:.2f} s; {len(results)} rules, {len(evaluated)} evaluated "
          f"({1000 * oscap_net / max(1, len(evaluated)):.1f} ms/evaluated rule without the container start)")
    subprocess.run(["podman", "unmount", db1], env=env(), capture_output=True, check=False)
    ours_per_rule = statistics.median(one_host) / db1_rules
    print(f"per rule: oscap / patchwave (whole ansible run on db1) = "
          f"{(oscap_net / max(1, len(evaluated))) / ours_per_rule:.1f}x; "
          f"oscap / patchwave (module time) = {(oscap_net / max(1, len(evaluated))) / (module_seconds / db1_rules):.0f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, sys.argv[2] if len(sys.argv) > 2 else None)
