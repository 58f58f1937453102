"""The lab's signed apt repository: real `.deb` files in a regular and a security pocket.

Packages are built with dpkg-deb, indexed with apt-ftparchive and signed with a key the lab
generates (InRelease and Release.gpg); hosts trust only that key through `signed-by=`.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from patchwave.lab.catalog import PACKAGES, RELEASES, REPO_ORIGIN, SUITE_REGULAR, SUITE_SECURITY, LabPackage, suite
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
        "Priority: required" if pkg.essential else "Priority: optional",
    ]
    if pkg.source:
        lines.insert(1, f"Source: {pkg.source}")
    if pkg.essential:
        lines.append("Essential: yes")
    if pkg.pre_depends:
        lines.append(f"Pre-Depends: {', '.join(pkg.pre_depends)}")
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
        for name, body in (("postinst", pkg.postinst), ("prerm", pkg.prerm)):
            if body:
                script = debian / name
                script.write_text(body)
                script.chmod(0o755)
        for path, content in pkg.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o755 if content.startswith("#!") else 0o644)
        run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)])
    return out


CONTENT_FILE = ".patchwave-content"


def content_hash(packages: tuple[LabPackage, ...] = PACKAGES) -> str:
    """Identifies what a repository built from `packages` holds (written into it as CONTENT_FILE)."""
    return hashlib.sha256(repr((RELEASES, packages)).encode()).hexdigest()[:16]


def distinct(packages: tuple[LabPackage, ...]) -> list[LabPackage]:
    """Each (pocket, name, version) once: one pool per pocket is shared by every release, as
    Debian's archive has one pool for all its suites, so a package two releases carry must be
    the same package. ValueError when one is defined twice differently."""
    seen: dict[tuple[str, str, str], LabPackage] = {}
    for pkg in packages:
        key = (pkg.suite, pkg.name, pkg.version)
        if key not in seen:
            seen[key] = pkg
        elif replace(seen[key], releases=()) != replace(pkg, releases=()):
            raise ValueError(f"{pkg.name} {pkg.version} is defined twice, differently, in {pkg.suite}")
    return list(seen.values())


def build_repository(repo: Path, gnupghome: Path, keyring: Path, packages: tuple[LabPackage, ...] = PACKAGES) -> None:
    """(Re)build the whole repository; cheap enough (a few seconds) to do at every fresh `lab up`.
    A test that needs more packages builds its own repository with the lab key."""
    unique = distinct(packages)
    ensure_signing_key(gnupghome, keyring)
    if repo.exists():
        shutil.rmtree(repo)
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    for pkg in unique:
        pool = repo / "pool" / pkg.suite
        pool.mkdir(parents=True, exist_ok=True)
        build_deb(pkg, pool)
    for release in RELEASES:
        for pocket in (SUITE_REGULAR, SUITE_SECURITY):
            name = suite(release, pocket)
            offered = {(p.name, p.version) for p in packages
                       if p.suite == pocket and (not p.releases or release in p.releases)}
            label = "Patchwave Lab Security" if pocket == SUITE_SECURITY else "Patchwave Lab"
            options = {
                "Origin": REPO_ORIGIN, "Label": label, "Suite": name, "Codename": name,
                "Architectures": arch, "Components": "main",
                "Description": f"Patchwave lab packages for Debian {RELEASES[release]} (generated, signed by the lab key)",
            }
            (repo / "pool" / pocket).mkdir(parents=True, exist_ok=True)
            publish_suite(repo, name, f"pool/{pocket}", options, gnupghome, arch, only=offered)
    (repo / CONTENT_FILE).write_text(content_hash(packages) + "\n")
    world_readable(repo)


def publish_suite(repo: Path, name: str, pool: str, options: dict[str, str], gnupghome: Path, arch: str,
                  only: set[tuple[str, str]] | None = None) -> None:
    """Index the `.deb` files under `repo/pool` (only the (name, version) pairs in `only`, when
    given) as suite `name` (component main) and sign its Release as InRelease and Release.gpg
    with the lab key."""
    index_dir = repo / "dists" / name / "main" / f"binary-{arch}"
    index_dir.mkdir(parents=True)
    index = run(["apt-ftparchive", "packages", pool], cwd=repo).stdout
    if only is not None:
        index = "".join(stanza + "\n\n" for stanza in index.strip().split("\n\n")
                        if stanza and _name_version(stanza) in only)
    (index_dir / "Packages").write_text(index)
    with gzip.open(index_dir / "Packages.gz", "wt") as fh:
        fh.write(index)
    argv = ["apt-ftparchive"]
    for key, value in options.items():
        if value:
            argv += ["-o", f"APT::FTPArchive::Release::{key}={value}"]
    release = run([*argv, "release", f"dists/{name}"], cwd=repo).stdout
    release_file = repo / "dists" / name / "Release"
    release_file.write_text(release)
    _gpg(gnupghome, "--yes", "--local-user", KEY_UID, "--clearsign",
         "--output", str(release_file.with_name("InRelease")), str(release_file))
    _gpg(gnupghome, "--yes", "--local-user", KEY_UID, "--armor", "--detach-sign",
         "--output", str(release_file.with_name("Release.gpg")), str(release_file))


def _name_version(stanza: str) -> tuple[str, str]:
    fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
    return fields.get("Package", ""), fields.get("Version", "")


def world_readable(repo: Path) -> None:
    """On purpose: apt reads a mounted repository as its unprivileged _apt user."""
    for path in [repo, *repo.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def sources_entry(mount_point: str, release: str) -> str:
    """deb822 source for a host of `release`: its regular and its security suite. `copy:` (not
    `file:`) so apt fills its package cache, as it would when downloading from a mirror."""
    return (
        "Types: deb\n"
        f"URIs: copy:{mount_point}\n"
        f"Suites: {suite(release, SUITE_REGULAR)} {suite(release, SUITE_SECURITY)}\n"
        "Components: main\n"
        f"Signed-By: /etc/apt/keyrings/{KEYRING_NAME}\n"
    )
