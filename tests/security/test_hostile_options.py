"""Hostile command lines: unknown hosts, groups, waves, cycles and dates, conflicting options,
templates and shell syntax where a name belongs, and store URLs that are garbage or carry a
password (which no message may show). Each is refused with exit 2 and a message that says
what is wrong, before any host is contacted, and leaves the store as it was (not created, or,
where the case needs one, every table unchanged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hostile import Sandbox, assert_refused, lines

MARKER_TEMPLATE = "{{ lookup('pipe', 'id') }}"


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    return Sandbox(tmp_path, monkeypatch)


def policy(box: Sandbox) -> Path:
    return box.write("policy.yml", lines("name: monthly", "waves:", "  - {name: canary, size: 1}", "  - {name: broad}"))


# (id, argv with {inv}, {policy} and {out} filled in, words the message must contain)
WITHOUT_STORE = [
    ("limit-unknown-host", ("assess", "-i", "{inv}", "--limit", "nosuch", "--compile", "{out}/rules.json"),
     "--limit: unknown host(s) nosuch"),
    ("limit-template", ("assess", "-i", "{inv}", "--limit", MARKER_TEMPLATE, "--compile", "{out}/rules.json"),
     "unknown host(s)"),
    ("limit-shell", ("remediate", "-i", "{inv}", "--limit", "web1;id", "--check"), "unknown host(s) web1;id"),
    ("since-impossible-date", ("report", "-i", "{inv}", "--since", "2026-13-01", "-o", "{out}"), "--since"),
    ("since-not-a-date", ("report", "-i", "{inv}", "--since", "yesterday", "-o", "{out}"), "use a date YYYY-MM-DD"),
    ("report-unknown-type", ("report", "-i", "{inv}", "--type", "passwords", "-o", "{out}"), "--type passwords"),
    ("report-unknown-group", ("report", "-i", "{inv}", "--group", "nosuch", "-o", "{out}"), "--group nosuch"),
    ("report-several-into-one-file", ("report", "-i", "{inv}", "--type", "all", "-o", "{out}/one.xlsx"),
     "several workbooks need a directory"),
    ("emergency-without-advisory", ("cycle", "run", "-i", "{inv}", "--emergency"), "go together"),
    ("advisory-without-emergency", ("cycle", "run", "-i", "{inv}", "--advisory", "CVE-2026-0001"), "go together"),
    ("canary-with-policy", ("cycle", "run", "-i", "{inv}", "-p", "{policy}", "--canary", "2"),
     "--canary applies to the built-in policy only"),
    ("canary-negative", ("cycle", "run", "-i", "{inv}", "--canary", "-1"), "--canary"),
    ("schedule-not-given", ("schedule", "run"), "no schedule"),
    ("schedule-units-every-zero", ("schedule", "units", "--every", "0"), "--every"),
    ("notify-policy-missing", ("--notify", "{out}/nosuch.yml", "scan", "-i", "{inv}"), "cannot read"),
    ("agent-token-unknown-host", ("agent", "token", "web1;id", "-i", "{inv}"), "is not in the inventory"),
    ("agent-token-template", ("agent", "token", MARKER_TEMPLATE, "-i", "{inv}"), "is not in the inventory"),
    ("listen-garbage", ("serve", "--listen", "everywhere", "-i", "{inv}"), "use ADDRESS:PORT"),
    ("unknown-command", ("reboot-everything",), "No such command"),
    ("unknown-option", ("cycle", "run", "--yes-really"), "No such option"),
    ("store-before-the-command", ("--store", "garbage", "cycle", "status"), "No such option"),
    ("compile-under-a-file", ("assess", "-i", "{inv}", "--compile", "{file}/rules.json"), "is a file"),
    ("compile-into-a-folder", ("assess", "-i", "{inv}", "--compile", "{out}"), "is a folder"),
    ("report-under-a-file", ("report", "-i", "{inv}", "--type", "patch", "-o", "{file}/patch.xlsx"), "is a file"),
    ("units-under-a-file", ("schedule", "units", "-s", "{schedule}", "-o", "{file}/units"), "is a file"),
    ("listen-port-out-of-range", ("serve", "--listen", "127.0.0.1:99999", "-i", "{inv}"), "port"),
    ("store-under-a-file", ("cycle", "status", "--store", "sqlite:///{file}/store.db"), "store"),
]


def _param(case_id: str, argv: tuple[str, ...], expect: str, xfail: str | None = None) -> Any:
    return pytest.param(argv, expect, id=case_id,
                        marks=[pytest.mark.xfail(reason=xfail, strict=True)] if xfail else [])


@pytest.mark.parametrize("argv, expect", [_param(*case) for case in WITHOUT_STORE])
def test_refused_before_anything_is_stored(box: Sandbox, argv: tuple[str, ...], expect: str) -> None:
    box.output.mkdir()
    blocker = box.write("a-file", "not a folder\n")
    schedule = box.write("schedule.yml", lines("inventory: inventory.yml", "jobs:",
                                               "  - {name: digest, kind: digest, every: 1d}"))
    filled = [a.format(inv=box.inventory, policy=policy(box), out=box.output, file=blocker, schedule=schedule)
              for a in argv]
    assert_refused(box.run(*filled), box, None, expect=expect)


@pytest.mark.parametrize("url, secret", [
    ("postgresql://patchwave:s3cr3t-pw@db.example/patchwave", "s3cr3t-pw"),
    ("postgresql+psycopg://patchwave:s3cr3t-pw@db.example:notaport/patchwave", "s3cr3t-pw"),
    ("mysql://root:hunter2@[::1:3306/db", "hunter2"),
    ("garbage", None),
    ("nosuchdb://x", None),
], ids=["password", "password-bad-port", "password-unparsable", "garbage", "unknown-dialect"])
def test_store_url_is_refused_without_showing_its_password(box: Sandbox, url: str, secret: str | None) -> None:
    result = box.run("cycle", "status", "--store", url)
    assert_refused(result, box, None, expect="store URL")
    if secret is not None:
        assert secret not in result.output
        assert "***" in result.output or "…" in result.output


def test_store_url_from_the_environment_is_masked_too(box: Sandbox) -> None:
    box.env["PATCHWAVE_STORE"] = "postgresql://patchwave:s3cr3t-pw@db.example/patchwave"
    result = box.run("cycle", "status")
    assert_refused(result, box, None, expect="store URL")
    assert "s3cr3t-pw" not in result.output and "***" in result.output


# commands that need a store: it exists (a cycle waits at wave 'pilot'), and stays as it was
WITH_STORE = [
    ("status-unknown-cycle", ("cycle", "status", "nosuch"), "no cycle 'nosuch'"),
    ("resume-unknown-cycle", ("cycle", "resume", "nosuch"), "no cycle 'nosuch'"),
    ("rollback-unknown-cycle", ("cycle", "rollback", "nosuch"), "no cycle 'nosuch'"),
    ("approve-unknown-cycle", ("cycle", "approve", "nosuch", "--by", "alice"), "no cycle 'nosuch'"),
    ("approve-wrong-wave", ("cycle", "approve", "C1", "--wave", "broad", "--by", "alice"),
     "waits for approval of wave 'pilot', not 'broad'"),
    ("approve-wave-template", ("cycle", "approve", "C1", "--wave", MARKER_TEMPLATE, "--by", "alice"),
     "waits for approval of wave 'pilot'"),
    ("approve-by-nobody", ("cycle", "approve", "C1", "--by", "   "), "--by: say who decides"),
    ("approve-cycle-template", ("cycle", "approve", MARKER_TEMPLATE, "--by", "alice"), "no cycle"),
]


@pytest.mark.parametrize("argv, expect", [pytest.param(a, e, id=i) for i, a, e in WITH_STORE])
def test_refused_with_the_store_unchanged(box: Sandbox, argv: tuple[str, ...], expect: str) -> None:
    before = box.seed_store()
    assert_refused(box.run(*argv), box, None, expect=expect, store_before=before)
