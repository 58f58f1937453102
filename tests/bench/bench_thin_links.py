"""Thin-link benchmark: what a branch site's link carries when N lab hosts stage the same
update, directly from the repository (the baseline: plain `playbooks/stage.yml`) and through a
caching relay (apt-cacher-ng), and how long staging takes at a download limit.

The site, origin repository and relay are those of the thin-link e2e test (tests/thinlab.py):
the origin's access log gives the bytes it served (sum of the files answered with 200). Each
round stages from an empty package cache on every host (apt-get clean, the cycle's directory
removed); the relay keeps its cache between rounds, as it would in production.

Prints bytes over the link per round, the ratio to the direct round, and seconds; never fails on
a number. It brings the default lab up (images cached) and leaves it up.

    .venv/bin/python tests/bench/bench_thin_links.py [limit_kbps]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("web1", "web2", "db1", "db2", "ws1", "ws2")


def main() -> None:
    sys.path.insert(0, str(ROOT / "orchestrator" / "src"))
    sys.path.insert(0, str(ROOT / "tests"))
    os.environ["CONTAINERS_CONF"] = str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf")
    from thinlab import BIG, Site, podman

    from patchwave.ansible.runner import PlaybookRunner
    from patchwave.lab.fleet import Lab
    from patchwave.paths import Paths

    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    paths = Paths(ROOT)
    lab = Lab(paths)
    lab.up()
    with tempfile.TemporaryDirectory(prefix="pw-bench-thin-") as tmp, Site(lab, Path(tmp), HOSTS) as site:
        work = Path(tmp)
        runner = PlaybookRunner(paths.root, work / "runs")
        sizes = {path.name: path.stat().st_size for path in (work / "origin").rglob("*") if path.is_file()}

        def served_bytes(since: int) -> int:
            return sum(sizes.get(Path(path).name, 0) for _c, path, status in site.requests()[since:] if status == 200)

        def stage(label: str, links: dict[str, dict[str, object]]) -> tuple[float, int]:
            cycle_id = f"bench-thin-{label}"
            for name in HOSTS:
                podman("exec", site.containers[name], "sh", "-c",
                       f"apt-get clean; rm -rf /var/lib/patchwave/cycles/{cycle_id}")
            manifest = work / f"{cycle_id}.json"
            manifest.write_text(json.dumps({"cycle_id": cycle_id,
                                            "hosts": {n: {"packages": [f"{BIG}=1.0-2"]} for n in HOSTS}}))
            mark = len(site.requests())
            started = time.monotonic()
            result = runner.run("stage.yml", paths.lab_inventory, ident=cycle_id, limit=list(HOSTS),
                                extravars={"patchwave_manifest_file": str(manifest), "patchwave_thin_links": links})
            took = time.monotonic() - started
            failed = [h for h, outcome in result.hosts.items() if not outcome.ok]
            if failed:
                sys.exit(f"{label}: staging failed on {failed}")
            return took, served_bytes(mark)

        relay = {"download_limit_kbps": 0, "relay": site.relay_url}
        limited = {"download_limit_kbps": limit, "relay": site.relay_url}
        rounds = [
            ("direct", {}),
            ("relay (cold cache)", dict.fromkeys(HOSTS, relay)),
            ("relay (warm cache)", dict.fromkeys(HOSTS, relay)),
            (f"relay + {limit} KB/s", dict.fromkeys(HOSTS, limited)),
        ]
        results = [(label, *stage(label.split()[0] + str(index), links)) for index, (label, links) in enumerate(rounds)]
    direct_bytes = results[0][2]
    print(f"{len(HOSTS)} hosts stage {BIG} 1.0-2 ({site.size} bytes each)")
    print(f"{'round':<22} {'seconds':>8} {'bytes over the link':>20} {'vs direct':>10}")
    for label, took, sent in results:
        print(f"{label:<22} {took:8.1f} {sent:20d} {sent / direct_bytes if direct_bytes else 0:10.2f}")
    floor = site.size / (limit * 1024)
    print(f"download limit {limit} KB/s: at least {floor:.1f} s per host for the update alone")


if __name__ == "__main__":
    main()
