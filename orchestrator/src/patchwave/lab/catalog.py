"""What the lab is made of: host templates and the packages of its apt repository.

The packages are small but real `.deb` files, chosen so that every hard case of patching has a
concrete instance: a failing postinst, a reboot request, a broken health check, a held package,
a new dependency and a conffile the admin changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    suite: str
    description: str
    depends: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    conffiles: tuple[str, ...] = ()
    postinst: str | None = None


def _script(body: str) -> str:
    return "#!/bin/sh\nset -e\n" + body.strip() + "\n"


_HEALTH_OK = _script('echo "pw-webapp healthy"\nexit 0')
_HEALTH_BROKEN = _script('echo "pw-webapp: cannot bind port" >&2\nexit 1')

PACKAGES: tuple[LabPackage, ...] = (
    LabPackage("pw-libssl", "1.0-1", SUITE_REGULAR, "lab TLS library",
               files={"/usr/lib/pw-libssl/VERSION": "1.0-1\n"}),
    LabPackage("pw-libssl", "1.0-2", SUITE_SECURITY, "lab TLS library (security fix)",
               files={"/usr/lib/pw-libssl/VERSION": "1.0-2\n"}),
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
    # hard case: the new version asks for a reboot
    LabPackage("pw-kernel", "6.1.0-1", SUITE_REGULAR, "lab kernel stand-in",
               files={"/boot/pw-kernel-6.1.0-1": "lab kernel 6.1.0-1\n"}),
    LabPackage("pw-kernel", "6.1.0-2", SUITE_SECURITY, "lab kernel stand-in (security fix)",
               files={"/boot/pw-kernel-6.1.0-2": "lab kernel 6.1.0-2\n"},
               postinst=_script(
                   'if [ "$1" = configure ]; then\n'
                   '  touch /var/run/reboot-required\n'
                   '  echo pw-kernel >> /var/run/reboot-required.pkgs\n'
                   'fi')),
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
    LabPackage("pw-tools-common", "2.0-1", SUITE_SECURITY, "lab admin tools, shared files",
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
)

# Base versions installed on every lab host at `lab up`; pw-pinned is then held and the
# pw-config conffile edited, as an admin would.
BASE_INSTALL: tuple[str, ...] = (
    "pw-libssl=1.0-1", "pw-tzdata=2026a-1", "pw-agent=1.0-1", "pw-kernel=6.1.0-1",
    "pw-webapp=1.0-1", "pw-pinned=1.0-1", "pw-tools=1.0-1", "pw-config=1.0-1",
)
HELD_PACKAGES: tuple[str, ...] = ("pw-pinned",)
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
