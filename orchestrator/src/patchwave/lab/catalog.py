"""What the lab is made of: host templates and the packages of its apt repository.

The packages are small but real `.deb` files, chosen so that every hard case of patching has a
concrete instance: a failing postinst, a reboot request, a broken health check, a held package,
a new dependency, a conffile the admin changed, different versions per release, a Pre-Depends
chain at exact versions (as PAM's), an essential package, and a running service that maps an
updated library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from debian.debian_support import Version

RELEASES: dict[str, str] = {"bullseye": "11", "bookworm": "12", "trixie": "13"}

# The regular pocket holds the base versions and ordinary updates; security fixes are published
# in their own pocket, as Debian does.
SUITE_REGULAR = "patchwave-lab"
SUITE_SECURITY = "patchwave-lab-security"
REPO_ORIGIN = "Patchwave Lab"


@dataclass(frozen=True)
class LabPackage:
    name: str
    version: str
    suite: str  # the pocket: SUITE_REGULAR or SUITE_SECURITY
    description: str
    depends: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    conffiles: tuple[str, ...] = ()
    postinst: str | None = None
    prerm: str | None = None
    pre_depends: tuple[str, ...] = ()
    essential: bool = False
    source: str | None = None  # the source package, when its name differs
    releases: tuple[str, ...] = ()  # the releases whose suites carry it; () = every release


def suite(release: str, pocket: str) -> str:
    """The lab repository's suite of `pocket` for `release`: patchwave-lab-bookworm-security."""
    if pocket not in (SUITE_REGULAR, SUITE_SECURITY):
        raise ValueError(f"no lab pocket {pocket!r}")
    return f"{SUITE_REGULAR}-{release}" + pocket.removeprefix(SUITE_REGULAR)


def _script(body: str) -> str:
    return "#!/bin/sh\nset -e\n" + body.strip() + "\n"


_HEALTH_OK = _script('echo "pw-webapp healthy"\nexit 0')
_HEALTH_BROKEN = _script('echo "pw-webapp: cannot bind port" >&2\nexit 1')

# --- packages whose versions differ per release, as Debian's do -------------------------------
# (installed, security update) per release
LIBSSL_VERSIONS = {"bullseye": ("0.9.8-5", "0.9.8-5+deb11u1"), "bookworm": ("1.0-1", "1.0-2"),
                   "trixie": ("1.1-1", "1.1-1+deb13u1")}
KERNEL_VERSIONS = {"bullseye": ("5.10.0-1", "5.10.0-2"), "bookworm": ("6.1.0-1", "6.1.0-2"),
                   "trixie": ("6.12.0-1", "6.12.0-2")}
PAM_VERSIONS = {"bullseye": ("1.4.0-9+deb11u1", "1.4.0-9+deb11u2"), "bookworm": ("1.5.2-6", "1.5.2-6+deb12u1"),
                "trixie": ("1.7.0-3", "1.7.0-3+deb13u1")}
BASE_VERSIONS = {release: (f"{number}.1-1", f"{number}.1-2") for release, number in RELEASES.items()}

# the "shared object" pw-httpd maps as code; an update replaces it, the running service keeps the old one
LIBSSL_SO = "/usr/lib/pw-libssl/libpwssl.so.1"
HTTPD_PORT = 8180  # loopback only; 8080 is left to tests that start their own listener


def _note(pocket: str) -> str:
    return " (security fix)" if pocket == SUITE_SECURITY else ""


def _libssl(release: str, version: str, pocket: str) -> LabPackage:
    note = _note(pocket)
    return LabPackage("pw-libssl", version, pocket, f"lab TLS library{note}", releases=(release,),
                      files={"/usr/lib/pw-libssl/VERSION": f"{version}\n", LIBSSL_SO: f"pw-libssl {version}\n"})


def _kernel(release: str, version: str, pocket: str) -> LabPackage:
    if pocket == SUITE_REGULAR:
        return LabPackage("pw-kernel", version, pocket, "lab kernel stand-in", releases=(release,),
                          files={f"/boot/pw-kernel-{version}": f"lab kernel {version}\n"})
    # hard case: the new version asks for a reboot
    return LabPackage("pw-kernel", version, pocket, "lab kernel stand-in (security fix)", releases=(release,),
                      files={f"/boot/pw-kernel-{version}": f"lab kernel {version}\n"},
                      postinst=_script('if [ "$1" = configure ]; then\n'
                                       '  touch /var/run/reboot-required\n'
                                       '  echo pw-kernel >> /var/run/reboot-required.pkgs\n'
                                       'fi'))


def _pam(release: str, version: str, pocket: str) -> tuple[LabPackage, ...]:
    """Hard case, as PAM is in Debian: one source, three binaries; the modules Pre-Depend on
    their helper binaries at exactly their own version, so no order of single `dpkg -i` calls
    downgrades them."""
    note = _note(pocket)

    def binary(name: str, what: str, files: dict[str, str], depends: tuple[str, ...] = (),
               pre_depends: tuple[str, ...] = ()) -> LabPackage:
        return LabPackage(name, version, pocket, f"lab PAM {what}{note}", depends=depends, files=files,
                          pre_depends=pre_depends, source="pw-pam", releases=(release,))

    return (
        binary("pw-pam-modules-bin", "helper binaries",
               {"/usr/sbin/pw-pam-helper": _script(f'echo "pw-pam-helper {version}"')}),
        binary("pw-pam-modules", "modules", {"/usr/lib/pw-pam/VERSION": f"{version}\n"},
               pre_depends=(f"pw-pam-modules-bin (= {version})",)),
        binary("pw-pam-runtime", "runtime configuration", {"/usr/share/pw-pam-runtime/VERSION": f"{version}\n"},
               depends=(f"pw-pam-modules (>= {version})",)),
    )


def _base(release: str, version: str, pocket: str) -> LabPackage:
    """Hard case: an essential package (dpkg and apt refuse to remove it) at the top of a
    Pre-Depends chain: pw-base -> pw-pam-modules -> pw-pam-modules-bin."""
    note = _note(pocket)
    pam = PAM_VERSIONS[release][1 if pocket == SUITE_SECURITY else 0]
    return LabPackage("pw-base", version, pocket, f"lab essential base system{note}", essential=True,
                      pre_depends=(f"pw-pam-modules (>= {pam})",), releases=(release,),
                      files={"/usr/lib/pw-base/VERSION": f"{version}\n"})


_HTTPD = f"""#!/usr/bin/python3
# pw-httpd: answers with the pw-libssl it loaded. It maps {LIBSSL_SO} as code, as a daemon
# maps a shared library, so after an update it runs the old copy until it restarts.
import http.server
import mmap

with open("{LIBSSL_SO}", "rb") as lib:
    LOADED = mmap.mmap(lib.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_EXEC)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = LOADED[:].split(b"\\n", 1)[0] + b"\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", {HTTPD_PORT}), Handler).serve_forever()
"""

def init_script(name: str, summary: str, start: str) -> str:
    """A SysV init script for lab service `name` (pid file /run/NAME.pid): `start` is what
    start-stop-daemon runs, for example `--exec /usr/bin/python3 -- /usr/sbin/pw-httpd`."""
    return f"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          {name}
# Required-Start:    $network
# Required-Stop:     $network
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: {summary}
### END INIT INFO
PIDFILE=/run/{name}.pid
case "$1" in
  start)
    exec start-stop-daemon --start --quiet --background --make-pidfile --pidfile "$PIDFILE" \\
      {start} ;;
  stop)
    start-stop-daemon --stop --quiet --oknodo --retry 5 --pidfile "$PIDFILE" && rm -f "$PIDFILE" ;;
  restart|force-reload)
    "$0" stop && "$0" start ;;
  status)
    start-stop-daemon --status --pidfile "$PIDFILE" ;;
  *)
    echo "usage: $0 start|stop|restart|status" >&2; exit 3 ;;
esac
"""


_HTTPD_INIT = init_script("pw-httpd", "Patchwave lab web service (runs on pw-libssl)",
                          "--exec /usr/bin/python3 -- /usr/sbin/pw-httpd")


def _per_release() -> tuple[LabPackage, ...]:
    packages: list[LabPackage] = []
    for release in RELEASES:
        for index, pocket in enumerate((SUITE_REGULAR, SUITE_SECURITY)):
            packages.append(_libssl(release, LIBSSL_VERSIONS[release][index], pocket))
            packages.append(_kernel(release, KERNEL_VERSIONS[release][index], pocket))
            packages.extend(_pam(release, PAM_VERSIONS[release][index], pocket))
            packages.append(_base(release, BASE_VERSIONS[release][index], pocket))
    return tuple(packages)


PACKAGES: tuple[LabPackage, ...] = (
    *_per_release(),
    LabPackage("pw-tzdata", "2026a-1", SUITE_REGULAR, "lab time zone data",
               files={"/usr/share/pw-tzdata/VERSION": "2026a\n"}),
    LabPackage("pw-tzdata", "2026b-1", SUITE_REGULAR, "lab time zone data (regular update)",
               files={"/usr/share/pw-tzdata/VERSION": "2026b\n"}),
    # hard case: the new version's postinst fails
    LabPackage("pw-agent", "1.0-1", SUITE_REGULAR, "lab monitoring agent",
               files={"/usr/lib/pw-agent/VERSION": "1.0-1\n"}),
    LabPackage("pw-agent", "1.1-1", SUITE_REGULAR, "lab monitoring agent (postinst fails)",
               files={"/usr/lib/pw-agent/VERSION": "1.1-1\n"},
               postinst=_script('echo "pw-agent: cannot migrate state" >&2\nexit 1')),
    # hard case: the new version breaks the health check
    LabPackage("pw-webapp", "1.0-1", SUITE_REGULAR, "lab web application",
               files={"/usr/bin/pw-webapp-health": _HEALTH_OK}),
    LabPackage("pw-webapp", "1.1-1", SUITE_REGULAR, "lab web application (breaks health check)",
               files={"/usr/bin/pw-webapp-health": _HEALTH_BROKEN}),
    # hard case: held with apt-mark hold on every host
    LabPackage("pw-pinned", "1.0-1", SUITE_REGULAR, "lab package the admin holds",
               files={"/usr/lib/pw-pinned/VERSION": "1.0-1\n"}),
    LabPackage("pw-pinned", "1.1-1", SUITE_SECURITY, "lab package the admin holds (security fix)",
               files={"/usr/lib/pw-pinned/VERSION": "1.1-1\n"}),
    # hard case: the new version needs a package that is not installed yet
    LabPackage("pw-tools", "1.0-1", SUITE_REGULAR, "lab admin tools",
               files={"/usr/lib/pw-tools/VERSION": "1.0-1\n"}),
    LabPackage("pw-tools-common", "2.0-1", SUITE_SECURITY, "lab admin tools, shared files", source="pw-tools",
               files={"/usr/share/pw-tools-common/VERSION": "2.0-1\n"}),
    LabPackage("pw-tools", "2.0-1", SUITE_SECURITY, "lab admin tools (security fix)",
               depends=("pw-tools-common (>= 2.0-1)",),
               files={"/usr/lib/pw-tools/VERSION": "2.0-1\n"}),
    # hard case: a conffile the admin changed; the new version changes it too
    LabPackage("pw-config", "1.0-1", SUITE_REGULAR, "lab daemon configuration",
               files={"/etc/pw-config/pw.conf": "# pw-config 1.0\nlisten = 127.0.0.1\n"},
               conffiles=("/etc/pw-config/pw.conf",)),
    LabPackage("pw-config", "1.1-1", SUITE_SECURITY, "lab daemon configuration (security fix)",
               files={"/etc/pw-config/pw.conf": "# pw-config 1.1\nlisten = 127.0.0.1\ntls = on\n"},
               conffiles=("/etc/pw-config/pw.conf",)),
    # hard case: a running service that maps an updated library: after a pw-libssl update it
    # runs old code until restarted (restart: services restarts it)
    LabPackage("pw-httpd", "1.0-1", SUITE_REGULAR, "lab web service on pw-libssl",
               depends=("pw-libssl", "python3"),
               files={"/usr/sbin/pw-httpd": _HTTPD, "/etc/init.d/pw-httpd": _HTTPD_INIT},
               conffiles=("/etc/init.d/pw-httpd",),
               postinst=_script('if [ "$1" = configure ]; then /etc/init.d/pw-httpd restart; fi'),
               prerm=_script('if [ -x /etc/init.d/pw-httpd ]; then /etc/init.d/pw-httpd stop; fi')),
)


def carried(release: str, pocket: str | None = None) -> list[LabPackage]:
    """The packages the lab repository offers a host of `release` (in `pocket`, or in both)."""
    return [p for p in PACKAGES if (pocket is None or p.suite == pocket) and (not p.releases or release in p.releases)]


def _versions(name: str, release: str, pocket: str | None = None) -> list[str]:
    found = sorted(Version(p.version) for p in carried(release, pocket) if p.name == name)
    if not found:
        raise KeyError(f"the lab has no {name} for {release}")
    return [str(v) for v in found]


def installed_version(name: str, release: str) -> str:
    """The version `lab up` installs of `name` on a host of `release`: the oldest of the regular pocket."""
    return _versions(name, release, SUITE_REGULAR)[0]


def update_version(name: str, release: str) -> str:
    """The newest version of `name` the lab repository offers a host of `release`."""
    return _versions(name, release)[-1]


def base_install(release: str) -> tuple[str, ...]:
    """What `lab up` installs on a host of `release`: every package of the regular pocket at its
    oldest version; pw-pinned is then held and the pw-config conffile edited, as an admin would."""
    names = dict.fromkeys(p.name for p in carried(release, SUITE_REGULAR))
    return tuple(f"{name}={installed_version(name, release)}" for name in names)


HELD_PACKAGES: tuple[str, ...] = ("pw-pinned",)


def security_updates(release: str) -> dict[str, str]:
    """What a host of `release` has pending from the security pocket, held packages aside:
    {name: newest version}."""
    names = dict.fromkeys(p.name for p in carried(release, SUITE_SECURITY) if p.name not in HELD_PACKAGES)
    return {name: update_version(name, release) for name in names}
ADMIN_CONFFILE = ("/etc/pw-config/pw.conf", "# edited by the lab admin\nlisten = 0.0.0.0\n")


@dataclass(frozen=True)
class HostTemplate:
    name: str
    release: str
    group: str
    device_type: str
    owner: str
    criticality: int


# The default fleet: mixed releases, three groups, two device types. `lab up --hosts N` cycles
# through these (numbering past the first round).
HOST_TEMPLATES: tuple[HostTemplate, ...] = (
    HostTemplate("web1", "bookworm", "web", "server", "team-web", 2),
    HostTemplate("web2", "trixie", "web", "server", "team-web", 3),
    HostTemplate("db1", "bullseye", "db", "server", "team-data", 3),
    HostTemplate("db2", "bookworm", "db", "server", "team-data", 3),
    HostTemplate("ws1", "bookworm", "workstations", "workstation", "alice", 1),
    HostTemplate("ws2", "bullseye", "workstations", "workstation", "bob", 1),
)


def fleet(count: int) -> list[HostTemplate]:
    if count < 1:
        raise ValueError("a lab needs at least one host")
    hosts = []
    for index in range(count):
        template = HOST_TEMPLATES[index % len(HOST_TEMPLATES)]
        rounds = index // len(HOST_TEMPLATES)
        if rounds:
            stem = template.name.rstrip("0123456789")
            number = int(template.name[len(stem):]) + 2 * rounds
            template = HostTemplate(f"{stem}{number}", template.release, template.group,
                                    template.device_type, template.owner, template.criticality)
        hosts.append(template)
    return hosts
