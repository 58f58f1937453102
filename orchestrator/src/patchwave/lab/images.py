"""Debian base images for lab hosts, built with debootstrap and cached by content.

No container registry is reachable, so each release's root filesystem comes from debootstrap
against the Debian mirror the machine's own apt sources use, and is imported into podman.
The image tag carries a hash of everything that goes into it, so a changed recipe builds anew
and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from patchwave.errors import PatchwaveError
from patchwave.lab import podman
from patchwave.lab.catalog import RELEASES

IMAGE_REPO = "localhost/patchwave-lab"
IMAGE_PACKAGES = ("openssh-server", "python3", "sudo", "procps", "iproute2", "dpkg-repack")
LAB_USER = "patchwave"

# sshd runs as PID 1 so that `kill -TERM 1` is a real reboot (the container restarts).
BOOT_CMD = '["/bin/sh", "-c", "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e"]'

_SSHD_CONFIG = f"""# Patchwave lab host: keys only, host key provided by the lab
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
HostKey /etc/ssh/ssh_host_ed25519_key
AllowUsers {LAB_USER}
"""
_RECIPE_VERSION = "1"


def recipe_hash(release: str, extra: tuple[str, ...] = ()) -> str:
    recipe = "\n".join([_RECIPE_VERSION, release, *IMAGE_PACKAGES, *extra, _SSHD_CONFIG, BOOT_CMD])
    return hashlib.sha256(recipe.encode()).hexdigest()[:10]


def image_ref(release: str, extra: tuple[str, ...] = ()) -> str:
    return f"{IMAGE_REPO}:{release}-{recipe_hash(release, extra)}"


def debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt already uses (never a hard-coded host)."""
    candidates: list[str] = []
    deb822 = sorted((sources_dir / "sources.list.d").glob("*.sources"))
    for path in deb822:
        for stanza in path.read_text().split("\n\n"):
            if "Enabled: no" in stanza:
                continue
            uris = re.search(r"^URIs:\s*(.+)$", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and any(not s.endswith(("-security", "-updates")) for s in suites.group(1).split()):
                candidates.extend(uris.group(1).split())
    legacy = [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*.list"))]
    for path in legacy:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if match and not match.group(2).endswith(("-security", "-updates")):
                candidates.append(match.group(1))
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    raise PatchwaveError(f"no Debian mirror found in {sources_dir}/sources.list(.d): cannot debootstrap lab images")


def ensure_image(release: str, cache_dir: Path, log: list[str], extra: tuple[str, ...] = ()) -> str:
    """The cached image of `release` (built when missing); `extra` packages make a variant
    (the baseline benchmark's OpenSCAP host)."""
    ref = image_ref(release, extra)
    if podman.image_exists(ref):
        return ref
    if release not in RELEASES:
        raise PatchwaveError(f"unknown lab release {release!r}; known: {', '.join(RELEASES)}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    log.append(f"building image {ref} with debootstrap from the machine's Debian mirror")
    with tempfile.TemporaryDirectory(prefix=f"pw-{release}-", dir=cache_dir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        podman.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join((*IMAGE_PACKAGES, *extra))}",
             release, str(rootfs), mirror],
            timeout=1800,
        )
        _customise(rootfs)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            ["podman", "import", "--change", f"CMD {BOOT_CMD}", "-", ref],
            stdin=tar.stdout, capture_output=True, text=True, env=podman._env(), check=False,
        )
        if tar.stdout is not None:
            tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise PatchwaveError(f"podman import of {ref} failed: {imp.stderr.strip()}")
    return ref


def _customise(rootfs: Path) -> None:
    (rootfs / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/ssh/sshd_config.d/patchwave-lab.conf").write_text(_SSHD_CONFIG)
    (rootfs / "etc/ssh/authorized_keys").mkdir(mode=0o755, exist_ok=True)
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # each host gets its own key from the lab, which also writes known_hosts
    podman.run(["chroot", str(rootfs), "useradd", "--create-home", "--shell", "/bin/bash", LAB_USER])
    sudoers = rootfs / "etc/sudoers.d" / LAB_USER
    sudoers.write_text(f"{LAB_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    # offline hosts: only the lab repository is configured, at `lab up`
    (rootfs / "etc/apt/sources.list").write_text("")
    for stale in (rootfs / "etc/apt/sources.list.d").glob("*"):
        stale.unlink()
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for lists in (rootfs / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()


def remove_images() -> list[str]:
    proc = podman.podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO, check=False)
    refs = [line for line in proc.stdout.split() if line.startswith(IMAGE_REPO)]
    for ref in refs:
        podman.podman("rmi", "--force", ref, check=False)
    return refs
