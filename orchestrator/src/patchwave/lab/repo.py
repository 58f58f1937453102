"""The lab's signed apt repository: real `.deb` files in a regular and a security pocket.

Packages are built with dpkg-deb, indexed with apt-ftparchive and signed with a key the lab
generates (InRelease and Release.gpg); hosts trust only that key through `signed-by=`.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

from patchwave.lab.catalog import PACKAGES, REPO_ORIGIN, SUITE_REGULAR, SUITE_SECURITY, LabPackage
from patchwave.lab.podman import run

KEY_UID = "Patchwave Lab Repository <lab-repo@patchwave.invalid>"
KEYRING_NAME = "patchwave-lab.gpg"


def _gpg(gnupghome: Path, *args: str, stdin: bytes | None = None) -> str:
    return run(["gpg", "--homedir", str(gnupghome), "--batch", "--no-tty", *args], stdin=stdin).stdout


def ensure_signing_key(gnupghome: Path, keyring: Path) -> None:
    if keyring.is_file() and keyring.stat().st_size > 0:
        return
    gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
    _gpg(gnupghome, "--passphrase", "", "--quick-generate-key", KEY_UID, "ed25519", "sign", "never")
    # binary keyring for signed-by=; gpg writes it itself (its output is not text)
    _gpg(gnupghome, "--yes", "--output", str(keyring), "--export", KEY_UID)


def stop_gpg_agent(gnupghome: Path) -> None:
    if gnupghome.is_dir():
        run(["gpgconf", "--homedir", str(gnupghome), "--kill", "all"], check=False)


def _control(pkg: LabPackage) -> str:
    lines = [
        f"Package: {pkg.name}",
        f"Version: {pkg.version}",
        "Architecture: all",
        "Maintainer: Patchwave Lab <lab-repo@patchwave.invalid>",
        "Section: misc",
        "Priority: optional",
    ]
    if pkg.depends:
        lines.append(f"Depends: {', '.join(pkg.depends)}")
    lines += [f"Description: {pkg.description}", " Built by the Patchwave lab to exercise real patching."]
    return "\n".join(lines) + "\n"


def build_deb(pkg: LabPackage, out_dir: Path) -> Path:
    out = out_dir / f"{pkg.name}_{pkg.version}_all.deb"
    with tempfile.TemporaryDirectory(prefix="pw-deb-") as tmp:
        root = Path(tmp)
        debian = root / "DEBIAN"
        debian.mkdir(mode=0o755)
        (debian / "control").write_text(_control(pkg))
        if pkg.conffiles:
            (debian / "conffiles").write_text("".join(f"{c}\n" for c in pkg.conffiles))
        if pkg.postinst:
            script = debian / "postinst"
            script.write_text(pkg.postinst)
            script.chmod(0o755)
        for path, content in pkg.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o755 if content.startswith("#!") else 0o644)
        run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)])
    return out


def build_repository(repo: Path, gnupghome: Path, keyring: Path, packages: tuple[LabPackage, ...] = PACKAGES) -> None:
    """(Re)build the whole repository; cheap enough (a few seconds) to do at every fresh `lab up`.
    A test that needs more packages builds its own repository with the lab key."""
    ensure_signing_key(gnupghome, keyring)
    if repo.exists():
        shutil.rmtree(repo)
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    for suite in (SUITE_REGULAR, SUITE_SECURITY):
        pool = repo / "pool" / suite
        pool.mkdir(parents=True)
        for pkg in packages:
            if pkg.suite == suite:
                build_deb(pkg, pool)
        label = "Patchwave Lab Security" if suite == SUITE_SECURITY else "Patchwave Lab"
        options = {
            "Origin": REPO_ORIGIN, "Label": label, "Suite": suite, "Codename": suite,
            "Architectures": arch, "Components": "main",
            "Description": "Patchwave lab packages (generated, signed by the lab key)",
        }
        publish_suite(repo, suite, f"pool/{suite}", options, gnupghome, arch)
    world_readable(repo)


def publish_suite(repo: Path, suite: str, pool: str, options: dict[str, str], gnupghome: Path, arch: str) -> None:
    """Index the `.deb` files under `repo/pool` as suite `suite` (component main) and sign its
    Release as InRelease and Release.gpg with the lab key."""
    index_dir = repo / "dists" / suite / "main" / f"binary-{arch}"
    index_dir.mkdir(parents=True)
    index = run(["apt-ftparchive", "packages", pool], cwd=repo).stdout
    (index_dir / "Packages").write_text(index)
    with gzip.open(index_dir / "Packages.gz", "wt") as fh:
        fh.write(index)
    argv = ["apt-ftparchive"]
    for key, value in options.items():
        if value:
            argv += ["-o", f"APT::FTPArchive::Release::{key}={value}"]
    release = run([*argv, "release", f"dists/{suite}"], cwd=repo).stdout
    release_file = repo / "dists" / suite / "Release"
    release_file.write_text(release)
    _gpg(gnupghome, "--yes", "--local-user", KEY_UID, "--clearsign",
         "--output", str(release_file.with_name("InRelease")), str(release_file))
    _gpg(gnupghome, "--yes", "--local-user", KEY_UID, "--armor", "--detach-sign",
         "--output", str(release_file.with_name("Release.gpg")), str(release_file))


def world_readable(repo: Path) -> None:
    """On purpose: apt reads a mounted repository as its unprivileged _apt user."""
    for path in [repo, *repo.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def sources_entry(mount_point: str) -> str:
    """deb822 source for the hosts. `copy:` (not `file:`) so apt really fills its package cache,
    as it would when downloading from a mirror; staging depends on that."""
    return (
        "Types: deb\n"
        f"URIs: copy:{mount_point}\n"
        f"Suites: {SUITE_REGULAR} {SUITE_SECURITY}\n"
        "Components: main\n"
        f"Signed-By: /etc/apt/keyrings/{KEYRING_NAME}\n"
    )
