"""A branch site for thin-link tests and the thin-link benchmark, inside the lab network:

- the origin: a signed repository (lab key) served over HTTP on port 80 by Python's http.server
  in a lab container; its access log says who fetched which file;
- the relay: apt-cacher-ng in a lab image variant, on port 3142;
- the chosen lab hosts use the origin (an extra deb822 source) and have the base version of one
  bulky package installed; the update is incompressible, so its size on the wire is its size.

Everything is put back on exit: the hosts lose the source and the package, the two containers are
removed (they also carry the lab's label, so `lab down` removes them too).
"""

from __future__ import annotations

import base64
import os
import random
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

from patchwave.lab import catalog, images, repo

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "orchestrator/src/patchwave/lab/data/containers.conf")}
RELAY_PACKAGES = ("apt-cacher-ng",)
BIG = "pw-bigdata"
UPDATE = f"{BIG}_1.0-2_all.deb"
SOURCES = "/etc/apt/sources.list.d/patchwave-thin.sources"


def podman(*args: str, stdin: bytes | None = None, check: bool = True) -> str:
    proc = subprocess.run(["podman", *args], env=ENV, check=check, capture_output=True, input=stdin)
    return proc.stdout.decode()


class Site:
    def __init__(self, lab: Any, work: Path, hosts: tuple[str, ...], blob_bytes: int = 1_150_000) -> None:
        self.lab, self.work, self.names = lab, work, hosts
        self.blob_bytes = blob_bytes
        tag = str(os.getpid())
        self.origin, self.relay = f"pw-thin-origin-{tag}", f"pw-thin-relay-{tag}"
        self.containers = {h.name: h.container for h in lab.hosts()}
        self.releases = {h.name: h.release for h in lab.hosts()}
        self.origin_ip = self.relay_ip = ""
        self.ips: dict[str, str] = {}
        self.size = 0

    def __enter__(self) -> Site:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        blob = base64.b64encode(random.Random(8).randbytes(self.blob_bytes)).decode()
        packages = (
            catalog.LabPackage(BIG, "1.0-1", catalog.SUITE_REGULAR, "lab bulk data",
                               files={"/usr/share/pw-bigdata/v": "1\n"}),
            catalog.LabPackage(BIG, "1.0-2", catalog.SUITE_SECURITY, "lab bulk data (security fix)",
                               files={"/usr/share/pw-bigdata/v": "2\n", "/usr/share/pw-bigdata/blob": blob}),
        )
        origin_dir = self.work / "origin"
        repo.build_repository(origin_dir, self.lab.gnupghome, self.lab.keyring, packages)
        self.size = (origin_dir / "pool" / catalog.SUITE_SECURITY / UPDATE).stat().st_size
        relay_image = images.ensure_image("bookworm", ROOT / ".patchwave" / "cache", [], RELAY_PACKAGES)
        label = f"io.patchwave.lab={self.lab.prefix}"
        podman("run", "-d", "--name", self.origin, "--label", label, "--network", self.lab.network,
               "--volume", f"{origin_dir}:/srv/origin:ro", images.image_ref("bookworm"),
               "python3", "-m", "http.server", "80", "--directory", "/srv/origin")
        podman("run", "-d", "--name", self.relay, "--label", label, "--network", self.lab.network, relay_image,
               "/usr/sbin/apt-cacher-ng", "ForeGround=1")
        self.origin_ip, self.relay_ip = self.address(self.origin), self.address(self.relay)
        self.ips = {name: self.address(self.containers[name]) for name in self.names}
        for name in self.names:
            container = self.containers[name]
            entry = repo.sources_entry("X", self.releases[name]).replace("copy:X", f"http://{self.origin_ip}/")
            podman("exec", "-i", container, "tee", SOURCES, stdin=entry.encode())
            podman("exec", container, "sh", "-c", "apt-get -q update && DEBIAN_FRONTEND=noninteractive "
                   f"apt-get -q -y install {BIG}=1.0-1 && apt-get clean")

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        for name in self.names:
            podman("exec", self.containers[name], "sh", "-c",
                   f"rm -f {SOURCES}; dpkg --purge {BIG}; apt-get -q update; apt-get clean", check=False)
        podman("rm", "-f", "-t", "0", self.origin, self.relay, check=False)

    def address(self, container: str) -> str:
        net = self.lab.network
        return podman("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', container).strip()

    @property
    def relay_url(self) -> str:
        return f"http://{self.relay_ip}:3142/"

    def requests(self) -> list[tuple[str, str, int]]:
        """(client address, path, status) of each GET the origin answered, from its access log."""
        log = subprocess.run(["podman", "logs", self.origin], env=ENV, check=True, capture_output=True, text=True)
        found = []
        for line in (log.stdout + log.stderr).splitlines():
            if '"GET ' in line:
                request, _sep, rest = line.partition('"GET ')[2].partition('" ')
                found.append((line.split()[0], request.split()[0], int(rest.split()[0])))
        return found

    def update_fetches(self, served: list[tuple[str, str, int]]) -> list[str]:
        """Who fetched the update's .deb in `served`."""
        return [client for client, path, status in served if path.endswith(f"/{UPDATE}") and status == 200]
