"""Real distribution content for the lab: the Debian security archive's real updates for the
packages a lab image has installed, fetched once per machine from the machine's own mirrors.

For each release the controller's apt resolves, against the image's own dpkg status and the
machine's Debian and Debian security mirrors (read from its apt sources, never hard-coded),
what `apt-get dist-upgrade` would install: those are the real updates. Their `.deb` files, and
the main suite's `.deb` of every installed package (what a real host's repositories still hold
for a rollback), are downloaded by apt itself (which checks each against the signed index) and
kept by SHA-256 in a per-machine pool, so a machine downloads each file once. A manifest per
image records what belongs to which suite; `build_mirror` turns manifests into a signed mirror
tree (lab key) that the lab serves to its hosts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from patchwave.errors import PatchwaveError
from patchwave.lab import podman, repo

CONTENT_VERSION = "1"
ARCHIVE_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_RELEASE_FIELDS = ("Origin", "Label", "Suite", "Codename", "Version", "Date")


def machine_cache() -> Path:
    """Per machine, not per checkout: a clean clone reuses what an earlier one downloaded."""
    env = os.environ.get("PATCHWAVE_LAB_CACHE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/patchwave-lab")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "patchwave-lab"


def mirrors(sources_dir: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(Debian mirror, Debian security mirror) from this machine's apt sources."""
    main, security = "", ""
    for uri, suites in _source_entries(sources_dir):
        if uri.rstrip("/").endswith("/debian-security") or any(s.endswith("-security") for s in suites):
            security = security or uri
        elif uri.rstrip("/").endswith("/debian"):
            main = main or uri
    if not main or not security:
        raise PatchwaveError(f"{sources_dir}/sources.list(.d) names no Debian mirror and Debian security mirror: "
                             "the real-content lab fetches from both")
    return main, security


def _source_entries(sources_dir: Path) -> list[tuple[str, list[str]]]:
    entries: list[tuple[str, list[str]]] = []
    for path in sorted((sources_dir / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            if re.search(r"^Enabled:\s*no", stanza, re.M | re.I):
                continue
            uris = re.search(r"^URIs:\s*(.+)$", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites:
                entries.extend((uri, suites.group(1).split()) for uri in uris.group(1).split())
    for path in [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
                if match:
                    entries.append((match.group(1), [match.group(2)]))
    return entries


@dataclass(frozen=True)
class DebFile:
    name: str
    version: str
    arch: str
    sha256: str
    filename: str  # basename as the archive names it

    def pool_path(self, cache: Path) -> Path:
        return cache / "debs" / f"{self.sha256}.deb"


@dataclass(frozen=True)
class ReleaseContent:
    release: str
    image: str
    main: tuple[DebFile, ...]  # the installed versions, as the main suite holds them
    security: tuple[DebFile, ...]  # the pending real updates (and new packages they need)
    release_fields: dict[str, dict[str, str]]  # "main" / "security" -> Origin, Label, Suite, ...
    missing: tuple[str, ...] = ()  # installed name=version the main suite no longer has

    @property
    def updates(self) -> dict[str, str]:
        return {d.name: d.version for d in self.security}


def manifest_path(cache: Path, release: str, image: str) -> Path:
    key = hashlib.sha256(f"{CONTENT_VERSION}\n{release}\n{image}".encode()).hexdigest()[:12]
    return cache / "content" / f"{release}-{key}.json"


def load_manifest(path: Path) -> ReleaseContent:
    data = json.loads(path.read_text())
    return ReleaseContent(
        release=data["release"], image=data["image"],
        main=tuple(DebFile(**d) for d in data["main"]), security=tuple(DebFile(**d) for d in data["security"]),
        release_fields=data["release_fields"], missing=tuple(data.get("missing", ())))


def ensure_content(release: str, image: str, cache: Path, log: list[str]) -> ReleaseContent:
    """The real content for `image` (a lab image of `release`): from the cache, else fetched."""
    path = manifest_path(cache, release, image)
    if path.is_file():
        content = load_manifest(path)
        if all(d.pool_path(cache).is_file() for d in (*content.main, *content.security)):
            return content
    (cache / "debs").mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    main_uri, security_uri = mirrors()
    with tempfile.TemporaryDirectory(prefix=f"pw-content-{release}-", dir=cache) as tmp:
        apt = _Apt(Path(tmp), release, main_uri, security_uri)
        apt.status.write_text(podman.podman("run", "--rm", "--network", "none", image,
                                            "cat", "/var/lib/dpkg/status").stdout)
        apt.update()
        installed = _installed(apt.status.read_text())
        updates = apt.simulated_upgrade()
        main_files, missing = apt.describe(installed)
        security_files, gone = apt.describe(updates)
        if gone:
            raise PatchwaveError(f"{release}: the security mirror lists updates it cannot describe: {', '.join(gone)}")
        fetched = apt.fetch([d for d in (*main_files, *security_files) if not d.pool_path(cache).is_file()], cache)
        content = ReleaseContent(release=release, image=image, main=tuple(main_files), security=tuple(security_files),
                                 release_fields=apt.release_fields(), missing=tuple(missing))
    log.append(f"{release}: {len(content.security)} real update(s) pending on {image}; downloaded {fetched} file(s) "
               f"from the machine's Debian mirrors into {cache / 'debs'}")
    tmp_manifest = path.with_suffix(".tmp")
    tmp_manifest.write_text(json.dumps({**asdict(content), "main": [asdict(d) for d in content.main],
                                        "security": [asdict(d) for d in content.security]}, indent=1) + "\n")
    tmp_manifest.replace(path)
    return content


def _installed(status: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for stanza in status.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version|Status|Architecture): (.+)$", stanza, re.M))
        if fields.get("Status", "").endswith(" installed") and "Version" in fields:
            found[fields["Package"]] = fields["Version"]
    return found


class _Apt:
    """The controller's apt, pointed at one release's mirrors and one image's dpkg status; it
    verifies the mirrors' signatures with the Debian archive keyring."""

    def __init__(self, work: Path, release: str, main_uri: str, security_uri: str) -> None:
        self.work, self.release = work, release
        for sub in ("lists/partial", "cache/archives/partial", "parts", "prefs.d", "sources.d", "download"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        self.status = work / "status"
        signed = f"[signed-by={ARCHIVE_KEYRING}]"
        (work / "sources.list").write_text(f"deb {signed} {main_uri} {release} main\n"
                                           f"deb {signed} {security_uri} {release}-security main\n")
        options = {
            "Dir::State::status": self.status, "Dir::Etc::SourceList": work / "sources.list",
            "Dir::Etc::SourceParts": work / "sources.d", "Dir::Etc::Parts": work / "parts",
            "Dir::Etc::Preferences": work / "prefs", "Dir::Etc::PreferencesParts": work / "prefs.d",
            "Dir::State::Lists": work / "lists", "Dir::Cache": work / "cache",
            "Debug::NoLocking": "1", "APT::Sandbox::User": "root", "Acquire::Languages": "none",
            "APT::Get::AllowUnauthenticated": "false",
        }
        self.options = [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        return podman.run([tool, "-q", *self.options, *args], cwd=cwd, timeout=1800).stdout

    def update(self) -> None:
        self.run("apt-get", "--error-on=any", "update")

    def simulated_upgrade(self) -> dict[str, str]:
        out = self.run("apt-get", "-s", "dist-upgrade")
        return dict(re.findall(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ", out, re.M))

    def describe(self, wanted: dict[str, str]) -> tuple[list[DebFile], list[str]]:
        """The index entry of each name=version; those the indexes do not hold are returned apart."""
        if not wanted:
            return [], []
        out = podman.run(["apt-cache", *self.options, "show", *(f"{n}={v}" for n, v in sorted(wanted.items()))],
                         check=False).stdout
        found: dict[str, DebFile] = {}
        for stanza in out.split("\n\n"):
            fields = dict(re.findall(r"^(Package|Version|Architecture|SHA256|Filename): (.+)$", stanza, re.M))
            name = fields.get("Package", "")
            if name in wanted and fields.get("Version") == wanted[name] and name not in found:
                found[name] = DebFile(name=name, version=wanted[name], arch=fields["Architecture"],
                                      sha256=fields["SHA256"], filename=fields["Filename"].rsplit("/", 1)[-1])
        return [found[n] for n in sorted(found)], [f"{n}={v}" for n, v in sorted(wanted.items()) if n not in found]

    def fetch(self, files: list[DebFile], cache: Path) -> int:
        """apt-get download (apt checks each file against the signed index), then into the pool
        by SHA-256, checked once more."""
        if not files:
            return 0
        target = self.work / "download"
        self.run("apt-get", "download", *(f"{d.name}={d.version}" for d in files), cwd=target)
        for deb in files:
            got = next((p for p in target.glob(f"{deb.name}_*.deb")
                        if p.name.split("_")[1].replace("%3a", ":") == deb.version), None)
            if got is None:
                raise PatchwaveError(f"apt-get download left no file for {deb.name}={deb.version}")
            digest = hashlib.sha256(got.read_bytes()).hexdigest()
            if digest != deb.sha256:
                raise PatchwaveError(f"{got.name}: SHA-256 {digest} is not the index's {deb.sha256}")
            tmp = deb.pool_path(cache).with_suffix(".part")
            shutil.move(str(got), tmp)
            tmp.replace(deb.pool_path(cache))
        return len(files)

    def release_fields(self) -> dict[str, dict[str, str]]:
        fields = {}
        for kind, suite in (("main", self.release), ("security", f"{self.release}-security")):
            path = next((p for p in (self.work / "lists").glob(f"*_dists_{suite}_InRelease")), None)
            text = path.read_text() if path else ""
            fields[kind] = dict(re.findall(rf"^({'|'.join(_RELEASE_FIELDS)}): (.+)$", text, re.M))
        return fields


def build_mirror(tree: Path, contents: list[ReleaseContent], cache: Path, gnupghome: Path, keyring: Path) -> None:
    """A signed Debian-style mirror at `tree`: suites `<release>` and `<release>-security` for each
    content, pools hard-linked from the machine cache, indexes made and signed anew with the lab key
    (the Release fields Origin, Label, Suite and Version are the archive's own)."""
    repo.ensure_signing_key(gnupghome, keyring)
    if tree.exists():
        shutil.rmtree(tree)
    for content in contents:
        for kind, files in (("main", content.main), ("security", content.security)):
            suite = content.release if kind == "main" else f"{content.release}-security"
            pool = tree / "pool" / suite
            pool.mkdir(parents=True)
            for deb in files:
                _link(deb.pool_path(cache), pool / deb.filename)
            upstream = content.release_fields.get(kind, {})
            options = {
                "Origin": upstream.get("Origin", "Debian"), "Label": upstream.get("Label", "Debian"),
                "Suite": upstream.get("Suite", suite), "Codename": suite, "Version": upstream.get("Version", ""),
                "Architectures": "amd64 all", "Components": "main",
                "Description": f"Patchwave lab copy of {suite} (real packages, signed by the lab key)",
            }
            repo.publish_suite(tree, suite, f"pool/{suite}", options, gnupghome, arch="amd64")
    repo.world_readable(tree)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
