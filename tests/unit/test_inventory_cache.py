"""The hosts of a static inventory are read by Ansible once per content: any change to what
Ansible reads for it (the file, group_vars, host_vars, the configuration, ANSIBLE_* variables)
reads it again, and inventories whose content files cannot show (plugins, scripts) are never kept."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from patchwave.ansible import inventory as inventory_module
from patchwave.ansible.inventory import load_hosts

INVENTORY = """all:
  children:
    web:
      hosts:
        web1: {patchwave_owner: team-web, ansible_password: hunter2-not-kept}
        web2:
"""


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every time Ansible is asked to read an inventory (the real ansible-inventory runs)."""
    asked: list[Path] = []
    real = inventory_module.read_inventory

    def counted(path: Path) -> dict[str, object]:
        asked.append(path)
        return real(path)

    monkeypatch.setattr(inventory_module, "read_inventory", counted)
    return asked


def test_a_static_inventory_is_read_once_per_content(tmp_path: Path, reads: list[Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    hosts_file, cache = tmp_path / "hosts.yml", tmp_path / "cache"
    hosts_file.write_text(INVENTORY)
    first = load_hosts(hosts_file, cache=cache)
    assert [(h.name, h.groups, h.owner) for h in first] == [("web1", ("web",), "team-web"), ("web2", ("web",), "")]
    assert load_hosts(hosts_file, cache=cache) == first
    assert len(reads) == 1
    kept = next(cache.iterdir())
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert "hunter2" not in kept.read_text()  # only what Patchwave takes, never the host variables

    hosts_file.write_text(INVENTORY.replace("team-web", "team-ops"))
    assert load_hosts(hosts_file, cache=cache)[0].owner == "team-ops"
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("patchwave_device_type: server\n")
    assert {h.device_type for h in load_hosts(hosts_file, cache=cache)} == {"server"}
    monkeypatch.setenv("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "true")
    load_hosts(hosts_file, cache=cache)
    assert len(reads) == 4
    load_hosts(hosts_file, cache=cache)
    assert len(reads) == 4


def test_plugin_and_script_inventories_are_never_kept(tmp_path: Path, reads: list[Path]) -> None:
    cache = tmp_path / "cache"
    script = tmp_path / "inventory.py"
    script.write_text("#!/bin/sh\necho '{\"web\": {\"hosts\": [\"web1\"]}, \"_meta\": {\"hostvars\": {}}}'\n")
    script.chmod(0o755)
    plugin = tmp_path / "constructed.yml"
    plugin.write_text("plugin: ansible.builtin.constructed\nstrict: true\ngroups:\n  owned: patchwave_owner is defined\n")
    for _ in range(2):
        assert [h.name for h in load_hosts(script, cache=cache)] == ["web1"]
    assert len(reads) == 2
    assert not cache.exists() or not any(cache.iterdir())
    # a plugin reads what its configuration names, which no file here shows
    assert inventory_module._cache_key(plugin) is None
    assert inventory_module._cache_key(tmp_path) is None  # a directory: its scripts and plugins


def test_an_unreadable_cache_is_read_again(tmp_path: Path, reads: list[Path]) -> None:
    hosts_file, cache = tmp_path / "hosts.yml", tmp_path / "cache"
    hosts_file.write_text(INVENTORY)
    load_hosts(hosts_file, cache=cache)
    next(cache.iterdir()).write_text("{not json")
    assert [h.name for h in load_hosts(hosts_file, cache=cache)] == ["web1", "web2"]
    assert len(reads) == 2
