"""`patchwave lab up --content real`: Debian 11, 12 and 13 hosts built from the main suite only,
with the security archive's real updates pending, served by a mirror inside the lab network.

- Images: the lab image recipe plus `REAL_PACKAGES` (openssl for a TLS service, tzdata), built
  with debootstrap from the machine's Debian mirror; the hard packages (openssh-server, libc6,
  dpkg, apt, PAM, sudo, perl-base, python3, tzdata) are all installed.
- Content: for each image, what `apt-get dist-upgrade` would take from the real security suite
  (content.py), fetched once per machine, re-signed with the lab key as a two-suite mirror per
  release (`<release>` with the installed versions, `<release>-security` with the updates).
- The mirror: one container serving that tree over http (port 80) and https (443, certificate
  from the lab CA), with apt-cacher-ng on 3142 as a caching proxy in front of it. Hosts reach it
  as `pw-mirror`.
- Hosts: per release one host per transport: `dNN-http` (http from the mirror), `dNN-file`
  (`file:`) and `dNN-copy` (`copy:`), the tree mounted read-only at /srv/mirror for those two.
- A service that links against an updated library: `pw-tls`, an `openssl s_server` on port 4433
  started at boot from /etc/init.d/pw-tls (pid file /run/pw-tls.pid).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from patchwave.errors import PatchwaveError
from patchwave.lab import content, images, podman, repo
from patchwave.lab.catalog import RELEASES, init_script
from patchwave.lab.fleet import BOOT, Lab, LabHost, _wait_for_ssh, port_block
from patchwave.paths import Paths

REAL_PACKAGES = ("openssl", "tzdata")
MIRROR_PACKAGES = ("apt-cacher-ng",)  # the thin-link tests' relay image: python3 + apt-cacher-ng
TRANSPORTS = ("http", "file", "copy")
MIRROR_NAME = "pw-mirror"
MIRROR_MOUNT = "/srv/mirror"
TLS_PORT = 4433
SOURCES_FILE = "/etc/apt/sources.list.d/patchwave-real.sources"
CA_FILE = "/etc/apt/keyrings/patchwave-lab-ca.pem"

_INIT_SCRIPT = init_script("pw-tls", "Patchwave lab TLS service (openssl s_server on libssl)",
                           f"--startas /usr/bin/openssl -- s_server -quiet -www -accept {TLS_PORT} \\\n"
                           "      -cert /etc/pw-tls/cert.pem -key /etc/pw-tls/key.pem")

# HTTP/1.1 with keep-alive, as a mirror answers: apt-cacher-ng pipelines requests on one
# connection and gives up on a server that closes it after each answer (http.server's HTTP/1.0)
_MIRROR_SERVER = """import functools, http.server, ssl, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
handler = functools.partial(Handler, directory="/srv/mirror")
tls = sys.argv[1] == "https"
server = http.server.ThreadingHTTPServer(("", 443 if tls else 80), handler)
if tls:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain("/srv/tls/mirror.pem", "/srv/tls/mirror.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""
_MIRROR_BOOT = ("python3 /srv/tls/serve.py http & python3 /srv/tls/serve.py https & "
                "exec /usr/sbin/apt-cacher-ng ForeGround=1")


def release_number(release: str) -> str:
    return RELEASES[release]


class RealLab(Lab):
    def __init__(self, paths: Paths, log: Any = None) -> None:
        super().__init__(paths, log)
        self.dir = paths.state / "lab-real"
        self.prefix = "pwreal-" + hashlib.sha256(str(paths.root).encode()).hexdigest()[:6]
        self.network = self.prefix
        self.inventory_path = paths.root / "inventories" / "lab-real" / "hosts.yml"
        self.cache = content.machine_cache()

    @property
    def mirror_dir(self) -> Path:
        return self.dir / "mirror"

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def mirror_container(self) -> str:
        return f"{self.prefix}-mirror"

    def contents(self) -> dict[str, content.ReleaseContent]:
        """What the mirror holds per release (from the manifests of this lab's images)."""
        found = {}
        for release in sorted({h.release for h in self.hosts()}):
            path = content.manifest_path(self.cache, release, images.image_ref(release, REAL_PACKAGES))
            if path.is_file():
                found[release] = content.load_manifest(path)
        return found

    def extra_host_vars(self, host: LabHost) -> dict[str, Any]:
        return {"patchwave_transport": host.groups[0].removeprefix("transport_")}

    def mirror_address(self) -> str:
        net = self.network
        return podman.podman("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}',
                             self.mirror_container).stdout.strip()

    # --- up -------------------------------------------------------------------------------
    def up(self, count: int | None = None, base_port: int | None = None) -> dict[str, Any]:
        started = time.monotonic()
        if count is not None and count != len(RELEASES) * len(TRANSPORTS):
            raise PatchwaveError(f"the real-content lab has {len(RELEASES) * len(TRANSPORTS)} hosts (one per release "
                                 "and transport); --hosts does not apply to it")
        changes: list[str] = []
        hosts = self.hosts() or self._plan_real(base_port)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ensure_ssh_key(changes)
        self._ensure_tls(changes)
        releases = sorted({h.release for h in hosts})
        build_log: list[str] = []
        with ThreadPoolExecutor(max_workers=len(releases) + 1) as pool:
            built = pool.map(lambda r: images.ensure_image(r, self.paths.cache, build_log, REAL_PACKAGES), releases)
            mirror_image = pool.submit(images.ensure_image, "bookworm", self.paths.cache, build_log, MIRROR_PACKAGES)
            refs = dict(zip(releases, built, strict=True))
            mirror_ref = mirror_image.result()
        changes.extend(build_log)
        if not (self.mirror_dir / "dists").is_dir() or not self.keyring.is_file():
            fetch_log: list[str] = []
            with ThreadPoolExecutor(max_workers=len(releases)) as pool:
                fetched = list(pool.map(lambda r: content.ensure_content(r, refs[r], self.cache, fetch_log), releases))
            changes.extend(fetch_log)
            content.build_mirror(self.mirror_dir, fetched, self.cache, self.gnupghome, self.keyring)
            changes.append(f"built the signed mirror {self.mirror_dir}: "
                           + ", ".join(f"{c.release} {len(c.security)} update(s)" for c in fetched))
        self.advisories_dir.mkdir(exist_ok=True)
        if not podman.network_exists(self.network):
            podman.podman("network", "create", "--label", f"io.patchwave.lab={self.prefix}", self.network)
            changes.append(f"created network {self.network}")
        changes.extend(self._ensure_mirror(mirror_ref))
        self._write_state(hosts)
        address = self.mirror_address()
        with ThreadPoolExecutor(max_workers=min(4, len(hosts))) as pool:
            for result in pool.map(lambda h: self._ensure_real_host(h, refs[h.release], address), hosts):
                changes.extend(result)
        if self._write_if_changed(self.known_hosts, self._known_hosts_text(hosts)):
            changes.append(f"wrote {self.known_hosts}")
        if self._write_if_changed(self.inventory_path, self.inventory_text(hosts)):
            changes.append(f"wrote {self.inventory_path}")
        for host in hosts:
            _wait_for_ssh(host)
        for line in changes:
            self.log(line)
        return {"changed": bool(changes), "changes": changes, "seconds": round(time.monotonic() - started, 1),
                "hosts": [h.as_dict() for h in hosts], "inventory": str(self.inventory_path),
                "updates": {r: len(c.security) for r, c in self.contents().items()}}

    def _plan_real(self, base_port: int | None) -> list[LabHost]:
        port = port_block(len(RELEASES) * len(TRANSPORTS), base_port, 23001)
        hosts: list[LabHost] = []
        for release, number in RELEASES.items():
            for transport in TRANSPORTS:
                name = f"d{number}-{transport}"
                hosts.append(LabHost(
                    name=name, container=f"{self.prefix}-{name}", release=release, ssh_port=port + len(hosts),
                    groups=(f"transport_{transport}", f"debian{number}"), device_type="server",
                    owner="team-real", criticality=2))
        return hosts

    def _ensure_tls(self, changes: list[str]) -> None:
        """A lab CA, and from it the mirror's certificate (pw-mirror) and the TLS service's (localhost)."""
        tls = self.tls_dir
        tls.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._write_if_changed(tls / "serve.py", _MIRROR_SERVER):
            (tls / "serve.py").chmod(0o644)
        if (tls / "service.pem").is_file():
            return

        def openssl(*args: str) -> None:
            podman.run(["openssl", *args], cwd=tls)

        # the extensions strict verifiers ask for (Python 3.13 sets VERIFY_X509_STRICT by default)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650", "-subj", "/CN=Patchwave lab CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-addext", "subjectKeyIdentifier=hash")
        for name, host in (("mirror", MIRROR_NAME), ("service", "localhost")):
            openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={host}")
            (tls / f"{name}.ext").write_text(
                f"subjectAltName=DNS:{host}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", f"{name}.pem", "-days", "3650", "-extfile", f"{name}.ext")
        for path in tls.iterdir():
            path.chmod(0o644)  # read inside the mirror container; lab-only keys
        changes.append(f"made the lab CA and TLS certificates in {tls}")

    def _ensure_mirror(self, image: str) -> list[str]:
        existing = self._start_existing(self.mirror_container, "the mirror")
        if existing is not None:
            return existing
        podman.podman(
            "run", "-d", "--name", self.mirror_container, "--hostname", MIRROR_NAME,
            "--label", f"io.patchwave.lab={self.prefix}", "--network", self.network, "--restart=always",
            "--volume", f"{self.mirror_dir}:{MIRROR_MOUNT}:ro", "--volume", f"{self.tls_dir}:/srv/tls:ro",
            image, "/bin/sh", "-c", _MIRROR_BOOT)
        return [f"started the mirror {self.mirror_container} (http 80, https 443, apt-cacher-ng 3142)"]

    def _ensure_real_host(self, host: LabHost, image: str, mirror_ip: str) -> list[str]:
        existing = self._start_existing(host.container, host.name)
        if existing is not None:
            return existing
        transport = self.extra_host_vars(host)["patchwave_transport"]
        volumes = ["--volume", f"{self.mirror_dir}:{MIRROR_MOUNT}:ro"] if transport in ("file", "copy") else []
        podman.podman(
            "create", "--name", host.container, "--hostname", host.name,
            "--label", f"io.patchwave.lab={self.prefix}", "--network", self.network,
            "--add-host", f"{MIRROR_NAME}:{mirror_ip}",
            "--publish", f"127.0.0.1:{host.ssh_port}:22", "--restart=always",
            "--tmpfs", "/run:rw,nosuid,nodev,mode=755", *volumes, image, *BOOT)
        self._inject_real_files(host, transport)
        podman.podman("start", host.container)
        podman.exec_in(host.container, "chown", "-R", "root:root", "/etc/ssh", "/etc/apt", "/etc/pw-tls",
                       "/etc/init.d/pw-tls")
        podman.exec_in(host.container, "apt-get", "-q", "--error-on=any", "update", timeout=600)
        return [f"created {host.name} ({host.container}, Debian {release_number(host.release)}, {transport}, "
                f"ssh 127.0.0.1:{host.ssh_port})"]

    def _inject_real_files(self, host: LabHost, transport: str) -> None:
        with tempfile.TemporaryDirectory(prefix="pw-inject-") as tmp:
            root = Path(tmp)
            self._access_files(root, host)
            for sub in ("etc/apt/apt.conf.d", "etc/pw-tls", "etc/init.d"):
                (root / sub).mkdir(parents=True)
            shutil.copy(self.tls_dir / "ca.pem", root / CA_FILE.lstrip("/"))
            (root / "etc/apt/apt.conf.d/60patchwave-lab-ca").write_text(
                f'Acquire::https::{MIRROR_NAME}::CaInfo "{CA_FILE}";\n')
            (root / SOURCES_FILE.lstrip("/")).write_text(sources_entry(host.release, transport))
            shutil.copy(self.tls_dir / "service.pem", root / "etc/pw-tls/cert.pem")
            shutil.copy(self.tls_dir / "service.key", root / "etc/pw-tls/key.pem")
            (root / "etc/init.d/pw-tls").write_text(_INIT_SCRIPT)
            for path in root.rglob("*"):
                if path.is_file():
                    path.chmod(0o755 if path.name == "pw-tls" else 0o600 if path.name.endswith("key") else 0o644)
            podman.podman("cp", f"{root}/.", f"{host.container}:/")


def mirror_uri(transport: str) -> str:
    """Where a host of `transport` finds the lab mirror."""
    return {"http": f"http://{MIRROR_NAME}/", "https": f"https://{MIRROR_NAME}/",
            "file": f"file:{MIRROR_MOUNT}", "copy": f"copy:{MIRROR_MOUNT}"}[transport]


def sources_entry(release: str, transport: str) -> str:
    return (
        "Types: deb\n"
        f"URIs: {mirror_uri(transport)}\n"
        f"Suites: {release} {release}-security\n"
        "Components: main\n"
        f"Signed-By: /etc/apt/keyrings/{repo.KEYRING_NAME}\n"
    )
