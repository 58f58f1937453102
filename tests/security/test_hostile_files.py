"""Hostile files through the real CLI: policies, schedules, report definitions and inventories
that are malformed, oversized, booby-trapped (alias bombs, templates, control characters) or
just wrong. Each must be refused before anything runs: exit 2, `file:line: what is wrong`, no
traceback, no store, no workbook, no template rendered. (Baselines, exceptions, notification
policies, agent payloads and OSV files have their own suites.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import Case, Sandbox, alias_bomb, assert_refused, cases_by_id, huge, jinja, lines, params

JINJA = "@JINJA@"  # replaced by a template that would create MARKER in the case's tmp_path


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    return Sandbox(tmp_path, monkeypatch)


def content(case: Case, box: Sandbox) -> str | bytes:
    if isinstance(case.text, str):
        return case.text.replace(JINJA, jinja(box.dir))
    return case.text


WINDOW = "  - slots: [{days: [sat], start: '02:00', end: '04:00'}]"
SLOTS = "    slots: [{days: [sat], start: '02:00', end: '04:00'}]"
HEALTH = ("gates:", "  health_checks:")
DEEP = "a: " + "[" * 5000 + "]" * 5000 + "\n"

# --- policies (`patchwave cycle run -i INVENTORY -p POLICY`) ---------------------------------------

POLICY_CASES = [
    # nothing in it: never "the default policy on every host"
    Case("empty-file", "", "empty policy file"),
    Case("only-comments", "# the monthly policy\n# (to be written)\n", "empty policy file"),
    Case("null", "null\n", "empty policy file"),
    Case("only-document-markers", "---\n...\n", "empty policy file"),
    Case("top-level-list", "- name: monthly\n", "a policy is a mapping"),
    Case("top-level-scalar", "monthly\n", "a policy is a mapping"),
    # schema
    Case("unknown-key", lines("name: monthly", "wavez: []"), "unknown key", 2),
    Case("unknown-nested-key", lines("name: monthly", "approval:", "  securty: true"), "unknown key", 3),
    Case("wrong-type-bool", lines("approval:", "  security: 'yes please'"), "valid boolean", 2),
    Case("wrong-type-list", lines("targets:", "  groups: web"), "valid list", 2),
    Case("version-2", "version: 2\n", "version", 1),
    Case("unknown-severity", lines("approval:", "  min_severity: urgent"), "approval.min_severity", 2),
    Case("negative-delay", lines("approval:", "  delay_days: -1"), "greater than or equal to 0", 2),
    Case("package-injection", lines("approval:", "  approve: ['openssl; rm -rf /']"), "is not a package name", 2),
    Case("package-pattern-injection", lines("approval:", "  include: ['$(id)']"), "package pattern", 2),
    Case("host-pattern-injection", lines("targets:", "  hosts: ['web1 && id']"), "host pattern", 2),
    Case("unknown-target-group", lines("targets:", "  groups: [web, nosuch]"), "unknown group 'nosuch'", 2),
    Case("delay-not-shorter-than-sla", lines("approval:", "  delay_days: 7"), "could never be installed in time", 2),
    Case("unknown-sla-severity", lines("sla_days:", "  urgent: 3"), "sla_days.urgent", 2),
    Case("sla-zero", lines("sla_days:", "  critical: 0"), "greater than or equal to 1", 2),
    Case("sla-huge", lines("sla_days:", "  critical: 100000000000"), "less than or equal to", 2),
    Case("reboot-unknown", "reboot: sometimes\n", "reboot", 1),
    Case("name-empty", "name: ''\n", "at least 1 character", 1),
    Case("name-newline", 'name: "monthly\\nExecStartPre=/bin/id"\n', "one line", 1),
    # waves
    Case("no-waves", "waves: []\n", "at least 1 item", 1),
    Case("wave-name-space", lines("waves:", "  - {name: 'can ary'}"), "waves[0].name", 2),
    Case("wave-name-template", lines("waves:", f"  - {{name: \"{JINJA}\"}}"), "waves[0].name", 2),
    Case("duplicate-wave-names", lines("waves:", "  - {name: a, size: 1}", "  - {name: a}"),
         "wave names must be unique", 1),
    Case("wave-size-zero", lines("waves:", "  - {name: a, size: 0}", "  - {name: b}"), "size above 0", 2),
    Case("wave-size-over-100", lines("waves:", "  - {name: a, size: '150%'}", "  - {name: b}"),
         "percentage over 100", 2),
    Case("wave-size-float", lines("waves:", "  - {name: a, size: 1.5}", "  - {name: b}"), "waves[0].size", 2),
    Case("wave-never-gets-a-host", lines("waves:", "  - {name: a}", "  - {name: b}"), "can never get one", 1),
    Case("wave-concurrency-zero", lines("waves:", "  - {name: a, concurrency: 0}"), "greater than or equal to 1", 2),
    Case("wave-duration-huge", lines("waves:", "  - {name: a, duration_minutes: 1000000000000}"),
         "less than or equal to", 2),
    Case("wave-soak-infinite", lines("waves:", "  - {name: a, soak_minutes: .inf}"), "waves[0].soak_minutes", 2),
    # maintenance windows and time zones
    Case("unknown-time-zone", lines("windows:", "  - timezone: Mars/Olympus", SLOTS), "unknown time zone", 2),
    Case("time-zone-directory", lines("windows:", "  - timezone: Europe", SLOTS), "unknown time zone", 2),
    Case("time-zone-traversal", lines("windows:", "  - timezone: ../../../../etc/passwd", SLOTS),
         "unknown time zone", 2),
    Case("time-zone-too-long", lines("windows:", "  - timezone: " + "A" * 300, SLOTS), "unknown time zone", 2),
    Case("bad-clock", lines("windows:", "  - slots:", "      - {days: [sat], start: '25:00', end: '26:00'}"),
         "is not a time of day", 3),
    Case("slot-backwards", lines("windows:", "  - slots:", "      - {days: [sat], start: '06:00', end: '02:00'}"),
         "before it starts", 3),
    Case("slots-overlap", lines("windows:", "  - slots:", "      - {days: [sat], start: '02:00', end: '05:00'}",
                                "      - {days: [sat], start: '04:00', end: '06:00'}"), "slots overlap", 2),
    Case("unknown-day", lines("windows:", "  - slots:", "      - {days: [funday], start: '02:00', end: '04:00'}"),
         "unknown day", 3),
    Case("blackout-impossible-date", lines("windows:", WINDOW, "    blackout: ['2026-02-30']"), "blackout date", 3),
    Case("blackout-unquoted-impossible-date", lines("windows:", WINDOW, "    blackout: [2026-13-45]"),
         "month must be in 1..12", 3),
    Case("window-without-slots", lines("windows:", "  - {groups: [web], slots: []}"), "at least 1 item", 2),
    Case("window-unknown-group", lines("windows:", "  - groups: [nosuch]", SLOTS), "unknown group 'nosuch'", 2),
    # thin links
    Case("thin-link-no-groups", lines("thin_links:", "  - {groups: [], relay: 'http://relay:3142/'}"),
         "thin_links[0].groups", 2),
    Case("thin-link-nothing", lines("thin_links:", "  - {groups: [web]}"), "download_limit_kbps, relay or both", 2),
    Case("thin-link-relay-credentials", lines("thin_links:", "  - {groups: [web], relay: 'http://u:pw@relay:3142/'}"),
         "must be an apt proxy URL", 2),
    Case("thin-link-relay-template", lines("thin_links:", f"  - {{groups: [web], relay: \"http://{JINJA}/\"}}"),
         "thin_links[0].relay", 2),
    Case("thin-link-limit-zero", lines("thin_links:", "  - {groups: [web], download_limit_kbps: 0}"),
         "greater than or equal to 1", 2),
    Case("thin-link-unknown-group", lines("thin_links:", "  - {groups: [nosuch], download_limit_kbps: 100}"),
         "unknown group 'nosuch'", 2),
    # advisory sources
    Case("advisory-empty-source", lines("advisories:", "  - {}"), "exactly one of 'path' or 'url'", 2),
    Case("advisory-missing-path", lines("advisories:", "  - path: nosuch/"), "does not exist", 2),
    Case("advisory-bad-scheme", lines("advisories:", "  - url: ftp://mirror.example/osv/"), "url must be", 2),
    Case("advisory-path-template", lines("advisories:", f"  - path: \"{JINJA}\""), "advisories[0].path", 2),
    # health checks
    Case("health-two-kinds", lines(*HEALTH, "    - {service: nginx, port: 80}"), "exactly one of", 3),
    Case("health-no-kind", lines(*HEALTH, "    - {status: 200}"), "exactly one of", 3),
    Case("health-service-injection", lines(*HEALTH, "    - {service: 'nginx; id'}"), "is not a unit name", 3),
    Case("health-port-range", lines(*HEALTH, "    - {port: 70000}"), "less than or equal to 65535", 3),
    Case("health-status-range", lines(*HEALTH, "    - {http: 'http://127.0.0.1/', status: 99}"),
         "greater than or equal to 100", 3),
    Case("health-http-scheme", lines(*HEALTH, "    - {http: 'file:///etc/passwd'}"), "http(s):// URL", 3),
    Case("health-http-template", lines(*HEALTH, f"    - http: \"http://127.0.0.1/{JINJA}\""), "template", 3),
    Case("health-http-template-statement",
         lines(*HEALTH, "    - http: \"http://127.0.0.1/{% for i in range(99999999) %}x{% endfor %}\""), "template", 3),
    Case("health-http-template-comment", lines(*HEALTH, "    - http: \"http://127.0.0.1/{# x #}\""), "template", 3),
    Case("health-http-no-host", lines(*HEALTH, "    - {http: 'http://'}"), "no host", 3),
    Case("health-http-whitespace", lines(*HEALTH, "    - {http: 'http://127.0.0.1/ -o /tmp/x'}"), "space", 3),
    Case("health-playbook-missing", lines(*HEALTH, "    - {playbook: nosuch.yml}"), "does not exist", 3),
    Case("health-playbook-template", lines(*HEALTH, f"    - playbook: \"{JINJA}.yml\""), "health", 3),
    # what logged-in users are told (reaches `wall` through Ansible)
    Case("notice-template", lines("user_notice:", f"  message: \"{JINJA}\""), "template", 2),
    Case("notice-template-statement",
         lines("user_notice:", "  reboot_message: \"{% for x in range(999999999) %}{% endfor %}\""), "template", 2),
    Case("notice-template-comment", lines("user_notice:", "  message: \"{# hidden #} rebooting\""), "template", 2),
    Case("notice-newline", lines("user_notice:", '  message: "line one\\nline two"'), "one line of printable text", 2),
    Case("notice-too-long", lines("user_notice:", "  message: " + "x" * 401), "at most 400 characters", 2),
    Case("notice-mode", lines("user_notice:", "  mode: shout"), "user_notice.mode", 2),
    Case("notice-delay-zero", lines("user_notice:", "  mode: delay", "  delay_minutes: 0"), "greater than 0", 3),
    Case("notice-delay-not-shorter-than-idle", lines("user_notice:", "  mode: delay", "  delay_minutes: 100"),
         "must be shorter than timeouts.idle_minutes", 3),
    # timeouts
    Case("timeouts-order", lines("timeouts:", "  idle_minutes: 30", "  job_minutes: 20"),
         "must be longer than idle_minutes", 1),
    Case("timeouts-infinite", lines("timeouts:", "  idle_minutes: 30", "  job_minutes: .inf"), "finite number", 3),
    Case("timeouts-idle-shorter-than-reboot", lines("timeouts:", "  idle_minutes: 10", "  job_minutes: 100"),
         "wait for a rebooting host", 2),
    # templates in fields that never reach Ansible today are refused all the same
    Case("name-template", f"name: \"{JINJA}\"\n", "template", 1),
    Case("exclude-template", lines("targets:", f"  exclude: [\"{JINJA}\"]"), "template", 2),
    Case("group-template", lines("targets:", "  groups: ['{{ groups.all }}']"), "targets.groups", 2),
    # the file itself
    Case("alias-bomb", alias_bomb(), "alias", 6),
    Case("alias-recursive", "name: &a [*a]\n", "recursive", 1),
    Case("deep-nesting", DEEP, "nest", 1),
    Case("huge-file", huge(), "10 MB", None),
    Case("not-utf8", b"name: caf\xe9\n", "not UTF-8", 1),
    Case("not-utf8-line-3", b"version: 1\nname: monthly\n# caf\xe9\n", "not UTF-8", 3),
    Case("nul-byte", "name: a\x00b\n", "character", 1),
    Case("escape-sequence", "name: \"\x1b[2J\x1b[31mmonthly\"\n", "character", 1),
    Case("duplicate-key", lines("name: a", "name: b"), "duplicate key 'name'", 2),
    Case("duplicate-nested-key", lines("approval:", "  security: true", "  security: false"),
         "duplicate key 'security'", 3),
    Case("tab-indent", "approval:\n\tsecurity: true\n", "cannot start any token", 2),
    Case("python-tag", "name: !!python/object/apply:os.system ['id']\n", "could not determine a constructor", 1),
    Case("two-documents", lines("name: a", "---", "name: b"), "expected a single document", 2),
    Case("huge-integer", lines("approval:", "  delay_days: 1" + "0" * 5000), "too long", 2),
    Case("non-string-key", "1: monthly\n", "keys must be strings", 1),
    Case("bad-merge-key", lines("approval:", "  <<: 1"), "expected a mapping", 2),
]
POLICIES = cases_by_id(POLICY_CASES)


@pytest.mark.parametrize("case", params(POLICY_CASES))
def test_policy(box: Sandbox, case: Case) -> None:
    path = box.write("policy.yml", content(case, box))
    result = box.run("cycle", "run", "-i", box.inventory, "-p", path)
    assert_refused(result, box, path, case)


def test_policy_that_is_a_directory(box: Sandbox) -> None:
    path = box.dir / "policy.d"
    path.mkdir()
    assert_refused(box.run("cycle", "run", "-i", box.inventory, "-p", path), box, path, expect="cannot read")


def test_missing_policy(box: Sandbox) -> None:
    path = box.dir / "nosuch.yml"
    assert_refused(box.run("cycle", "run", "-i", box.inventory, "-p", path), box, path, expect="cannot read")


def test_policy_refused_by_cycle_plan_too(box: Sandbox) -> None:
    path = box.write("policy.yml", POLICIES["health-http-template"].text.replace(JINJA, jinja(box.dir)))
    assert_refused(box.run("cycle", "plan", "-i", box.inventory, "-p", path), box, path, POLICIES["health-http-template"])


# --- schedules (`patchwave schedule run -s SCHEDULE`) -----------------------------------------------

HEAD = ("version: 1", "timezone: Europe/Berlin", "inventory: inventory.yml", "jobs:")
DIGEST = "  - {name: digest, kind: digest, every: 1d}"


def job(text: str) -> str:
    return lines(*HEAD, f"  - {{{text}}}")


SCHEDULE_CASES = [
    Case("empty-file", "", "empty schedule file"),
    Case("only-comments", "# jobs to come\n", "empty schedule file"),
    Case("null", "~\n", "empty schedule file"),
    Case("top-level-list", "- {name: digest, kind: digest, every: 1d}\n", "a schedule is a mapping"),
    Case("version-2", lines("version: 2", "jobs:", DIGEST), "version", 1),
    Case("unknown-key", lines(*HEAD, DIGEST, "retries: 3"), "unknown key", 6),
    Case("no-jobs", "timezone: UTC\n", "jobs: field required", 1),
    Case("empty-jobs", "jobs: []\n", "at least 1 item", 1),
    Case("job-name-space", job("name: my job, kind: digest, every: 1d"), "jobs[0].name", 5),
    Case("job-name-newline", job('name: "a\\nExecStartPre=/bin/id", kind: digest, every: 1d'), "jobs[0].name", 5),
    Case("job-name-template", job(f'name: "{JINJA}", kind: digest, every: 1d'), "jobs[0].name", 5),
    Case("duplicate-job-names", lines(*HEAD, DIGEST, DIGEST), "job names must be unique", 1),
    Case("unknown-kind", job("name: r, kind: reboot, every: 1d"), "jobs[0].kind", 5),
    Case("every-and-cron", job("name: s, kind: scan, every: 1d, cron: '0 2 * * *'"), "give either every", 5),
    Case("neither-every-nor-cron", job("name: s, kind: scan"), "give either every", 5),
    Case("every-too-short", job("name: s, kind: scan, every: 5s"), "shorter than a minute", 5),
    Case("every-garbage", job("name: s, kind: scan, every: soon"), "is not an interval", 5),
    Case("every-huge", job("name: s, kind: scan, every: 99999999999999999999d"), "longer than", 5),
    Case("cron-six-fields", job("name: s, kind: scan, cron: '* * * * * *'"), "is not a cron line", 5),
    Case("cron-bad-minute", job("name: s, kind: scan, cron: '61 * * * *'"), "is not a cron line", 5),
    Case("cron-never-fires", job("name: s, kind: scan, cron: '0 0 31 2 *'"), "never", 5),
    Case("cron-template", job("name: s, kind: scan, cron: '{{ x }}'"), "jobs[0].cron", 5),
    Case("unknown-time-zone", lines("timezone: Mars/Olympus", "jobs:", DIGEST), "unknown time zone", 1),
    Case("time-zone-directory", lines("timezone: America", "jobs:", DIGEST), "unknown time zone", 1),
    Case("baseline-on-scan", job("name: s, kind: scan, every: 1d, baseline: b.yml"), "baseline is for assess jobs", 5),
    Case("baseline-missing", job("name: a, kind: assess, every: 1d, baseline: nosuch.yml"), "does not exist", 5),
    Case("groups-on-discover", job("name: d, kind: discover, every: 1d, groups: [web]"),
         "covers the whole inventory", 5),
    Case("unknown-group", job("name: s, kind: scan, every: 1d, groups: [nosuch]"), "unknown group 'nosuch'", 5),
    Case("new-devices-unknown-action", lines(*HEAD, DIGEST, "new_devices: {default: nuke}"),
         "new_devices.default", 6),
    Case("retry-backoff-zero", lines(*HEAD, DIGEST, "retry: {backoff_seconds: 0}"), "greater than 0", 6),
    Case("retry-backoff-infinite", lines(*HEAD, DIGEST, "retry: {backoff_seconds: .inf}"), "retry.backoff_seconds", 6),
    Case("overdue-factor-below-1", lines(*HEAD, DIGEST, "overdue_factor: 0.5"), "greater than or equal to 1", 6),
    Case("thin-link-relay-template", lines(*HEAD, DIGEST, "thin_links:",
                                           f"  - {{groups: [web], relay: \"http://{JINJA}:3142/\"}}"),
         "thin_links[0].relay", 7),
    Case("inventory-missing", lines("inventory: nosuch.yml", "jobs:", DIGEST), "does not exist", 1),
    Case("inventory-template", lines(f"inventory: \"{JINJA}\"", "jobs:", DIGEST), "inventory", 1),
    Case("alias-bomb", alias_bomb(), "alias", 6),
    Case("not-utf8", b"timezone: Europe/Z\xfcrich\njobs: []\n", "not UTF-8", 1),
    Case("duplicate-key", lines("timezone: UTC", "timezone: Europe/Berlin", "jobs:", DIGEST),
         "duplicate key 'timezone'", 2),
    Case("tab-indent", "jobs:\n\t- {name: digest, kind: digest, every: 1d}\n", "cannot start any token", 2),
    Case("huge-file", huge(), "10 MB", None),
]


@pytest.mark.parametrize("case", params(SCHEDULE_CASES))
def test_schedule(box: Sandbox, case: Case) -> None:
    path = box.write("schedule.yml", content(case, box))
    assert_refused(box.run("schedule", "run", "-s", path), box, path, case)


def test_missing_schedule(box: Sandbox) -> None:
    path = box.dir / "nosuch.yml"
    assert_refused(box.run("schedule", "run", "-s", path), box, path, expect="cannot read")


# --- report definitions (`patchwave report -i INVENTORY -d DEFINITION`) ----------------------------

SHEET = ("name: Failing", "title: Failing hosts", "about: hosts with failing rules", "dataset: compliance_hosts")
HOST_COLUMN = ("columns:", "  - {field: host}")

REPORT_CASES = [
    Case("empty-file", "", "empty report definition file"),
    Case("only-comments", "# a report\n", "empty report definition file"),
    Case("top-level-list", "- {field: host}\n", "a report definition is a mapping"),
    Case("unknown-key", lines(*SHEET, *HOST_COLUMN, "colour: red"), "unknown key", 7),
    Case("unknown-dataset", lines(*SHEET[:3], "dataset: passwords", *HOST_COLUMN), "unknown dataset", 1),
    Case("unknown-field", lines(*SHEET, "columns:", "  - {field: password}"), "has no field 'password'", 6),
    Case("sheet-name-colon", lines("name: 'a:b'", *SHEET[1:], *HOST_COLUMN), "name", 1),
    Case("filter-op", lines(*SHEET, *HOST_COLUMN, "filters:", "  - {field: host, op: like, value: web}"),
         "filters[0].op", 8),
    Case("filter-in-scalar", lines(*SHEET, *HOST_COLUMN, "filters:", "  - {field: host, op: in, value: web1}"),
         "needs a list value", 8),
    Case("filter-compare-text-with-number", lines(*SHEET, *HOST_COLUMN, "filters:",
                                                  "  - {field: fail, op: gt, value: many}"), "number", 8),
    Case("filter-compare-date-with-garbage", lines(*SHEET, *HOST_COLUMN, "filters:",
                                                   "  - {field: assessed_at, op: ge, value: yesterday}"), "date", 8),
    Case("aggregates-without-group-by", lines(*SHEET, *HOST_COLUMN, "aggregates:", "  - {fn: count, header: n}"),
         "aggregates need group_by", 1),
    Case("chart-unknown-column", lines(*SHEET, *HOST_COLUMN, "chart: {type: bar, title: t, x: host, y: [nosuch]}"),
         "is not a column of this sheet", 7),
    Case("width-out-of-range", lines(*SHEET, "columns:", "  - {field: host, width: 500}"),
         "less than or equal to 120", 6),
    Case("fill-not-a-colour", lines(*SHEET, "columns:", "  - {field: host, fills: {fail: red}}"), "fills", 6),
    Case("formula-in-title", lines("name: Failing", "title: '=HYPERLINK(\"http://evil.example/\",\"open\")'",
                                   *SHEET[2:], *HOST_COLUMN), "formula", 2),
    Case("formula-in-header", lines(*SHEET, "columns:", "  - {field: host, header: '=1+2'}"), "formula", 6),
    Case("formula-in-about", lines(*SHEET[:2], "about: \"=cmd|' /C calc'!A0\"", SHEET[3], *HOST_COLUMN),
         "formula", 3),
    Case("workbook-without-sheets", lines("name: mine", "title: Mine", "sheets: []"), "at least 1 item", 3),
    Case("workbook-bad-name", lines("name: My Book", "title: Mine", "sheets:", "  - name: s",
                                    "    title: t", "    about: abc", "    dataset: compliance_hosts",
                                    "    columns: [{field: host}]"), "name", 1),
    Case("alias-bomb", alias_bomb(), "alias", 6),
    Case("not-utf8", b"name: Failing\ntitle: \xff\xfe\n", "not UTF-8", 2),
    Case("duplicate-key", lines(*SHEET, "dataset: rule_results", *HOST_COLUMN), "duplicate key 'dataset'", 5),
]


@pytest.mark.parametrize("case", params(REPORT_CASES))
def test_report_definition(box: Sandbox, case: Case) -> None:
    path = box.write("definition.yml", content(case, box))
    result = box.run("report", "-i", box.inventory, "-d", path, "-o", box.output)
    assert_refused(result, box, path, case)


def test_missing_report_definition(box: Sandbox) -> None:
    path = box.dir / "nosuch.yml"
    assert_refused(box.run("report", "-i", box.inventory, "-d", path, "-o", box.output), box, path,
                   expect="cannot read")


# --- inventories (`patchwave cycle run -i INVENTORY`) -----------------------------------------------

ALL = ("all:", "  vars: {ansible_host: 127.0.0.1, ansible_port: 9}", "  hosts:")

INVENTORY_CASES = [
    Case("empty-file", "", "the inventory has no hosts"),
    Case("invalid-yaml", lines(*ALL, "    web1: {patchwave_owner: [team"), "invalid YAML", 5),
    Case("owner-template", lines(*ALL, f"    web1: {{patchwave_owner: \"{JINJA}\"}}"), "template", 4),
    Case("device-type-template-statement",
         lines(*ALL, "    web1: {patchwave_device_type: \"{% for i in range(9) %}x{% endfor %}\"}"), "template", 4),
    Case("release-template-comment", lines(*ALL, "    web1: {patchwave_release: \"{# x #}bookworm\"}"), "template", 4),
    Case("host-name-template", lines(*ALL, "    \"{{ lookup('env', 'HOME') }}\": {}"), "template", 4),
    Case("group-name-template", lines("all:", "  vars: {ansible_host: 127.0.0.1}", "  children:",
                                      "    \"{{ 7 * 7 }}\":", "      hosts: {web1: {}}"), "template", 4),
    Case("host-name-space", lines(*ALL, "    \"web 1\": {}"), "host name", 4),
    # a one-host limit for `web1:all` would be every host; a host named like a group, the group
    Case("host-name-pattern-separator", lines(*ALL, "    \"web1:all\": {}"), "separates host patterns", 4),
    Case("host-name-is-a-group", lines("all:", "  vars: {ansible_host: 127.0.0.1}", "  children:",
                                       "    web:", "      hosts: {web: {}, web1: {}}"), "also a group's name", 4),
    Case("criticality-not-a-number", lines(*ALL, "    web1: {patchwave_criticality: high}"), "must be an integer", 4),
    Case("criticality-bool", lines(*ALL, "    web1: {patchwave_criticality: true}"), "must be an integer", 4),
    Case("owner-not-text", lines(*ALL, "    web1: {patchwave_owner: {team: web}}"), "text", 4),
    Case("owner-escape-sequence", lines(*ALL, '    web1: {patchwave_owner: "team\\e[2J"}'), "control character", 4),
    Case("alias-bomb", alias_bomb(), "alias", 7),  # inventories may be bigger, so may their aliases
    Case("not-utf8", b"all:\n  hosts:\n    web1: {patchwave_owner: caf\xe9}\n", "not UTF-8", 3),
    Case("huge-file", huge(65), "64 MB", None),
]


@pytest.mark.parametrize("case", params(INVENTORY_CASES))
def test_inventory(box: Sandbox, case: Case) -> None:
    path = box.write("hosts.yml", content(case, box))
    assert_refused(box.run("cycle", "run", "-i", path), box, path, case)


def test_inventory_ini_with_a_template(box: Sandbox) -> None:
    path = box.write("hosts.ini", f"[web]\nweb1 ansible_host=127.0.0.1 patchwave_owner=\"{jinja(box.dir)}\"\n")
    assert_refused(box.run("cycle", "run", "-i", path), box, path, expect="template", line=2)


def test_missing_inventory(box: Sandbox) -> None:
    path = box.dir / "nosuch.yml"
    assert_refused(box.run("cycle", "run", "-i", path), box, path, expect="inventory not found")


def test_inventory_directory_without_hosts(box: Sandbox) -> None:
    path = box.dir / "inventory.d"
    path.mkdir()
    assert_refused(box.run("cycle", "run", "-i", path), box, path, expect="has no hosts")


# --- the same through the console script (what a shell runs) ----------------------------------------

@pytest.mark.parametrize("kind, case", [
    ("policy", POLICIES["health-http-template"]), ("policy", POLICIES["alias-bomb"]),
    ("policy", POLICIES["empty-file"]), ("schedule", SCHEDULE_CASES[0]), ("report", REPORT_CASES[0]),
    ("inventory", INVENTORY_CASES[2]),
], ids=["policy-template", "policy-alias-bomb", "policy-empty", "schedule-empty", "report-empty", "inventory-template"])
def test_as_a_subprocess(box: Sandbox, kind: str, case: Case) -> None:
    path = box.write(f"{kind}.yml", content(case, box))
    argv = {"policy": ("cycle", "run", "-i", box.inventory, "-p", path), "schedule": ("schedule", "run", "-s", path),
            "report": ("report", "-i", box.inventory, "-d", path, "-o", box.output),
            "inventory": ("cycle", "run", "-i", path)}[kind]
    assert_refused(box.run(*argv, subprocess_=True), box, path, case)


# --- and what is unusual but fine still loads ----------------------------------------------------------

def test_an_unusual_but_valid_inventory_still_loads(box: Sandbox) -> None:
    """The checks refuse what is hostile, not what is merely unusual: anchors and merge keys,
    vault-encrypted values, addresses as host names, hosts without variables."""
    from patchwave.ansible.inventory import load_hosts

    path = box.write("hosts.yml", lines(
        "all:",
        "  vars: {ansible_host: 127.0.0.1}",
        "  hosts:",
        "    bare-host:",
        "    fe80::1: {patchwave_owner: net-team}",
        "    10.0.0.7: {patchwave_criticality: '3'}",
        "  children:",
        "    web:",
        "      vars:",
        "        secret: !vault |",
        "          $ANSIBLE_VAULT;1.1;AES256",
        "          6162636465666768696a6b6c6d6e6f70",
        "      hosts:",
        "        web1.example.internal: &server {patchwave_device_type: server, patchwave_owner: team-web}",
        "        web2.example.internal: {<<: *server, patchwave_release: bookworm}",
    ))
    hosts = {h.name: h for h in load_hosts(path)}
    assert set(hosts) == {"bare-host", "fe80::1", "10.0.0.7", "web1.example.internal", "web2.example.internal"}
    assert hosts["web2.example.internal"].owner == "team-web" and hosts["10.0.0.7"].criticality == 3
