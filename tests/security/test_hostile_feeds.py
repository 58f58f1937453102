"""Hostile advisories (OSV JSON, as a distribution or a mirror in the middle could serve them) and
hostile notification policies, through the real CLI: exit 2, `file:line: what is wrong`, no
traceback, no store, nothing sent or written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile import Case, Sandbox, assert_refused, cases_by_id, lines, params


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    return Sandbox(tmp_path, monkeypatch)


def record(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "DSA-9999-1", "summary": "openssl security update", "published": "2026-11-02T00:00:00Z",
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.17-1~deb12u3"}]}]}],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def doc(*records: dict[str, object]) -> str:
    return json.dumps(list(records), indent=2)


OSV_CASES = [
    Case("invalid-json", '[{"id": "DSA-1",\n  "affected": [}\n]', "invalid JSON", 2),
    Case("truncated", doc(record())[:-40], "invalid JSON", None),
    Case("not-utf8", b'[{"id": "DSA-1", "summary": "caf\xe9"}]', "cannot read advisory", None),
    Case("nested-too-deep", "[" * 200_000 + "]" * 200_000, "nested too deeply", None),
    Case("huge", '["' + "x" * (65 * 1024 * 1024) + '"]', "larger than 64 MB", None),
    Case("no-id", doc(record(id=None)), "without a string 'id'", 1),
    Case("id-not-text", doc(record(id=7)), "without a string 'id'", 1),
    Case("no-affected", doc(record(affected=None)), "'affected' must be a non-empty list", 3),
    Case("affected-empty", doc(record(affected=[])), "'affected' must be a non-empty list", 3),
    Case("affected-not-a-list", doc(record(affected="openssl")), "'affected' must be a non-empty list", 3),
    Case("package-without-name", doc(record(affected=[{"package": {"ecosystem": "Debian:12"}}])),
         "package.name is missing", 3),
    Case("ranges-not-a-list", doc(record(affected=[{"package": {"name": "openssl"}, "ranges": "all"}])),
         "ranges must be a list", 3),
    Case("events-not-a-list", doc(record(affected=[{"package": {"name": "openssl"}, "ranges": [{"events": 5}]}])),
         "events must be a list", 3),
    Case("fixed-not-a-version", doc(record(affected=[{"package": {"name": "openssl"},
                                                      "ranges": [{"events": [{"fixed": "$(reboot)"}]}]}])),
         "is not a Debian version", 3),
    Case("aliases-not-a-list", doc(record(aliases="CVE-2026-0001")), "'aliases' must be a list", 3),
    Case("second-record-bad", doc(record(), record(id="DSA-9999-2", affected=[])), "'affected' must be", 29),
]


@pytest.mark.parametrize("case", params(OSV_CASES))
def test_advisories(box: Sandbox, case: Case) -> None:
    path = box.write("advisories.json", case.text)
    assert_refused(box.run("cycle", "plan", "-i", box.inventory, "--advisories", path), box, path, case)


def test_advisory_directory_with_one_bad_file(box: Sandbox) -> None:
    box.write("feed/a.json", doc(record()))
    bad = box.write("feed/b.json", doc(record(id="DSA-2", aliases={"x": 1})))
    assert_refused(box.run("cycle", "plan", "-i", box.inventory, "--advisories", box.dir / "feed"), box, bad,
                   expect="'aliases' must be a list", line=3)


CHANNEL = "channels:\n  hook: {type: webhook, url: 'https://hooks.example.org/x', secret: {env: PW_HOOK}}\n"
ROUTE = "routes:\n  - {name: all, events: [patch_failed], channels: [hook]}\n"

NOTIFY_CASES = [
    Case("empty-file", "", "empty notification policy file", 1),
    Case("only-comments", "# nothing here\n", "empty notification policy file", 1),
    Case("a-list", "- hook\n", "is a mapping", 1),
    Case("unknown-top-key", CHANNEL + ROUTE + "chanels: {}\n", "unknown key", 5),
    Case("unknown-channel-type", lines("channels:", "  pager: {type: pigeon, url: 'https://x.example'}") + ROUTE,
         "pigeon", 2),
    Case("secret-in-the-file", lines("channels:", "  hook: {type: webhook, url: 'https://h.example/x', "
                                     "secret: plain-text-secret}") + ROUTE, "secret", 2),
    Case("plain-http", lines("channels:", "  hook: {type: webhook, url: 'http://h.example/x', "
                             "secret: {env: PW_HOOK}}") + ROUTE, "use https://", 2),
    Case("route-to-unknown-channel", CHANNEL + "routes:\n  - {name: all, events: [patch_failed], channels: [pager]}\n",
         "pager", 4),
    Case("unknown-event", CHANNEL + "routes:\n  - {name: all, events: [everything], channels: [hook]}\n",
         "Input should be 'patch_failed'", 4),
    Case("bad-time-zone", CHANNEL + "routes:\n  - {name: all, events: [patch_failed], channels: [hook], "
         "quiet_hours: {start: '22:00', end: '06:00', timezone: Mars/Olympus}}\n", "unknown time zone", 4),
    Case("duplicate-key", CHANNEL + ROUTE + "routes: []\n", "duplicate key", 5),
]
cases_by_id(NOTIFY_CASES)


@pytest.mark.parametrize("case", params(NOTIFY_CASES))
def test_notification_policy(box: Sandbox, case: Case) -> None:
    path = box.write("notify.yml", case.text)
    assert_refused(box.run("notify", "check", "-p", path, "-i", box.inventory), box, path, case)
