"""Lab planning that needs no containers: fleet templates, mirror discovery, inventory text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from patchwave.errors import PatchwaveError
from patchwave.lab import catalog, images
from patchwave.lab.fleet import Lab
from patchwave.paths import Paths


def test_default_fleet_mixes_releases_groups_and_device_types() -> None:
    hosts = catalog.fleet(6)
    assert {h.release for h in hosts} == {"bullseye", "bookworm", "trixie"}
    assert len({h.group for h in hosts}) >= 2
    assert {h.device_type for h in hosts} == {"server", "workstation"}
    names = [h.name for h in catalog.fleet(20)]
    assert len(names) == len(set(names))


def test_mirror_comes_from_the_machines_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert images.debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(PatchwaveError, match="no Debian mirror"):
        images.debian_mirror(tmp_path)


def test_image_tag_changes_with_the_recipe() -> None:
    assert images.image_ref("bookworm") != images.image_ref("trixie")
    assert images.image_ref("bookworm") == images.image_ref("bookworm")


def test_inventory_keeps_host_key_checking_and_lab_reboot_vars(tmp_path: Path) -> None:
    lab = Lab(Paths(tmp_path))
    hosts = lab._plan(3, base_port=40001)
    inventory = yaml.safe_load(lab.inventory_text(hosts))
    top = inventory["all"]["vars"]
    assert "StrictHostKeyChecking=yes" in top["ansible_ssh_common_args"]
    assert top["patchwave_reboot_command"] == "kill -TERM 1"
    web1 = inventory["all"]["children"]["web"]["hosts"]["web1"]
    assert web1["ansible_host"] == "127.0.0.1" and web1["ansible_port"] == 40001
    assert "web1" in inventory["all"]["children"]["debian12"]["hosts"]
