"""Staging the real updates through every apt transport: http, https (lab CA), file:, copy: and
http through a caching proxy (apt-cacher-ng). Each staged `.deb` must be in apt's cache, come
from where apt really takes it, and have the SHA-256 the mirror's signed index gives; a
corrupted file in the cache is found, removed and the stage fails. Nothing is installed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import installed_versions, podman_exec, run_module
from reallab import INVENTORY, pending

from patchwave.lab import real

CASES = {  # case: (host, transport the sources use, relay)
    "http": ("d12-http", "http", None),
    "https": ("d12-http", "https", None),
    "proxy": ("d12-http", "http", f"http://{real.MIRROR_NAME}:3142/"),
    "file": ("d12-file", "file", None),
    "copy": ("d12-copy", "copy", None),
}


def index_sha256(lab: Any) -> dict[tuple[str, str], str]:
    """(name, version) -> SHA256 from the mirror's Packages indexes, as the lab published them."""
    found = {}
    for index in lab.mirror_dir.glob("dists/*/main/binary-*/Packages"):
        for stanza in index.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(Package|Version|SHA256): (.+)$", stanza, re.M))
            if len(fields) == 3:
                found[(fields["Package"], fields["Version"])] = fields["SHA256"]
    return found


def use_sources(container: str, release: str, transport: str) -> None:
    podman_exec(container, "sh", "-c", f"printf '%s' '{real.sources_entry(release, transport)}' > {real.SOURCES_FILE}"
                " && apt-get -q --error-on=any update >/dev/null")


def clean(container: str, cycle_id: str) -> None:
    podman_exec(container, "sh", "-c", f"apt-get clean && rm -rf /var/lib/patchwave/cycles/{cycle_id}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_stage_through_every_transport(real_lab: Any, case: str) -> None:
    name, transport, relay = CASES[case]
    host = next(h for h in real_lab.hosts() if h.name == name)
    cycle_id = f"transport-{case}"
    clean(host.container, cycle_id)
    use_sources(host.container, host.release, transport)
    try:
        wanted = pending(host.container)
        before = installed_versions(host.container)
        args: dict[str, object] = {"cycle_id": cycle_id, "packages": [f"{n}={v}" for n, v in sorted(wanted.items())]}
        if relay:
            args["relay"] = relay
        result = run_module(host.name, "patchwave.endpoint.stage_updates", args, inventory=INVENTORY)
        assert result["failed"] is False, result.get("msg")
        staged = {s["name"]: s for s in result["staged"]}  # type: ignore[union-attr]
        assert set(staged) == set(wanted)
        prefix = real.mirror_uri(transport)
        sums = index_sha256(real_lab)
        for pkg, entry in staged.items():
            assert entry["source"].startswith(prefix), (pkg, entry["source"])
            assert entry["file"].startswith("/var/cache/apt/archives/"), entry
            digest = podman_exec(host.container, "sha256sum", entry["file"]).split()[0]
            assert digest == sums[(pkg, wanted[pkg])], pkg
        assert installed_versions(host.container) == before  # staging installs nothing
        if relay:
            log = podman_exec(real_lab.mirror_container, "sh", "-c", "cat /var/log/apt-cacher-ng/apt-cacher.log")
            assert all(entry["file"].rsplit("/", 1)[-1].split("_")[0] in log for entry in staged.values()), log[-2000:]

        # a corrupted file in the cache is caught against the index, removed, and nothing is staged from it
        victim = sorted(staged)[0]
        path = staged[victim]["file"]
        podman_exec(host.container, "sh", "-c", f"truncate -s 1000 '{path}'")
        again = run_module(host.name, "patchwave.endpoint.stage_updates", args, inventory=INVENTORY)
        assert again["failed"] is True and "does not match the index" in str(again["msg"]), again.get("msg")
        assert podman_exec(host.container, "sh", "-c", f"test -e '{path}' && echo present || echo gone").strip() == "gone"
        third = run_module(host.name, "patchwave.endpoint.stage_updates", args, inventory=INVENTORY)
        assert third["failed"] is False, third.get("msg")
    finally:
        clean(host.container, cycle_id)
        use_sources(host.container, host.release, next(iter(host.groups)).removeprefix("transport_"))
