"""The host's release and OSV ecosystem from its os-release file (collection module_utils)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.patchwave.endpoint.plugins.module_utils import osrelease

# the files as the releases ship them (base-files / Ubuntu's base-files), verbatim
BOOKWORM = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""
BULLSEYE = BOOKWORM.replace("12", "11").replace("bookworm", "bullseye")
TRIXIE = BOOKWORM.replace("12", "13").replace("bookworm", "trixie")
TESTING = """\
PRETTY_NAME="Debian GNU/Linux trixie/sid"
NAME="Debian GNU/Linux"
VERSION_CODENAME=trixie
ID=debian
HOME_URL="https://www.debian.org/"
"""
JAMMY = """\
PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=jammy
"""
ORACULAR = """\
PRETTY_NAME="Ubuntu 24.10"
NAME="Ubuntu"
VERSION_ID="24.10"
VERSION="24.10 (Oracular Oriole)"
VERSION_CODENAME=oracular
ID=ubuntu
ID_LIKE=debian
"""
MINT = """\
NAME="Linux Mint"
VERSION="21.3 (Virginia)"
ID=linuxmint
ID_LIKE="ubuntu debian"
VERSION_ID="21.3"
UBUNTU_CODENAME=jammy
"""


@pytest.mark.parametrize(("text", "ecosystem"), [
    (BOOKWORM, "Debian:12"), (BULLSEYE, "Debian:11"), (TRIXIE, "Debian:13"),
    (TESTING, "Debian:trixie"),  # testing/unstable: no VERSION_ID, named by its codename
    ("ID=debian\n", "Debian"),
    (JAMMY, "Ubuntu:22.04:LTS"), (ORACULAR, "Ubuntu:24.10"),
    (MINT, ""),  # a derivative is not Ubuntu's archive: unknown, not guessed
    ("", ""),
])
def test_ecosystem_of_real_os_release_files(text: str, ecosystem: str) -> None:
    assert osrelease.ecosystem(osrelease.parse(text)) == ecosystem


def test_describe_gives_the_fields_patchwave_uses() -> None:
    assert osrelease.describe(osrelease.parse(BOOKWORM)) == {
        "id": "debian", "version_id": "12", "version_codename": "bookworm", "name": "Debian GNU/Linux",
        "ecosystem": "Debian:12"}
    assert osrelease.describe({}) == {"id": "", "version_id": "", "version_codename": "", "name": "",
                                      "ecosystem": ""}


def test_quoting_comments_and_junk_as_os_release_5_says() -> None:
    fields = osrelease.parse('# a comment\n\nNAME=\'Single quoted\'\nPRETTY_NAME="say \\"hi\\" \\$HOME"\n'
                             "not an assignment\nlowercase=ignored\nID=debian\nID=ubuntu\n")
    assert fields == {"NAME": "Single quoted", "PRETTY_NAME": 'say "hi" $HOME', "ID": "ubuntu"}


def test_read_falls_back_to_usr_lib_and_then_to_unknown(tmp_path: Path) -> None:
    etc, usr = tmp_path / "etc-os-release", tmp_path / "usr-lib-os-release"
    usr.write_text(JAMMY)
    assert osrelease.read((str(etc), str(usr)))["ecosystem"] == "Ubuntu:22.04:LTS"
    etc.write_text(BOOKWORM)
    assert osrelease.read((str(etc), str(usr)))["ecosystem"] == "Debian:12"
    assert osrelease.read((str(tmp_path / "none"),)) == osrelease.describe({})
    etc.write_bytes(b'NAME="Debian \xff"\nID=debian\nVERSION_ID="12"\n')  # not UTF-8: still read
    assert osrelease.read((str(etc),))["ecosystem"] == "Debian:12"
