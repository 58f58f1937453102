"""The exact argv of every remaining command the apt backend and the modules run."""

from __future__ import annotations

from ansible_collections.patchwave.endpoint.plugins.module_utils.pkgmgr import apt
from test_pkgmgr_apt import FakeModule

SHOW = """\
Package: pw-libssl
Version: 1.0-2
Size: 824

Package: pw-tools
Version: 2.0-1
Size: 844
"""


def test_sizes_use_one_apt_cache_call() -> None:
    module = FakeModule({"apt-cache": (0, SHOW, "")})
    sizes = apt.AptManager(module).sizes({"pw-tools": "2.0-1", "pw-libssl": "1.0-2"})
    assert sizes == {"pw-libssl": 824, "pw-tools": 844}
    assert module.calls == [(["/usr/bin/apt-cache", "show", "pw-libssl=1.0-2", "pw-tools=2.0-1"], module.calls[0][1])]


def test_rollback_material_commands() -> None:
    module = FakeModule({"apt-get": (0, "", ""), "dpkg-repack": (0, "", ""), "dpkg-deb": (0, "Package: a\nVersion: 1\n", "")})
    manager = apt.AptManager(module)
    assert manager.download_to({"b": "2", "a": "1:1.0~rc1-1"}, "/tmp/rb") is True
    manager.repack("a", "/tmp/rb")
    assert manager.deb_fields("/tmp/rb/a_1_all.deb") == ("a", "1")
    argvs = [c[0] for c in module.calls]
    assert argvs == [
        ["/usr/bin/apt-get", "-q", "download", "a=1:1.0~rc1-1", "b=2"],
        ["/usr/bin/dpkg-repack", "a"],
        ["/usr/bin/dpkg-deb", "-f", "/tmp/rb/a_1_all.deb", "Package", "Version"],
    ]


def test_version_comparison_and_policy_argv() -> None:
    module = FakeModule({"dpkg": (0, "", "")})
    manager = apt.AptManager(module)
    assert manager.compare_versions("1:1.0", "2.0") == 1
    assert manager.compare_versions("1.0", "1.0") == 0
    assert module.calls[0][0] == ["/usr/bin/dpkg", "--compare-versions", "1:1.0", "gt", "2.0"]
    assert len(module.calls) == 1  # equal versions need no command


def test_cached_deb_escapes_the_epoch(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(apt, "ARCHIVES", str(tmp_path))
    (tmp_path / "openssl_1%3a3.0.11-1_amd64.deb").write_text("")
    manager = apt.AptManager(FakeModule())
    assert manager.cached_deb("openssl", "1:3.0.11-1") == str(tmp_path / "openssl_1%3a3.0.11-1_amd64.deb")
    assert manager.cached_deb("openssl", "3.0.11-1") is None


def test_thin_link_options_go_on_every_download() -> None:
    module = FakeModule({"apt-get": (0, "", "")})
    manager = apt.AptManager(module)
    manager.use_link(150, "http://10.0.0.5:3142/")
    manager.download({"pw-libssl": "1.0-2"}, lock_timeout=60)
    manager.download_to({"pw-libssl": "1.0-1"}, "/tmp/rb")
    link = ["-o", "Acquire::http::Dl-Limit=150", "-o", "Acquire::https::Dl-Limit=150",
            "-o", "Acquire::http::Proxy=http://10.0.0.5:3142/"]
    first, second = (c[0] for c in module.calls)
    assert first[-3:] == ["--download-only", "install", "pw-libssl=1.0-2"] and first[-9:-3] == link
    assert second == ["/usr/bin/apt-get", "-q", *link, "download", "pw-libssl=1.0-1"]
    manager.refresh()
    assert module.calls[-1][0] == ["/usr/bin/apt-get", "-q", "--error-on=any", *link, "update"]
    manager.use_link(0, None)
    manager.download_to({"a": "1"}, "/tmp/rb")
    assert module.calls[-1][0] == ["/usr/bin/apt-get", "-q", "download", "a=1"]


def test_relay_is_checked_before_anything_is_downloaded() -> None:
    import socket

    from ansible_collections.patchwave.endpoint.plugins.module_utils.thinlink import link_problem

    assert "must be an apt proxy URL" in link_problem(0, "http://relay:3142/ -o Dir=/")
    assert "must be an apt proxy URL" in link_problem(0, "ftp://relay/")
    assert link_problem(-1, None) == "download_limit_kbps must be 0 (no limit) or more, not -1"
    assert link_problem(64, None) is None and link_problem(0, "") is None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert link_problem(0, f"http://127.0.0.1:{port}/") is None
    refused = link_problem(0, f"http://127.0.0.1:{port}/", timeout=2)
    assert refused.startswith(f"relay http://127.0.0.1:{port}/ does not accept connections from this host (")
    assert refused.endswith("nothing was downloaded")
