"""`patchwave lab up|down|status`: a fleet of real Debian hosts in rootful podman containers.

Each host runs sshd as PID 1 (so `kill -TERM 1` is a real reboot under `--restart=always`),
is published on a 127.0.0.1 port, trusts only the lab's key pair, and has a host key the lab
generated and wrote into the lab's own known_hosts: host key checking stays on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from patchwave.errors import PatchwaveError
from patchwave.lab import images, podman, repo
from patchwave.lab.catalog import ADMIN_CONFFILE, HELD_PACKAGES, RELEASES, base_install, fleet
from patchwave.paths import Paths

REPO_MOUNT = "/srv/patchwave-repo"
DEFAULT_HOSTS = 6
REBOOT_COMMAND = "kill -TERM 1"
BOOT_TIME_COMMAND = "cut -d' ' -f22 /proc/1/stat"
# PID 1 stays sshd (a reboot is `kill -TERM 1`); the lab's services start before it on every boot,
# as init would start them
BOOT = ["/bin/sh", "-c", 'mkdir -p /run/sshd; for s in /etc/init.d/pw-*; do [ -x "$s" ] && "$s" start; done; '
        "exec /usr/sbin/sshd -D -e"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class LabHost:
    name: str
    container: str
    release: str
    ssh_port: int
    groups: tuple[str, ...]
    device_type: str
    owner: str
    criticality: int

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = list(self.groups)
        data["debian_version"] = RELEASES[self.release]
        return data


class Lab:
    def __init__(self, paths: Paths, log: Log | None = None) -> None:
        self.paths = paths
        self.dir = paths.lab
        self.log: Log = log or (lambda _msg: None)
        self.prefix = "pwlab-" + hashlib.sha256(str(paths.root).encode()).hexdigest()[:6]
        self.network = self.prefix
        self.inventory_path = paths.lab_inventory

    # --- files the lab owns -------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def ssh_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def repo_dir(self) -> Path:
        return self.dir / "repo"

    @property
    def gnupghome(self) -> Path:
        return self.dir / "gnupg"

    @property
    def keyring(self) -> Path:
        return self.dir / repo.KEYRING_NAME

    @property
    def advisories_dir(self) -> Path:
        return self.dir / "advisories"

    def _state(self) -> dict[str, Any]:
        if not self.state_file.is_file():
            return {}
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def hosts(self) -> list[LabHost]:
        return [LabHost(**{**h, "groups": tuple(h["groups"])}) for h in self._state().get("hosts", [])]

    # --- up -------------------------------------------------------------------------------
    def up(self, count: int | None = None, base_port: int | None = None) -> dict[str, Any]:
        """Bring the lab to its desired state; report what changed (nothing, when already up)."""
        started = time.monotonic()
        changes: list[str] = []
        hosts = self.hosts()
        if hosts and count is not None and count != len(hosts):
            raise PatchwaveError(
                f"the lab is already up with {len(hosts)} hosts; run `patchwave lab down` before asking for {count}"
            )
        if hosts and self._state().get("content") != repo.content_hash():
            raise PatchwaveError("the lab's hosts were made from another version of the lab's packages; "
                                 "run `patchwave lab down` before `patchwave lab up`")
        if not hosts:
            hosts = self._plan(count or DEFAULT_HOSTS, base_port)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ensure_ssh_key(changes)
        self._ensure_repository(changes)
        self._ensure_advisories(changes)
        releases = sorted({h.release for h in hosts})
        build_log: list[str] = []
        with ThreadPoolExecutor(max_workers=len(releases)) as pool:
            built = pool.map(lambda r: images.ensure_image(r, self.paths.cache, build_log), releases)
            refs = dict(zip(releases, built, strict=True))
        changes.extend(build_log)
        if not podman.network_exists(self.network):
            podman.podman("network", "create", "--label", f"io.patchwave.lab={self.prefix}", self.network)
            changes.append(f"created network {self.network}")
        self._write_state(hosts, repo.content_hash())
        with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
            for result in pool.map(lambda h: self._ensure_host(h, refs[h.release]), hosts):
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
                "hosts": [h.as_dict() for h in hosts], "inventory": str(self.inventory_path)}

    def _plan(self, count: int, base_port: int | None) -> list[LabHost]:
        templates = fleet(count)
        port = port_block(count, base_port, 22001)
        return [
            LabHost(
                name=t.name, container=f"{self.prefix}-{t.name}", release=t.release, ssh_port=port + i,
                groups=(t.group, f"debian{RELEASES[t.release]}"), device_type=t.device_type,
                owner=t.owner, criticality=t.criticality,
            )
            for i, t in enumerate(templates)
        ]

    def _write_state(self, hosts: list[LabHost], content: str | None = None) -> None:
        """`content`: what the hosts were provisioned from (the synthetic lab's repository hash)."""
        state = {"prefix": self.prefix, "network": self.network, "content": content,
                 "hosts": [asdict(h) for h in hosts]}
        text = json.dumps(state, indent=2) + "\n"
        self._write_if_changed(self.state_file, text)

    @staticmethod
    def _write_if_changed(path: Path, text: str) -> bool:
        if path.is_file() and path.read_text() == text:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return True

    def _ensure_ssh_key(self, changes: list[str]) -> None:
        if self.ssh_key.is_file():
            return
        podman.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "patchwave-lab", "-f", str(self.ssh_key)])
        changes.append(f"generated lab key pair {self.ssh_key}")

    def _ensure_repository(self, changes: list[str]) -> None:
        marker = self.repo_dir / repo.CONTENT_FILE
        if marker.is_file() and marker.read_text().strip() == repo.content_hash() and self.keyring.is_file():
            return
        repo.build_repository(self.repo_dir, self.gnupghome, self.keyring)
        changes.append(f"built signed apt repository {self.repo_dir}")

    def _ensure_advisories(self, changes: list[str]) -> None:
        source = Path(__file__).resolve().parent / "data" / "advisories"
        self.advisories_dir.mkdir(exist_ok=True)
        for item in sorted(source.glob("*.json")):
            if self._write_if_changed(self.advisories_dir / item.name, item.read_text()):
                changes.append(f"wrote advisory {item.name}")

    def _host_key(self, host: LabHost) -> Path:
        key = self.dir / "hostkeys" / host.name / "ssh_host_ed25519_key"
        if not key.is_file():
            key.parent.mkdir(parents=True, exist_ok=True)
            podman.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(key)])
        return key

    def _known_hosts_text(self, hosts: list[LabHost]) -> str:
        lines = []
        for host in hosts:
            kind, blob = self._host_key(host).with_suffix(".pub").read_text().split()[:2]
            lines.append(f"[127.0.0.1]:{host.ssh_port} {kind} {blob}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _start_existing(container: str, what: str) -> list[str] | None:
        """[] when `container` runs, a change line when it had to be started, None when there is none."""
        state = podman.container_state(container)
        if state == "running":
            return []
        if state is not None:
            podman.podman("start", container)
            return [f"started {what} ({container})"]
        return None

    def _ensure_host(self, host: LabHost, image: str) -> list[str]:
        existing = self._start_existing(host.container, host.name)
        if existing is not None:
            return existing
        podman.podman(
            "create", "--name", host.container, "--hostname", host.name,
            "--label", f"io.patchwave.lab={self.prefix}", "--network", self.network,
            "--publish", f"127.0.0.1:{host.ssh_port}:22", "--restart=always",
            # /run is a tmpfs, as on a real host: a reboot clears /run/reboot-required
            "--tmpfs", "/run:rw,nosuid,nodev,mode=755",
            "--volume", f"{self.repo_dir}:{REPO_MOUNT}:ro", image, *BOOT,
        )
        self._inject_files(host)
        podman.podman("start", host.container)
        self._provision(host)
        return [f"created {host.name} ({host.container}, Debian {RELEASES[host.release]}, ssh 127.0.0.1:{host.ssh_port})"]

    def _inject_files(self, host: LabHost) -> None:
        with tempfile.TemporaryDirectory(prefix="pw-inject-") as tmp:
            root = Path(tmp)
            self._access_files(root, host)
            (root / "etc/ssh/ssh_host_ed25519_key").chmod(0o600)
            (root / "etc/apt/sources.list.d/patchwave-lab.sources").write_text(repo.sources_entry(REPO_MOUNT, host.release))
            for path in root.rglob("*"):
                if path.is_file() and path.name != "ssh_host_ed25519_key":
                    path.chmod(0o644)
            # podman cp of a directory's contents ("dir/.") merges into the container's /
            podman.podman("cp", f"{root}/.", f"{host.container}:/")

    def _access_files(self, root: Path, host: LabHost) -> None:
        """Into `root` (copied over the container's /): the host's key, the lab's public key for
        the lab user, and the lab repository key apt trusts."""
        key = self._host_key(host)
        for sub in ("etc/ssh/authorized_keys", "etc/apt/keyrings", "etc/apt/sources.list.d"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(key, root / "etc/ssh/ssh_host_ed25519_key")
        shutil.copy(key.with_suffix(".pub"), root / "etc/ssh/ssh_host_ed25519_key.pub")
        shutil.copy(self.ssh_key.with_suffix(".pub"), root / f"etc/ssh/authorized_keys/{images.LAB_USER}")
        shutil.copy(self.keyring, root / "etc/apt/keyrings" / repo.KEYRING_NAME)

    def _provision(self, host: LabHost) -> None:
        """Install the base (old) versions, hold one package and edit a conffile, as an admin would."""
        def sh(*argv: str) -> None:
            podman.exec_in(host.container, "env", "DEBIAN_FRONTEND=noninteractive", *argv)

        sh("chown", "-R", "root:root", "/etc/ssh", "/etc/apt/keyrings", "/etc/apt/sources.list.d")
        sh("apt-get", "-q", "update")
        sh("apt-get", "-q", "-y", "--no-install-recommends", "install", *base_install(host.release))
        sh("apt-mark", "hold", *HELD_PACKAGES)
        path, text = ADMIN_CONFFILE
        podman.run(["podman", "exec", "-i", host.container, "tee", path], stdin=text.encode())
        sh("apt-get", "clean")

    # --- status / down --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        hosts = []
        for host in self.hosts():
            item = host.as_dict()
            item["state"] = podman.container_state(host.container) or "missing"
            hosts.append(item)
        return {"up": bool(hosts) and all(h["state"] == "running" for h in hosts),
                "inventory": str(self.inventory_path) if hosts else None, "hosts": hosts}

    def down(self, purge_images: bool = False) -> dict[str, Any]:
        removed: list[str] = []
        names = {h.container for h in self.hosts()}
        listed = podman.podman("ps", "-a", "--filter", f"label=io.patchwave.lab={self.prefix}",
                               "--format", "{{.Names}}", check=False).stdout.split()
        for name in sorted(names | set(listed)):
            if podman.container_state(name) is not None:
                podman.podman("rm", "--force", "--time", "2", name)
                removed.append(f"container {name}")
        if podman.network_exists(self.network):
            podman.podman("network", "rm", "--force", self.network)
            removed.append(f"network {self.network}")
        repo.stop_gpg_agent(self.gnupghome)
        if self.dir.exists():
            shutil.rmtree(self.dir)
            removed.append(f"directory {self.dir}")
        if self.inventory_path.exists():
            self.inventory_path.unlink()
            removed.append(f"file {self.inventory_path}")
        if purge_images:
            removed.extend(f"image {ref}" for ref in images.remove_images())
        for line in removed:
            self.log(f"removed {line}")
        return {"removed": removed}

    # --- inventory ------------------------------------------------------------------------
    def extra_host_vars(self, host: LabHost) -> dict[str, Any]:
        return {}

    def inventory_text(self, hosts: list[LabHost]) -> str:
        groups: dict[str, dict[str, Any]] = {}
        for host in hosts:
            for group in host.groups:
                groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = {
                    "ansible_host": "127.0.0.1",
                    "ansible_port": host.ssh_port,
                    "patchwave_container": host.container,
                    "patchwave_release": host.release,
                    "patchwave_device_type": host.device_type,
                    "patchwave_owner": host.owner,
                    "patchwave_criticality": host.criticality,
                    **self.extra_host_vars(host),
                } if group == host.groups[0] else {}
        inventory = {
            "all": {
                "vars": {
                    "ansible_user": images.LAB_USER,
                    "ansible_ssh_private_key_file": str(self.ssh_key),
                    "ansible_ssh_common_args": (
                        f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
                        " -o IdentitiesOnly=yes"
                    ),
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "patchwave_reboot_command": REBOOT_COMMAND,
                    "patchwave_boot_time_command": BOOT_TIME_COMMAND,
                    "patchwave_advisories_dir": str(self.advisories_dir),
                },
                "children": groups,
            }
        }
        header = "# Generated by `patchwave lab up`; `patchwave lab down` removes it. Do not edit.\n"
        return header + yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_block(count: int, base_port: int | None, start: int) -> int:
    """The first of `count` free 127.0.0.1 ports: from `base_port` (all must be free), else the
    first free block from `start`."""
    if base_port is None:
        return _free_port_block(start, count)
    busy = [p for p in range(base_port, base_port + count) if not _port_free(p)]
    if busy:
        raise PatchwaveError(f"ports already in use on 127.0.0.1: {busy}; choose another --base-port")
    return base_port


def _free_port_block(start: int, count: int) -> int:
    for base in range(start, start + 2000, 100):
        if all(_port_free(p) for p in range(base, base + count)):
            return base
    raise PatchwaveError(f"no block of {count} free ports on 127.0.0.1 from {start}; pass --base-port")


def _wait_for_ssh(host: LabHost, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", host.ssh_port), timeout=3) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise PatchwaveError(f"{host.name}: sshd did not answer on 127.0.0.1:{host.ssh_port} within {timeout}s")
        time.sleep(0.5)
