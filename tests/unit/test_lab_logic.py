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


def _newer(a: str, b: str) -> bool:
    from debian.debian_support import Version

    return Version(a) > Version(b)


def test_the_catalog_has_per_release_versions_and_every_update_is_newer() -> None:
    for release in catalog.RELEASES:
        installed = dict(spec.split("=") for spec in catalog.base_install(release))
        assert len(installed) == len(catalog.base_install(release))  # each package once
        for name, version in installed.items():
            if name != "pw-httpd":  # the service itself has no update
                assert _newer(catalog.update_version(name, release), version), (release, name)
    for name in ("pw-libssl", "pw-kernel", "pw-pam-modules", "pw-base"):
        assert len({catalog.update_version(name, r) for r in catalog.RELEASES}) == 3, name
    # every suite carries exactly one version of each per-release package per pocket
    for release in catalog.RELEASES:
        for pocket in (catalog.SUITE_REGULAR, catalog.SUITE_SECURITY):
            carried = [(p.name, p.version) for p in catalog.PACKAGES if p.suite == pocket and release in p.releases]
            assert len(carried) == len({n for n, _v in carried}), (release, pocket)


def test_the_security_updates_are_the_hard_cases_and_leave_the_held_package_alone() -> None:
    for release in catalog.RELEASES:
        assert set(catalog.security_updates(release)) == {
            "pw-libssl", "pw-kernel", "pw-tools", "pw-tools-common", "pw-config", "pw-pam-modules-bin",
            "pw-pam-modules", "pw-pam-runtime", "pw-base"}
    assert catalog.security_updates("bullseye")["pw-libssl"] == "0.9.8-5+deb11u1"


def test_suites_are_per_release_and_security_suites_say_so() -> None:
    assert catalog.suite("bookworm", catalog.SUITE_REGULAR) == "patchwave-lab-bookworm"
    assert catalog.suite("bookworm", catalog.SUITE_SECURITY) == "patchwave-lab-bookworm-security"


def test_a_package_defined_twice_differently_is_refused() -> None:
    from patchwave.lab import repo

    one = catalog.LabPackage("pw-x", "1.0-1", catalog.SUITE_REGULAR, "x", releases=("bullseye",))
    same = catalog.LabPackage("pw-x", "1.0-1", catalog.SUITE_REGULAR, "x", releases=("trixie",))
    other = catalog.LabPackage("pw-x", "1.0-1", catalog.SUITE_REGULAR, "x, but another", releases=("trixie",))
    assert repo.distinct((one, same)) == [one]  # one file in the shared pool, offered to both releases
    with pytest.raises(ValueError, match=r"pw-x 1\.0-1 is defined twice"):
        repo.distinct((one, other))
    assert repo.distinct(catalog.PACKAGES) == list(catalog.PACKAGES)  # the catalog itself is consistent


def test_a_lab_made_from_another_catalog_is_not_reused(tmp_path: Path) -> None:
    lab = Lab(Paths(tmp_path))
    lab.dir.mkdir(parents=True)
    lab.state_file.write_text('{"prefix": "p", "network": "n", "hosts": [{"name": "web1", "container": "c", '
                              '"release": "bookworm", "ssh_port": 22001, "groups": ["web"], "device_type": "server", '
                              '"owner": "o", "criticality": 1}]}')
    with pytest.raises(PatchwaveError, match="made from another version of the lab's packages"):
        lab.up()


def test_the_cycle_passes_the_rollback_role_only_options_it_declares() -> None:
    from patchwave.patching.policy import Policy
    from patchwave.patching.rollback import rollback_vars

    specs = yaml.safe_load((Path(__file__).resolve().parents[2] / "collections/ansible_collections/patchwave/endpoint"
                            / "roles/rollback/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    passed = rollback_vars("c1", Policy.model_validate({"reboot": "never", "restart": "never"}))
    assert passed == {"patchwave_cycle_id": "c1", "rollback_reboot_policy": "never", "rollback_restart_policy": "never"}
    for name, value in passed.items():
        if name != "patchwave_cycle_id":  # the playbook maps it to rollback_cycle_id
            assert value in options[name]["choices"], name
