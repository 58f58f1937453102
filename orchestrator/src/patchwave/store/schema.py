"""The store's tables: every scan, decision, wave, host result, assessment, message and asset, appended
with timestamps. SCHEMA_VERSION counts the shapes the tables have had (migrations.py)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 11

metadata = MetaData()

schema_info = Table("schema_info", metadata, Column("version", Integer, nullable=False))

cycles = Table(
    "cycles", metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(32), nullable=False),
    Column("inventory", Text, nullable=False),
    Column("policy", JSON, nullable=False),
    Column("manifest", JSON),
    Column("options", JSON),  # schema 3: targeted hosts, policy dir, advisories, forced window
)

scans = Table(
    "scans", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id")),
    Column("host", String(255), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # scan | confirm
    Column("at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("result", JSON, nullable=False),
)

pending = Table(
    "pending_updates", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scan_id", Integer, ForeignKey("scans.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("installed", String(255)),
    Column("candidate", String(255), nullable=False),
    Column("source", String(255), nullable=False),
    Column("security", Boolean, nullable=False),
    Column("held", Boolean, nullable=False),
    Column("new_install", Boolean, nullable=False),
    Column("ecosystem", String(64)),  # schema 10: the host's OSV ecosystem (Debian:12), from its os-release
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("installed", String(255)),
    Column("version", String(255), nullable=False),
    Column("approved", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("advisories", JSON, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("cves", JSON),  # schema 2
    Column("published", String(32)),  # schema 2
    Column("sla_due", String(32)),  # schema 4: published + the policy's SLA days for the severity
    Column("ecosystem", String(64)),  # schema 10: the release of the host it was made for (catch-ups carry per release)
)

changelogs = Table(
    "changelogs", metadata,  # schema 10: what a staged package's changelog says (from the stage result)
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("version", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("urgency", String(16)),  # the most urgent entry's; none when no entry gives one
    Column("cves", JSON, nullable=False),
    Column("versions", JSON, nullable=False),  # the versions of the entries read
)

waves = Table(
    "waves", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("idx", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("hosts", JSON, nullable=False),
    Column("status", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("gate", JSON),
)

host_results = Table(
    "host_results", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False, index=True),
    Column("stage", String(32), nullable=False),  # stage | deploy | confirm
    Column("wave", Integer),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("unreachable", Boolean, nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSON, nullable=False),
)

end_states = Table(
    "end_states", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("state", String(32), nullable=False),
    Column("packages", JSON, nullable=False),
    Column("detail", Text, nullable=False),
)

cycle_locks = Table(
    "cycle_locks", metadata,  # schema 3: one orchestrator drives a cycle at a time
    Column("cycle_id", String(64), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("holder", String(64), nullable=False, server_default=""),  # schema 9: who, as a random token
    Column("lease_until", DateTime(timezone=True)),  # schema 9: renewed while the holder runs
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
)

runs = Table(
    "runs", metadata,  # schema 4: one row per ansible-runner invocation
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), index=True),
    Column("ident", String(128), nullable=False),
    Column("playbook", Text, nullable=False),
    Column("hosts", JSON, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("seconds", Float),  # wall time of the invocation, handler time included
    Column("handler_seconds", Float),  # spent in Patchwave's event handling (store writes, display)
    Column("status", String(32), nullable=False),  # running | successful | failed | timeout | canceled
    Column("rc", Integer),
)

task_events = Table(
    "task_events", metadata,  # schema 4: each host's task results, written as they arrive
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("host", String(255), nullable=False),
    Column("task", Text, nullable=False),
    Column("action", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # ok | changed | failed | unreachable
    Column("message", Text, nullable=False),
)

approvals = Table(
    "approvals", metadata,  # schema 4: manual approval gates, who decided and when
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cycle_id", String(64), ForeignKey("cycles.id"), nullable=False, index=True),
    Column("wave", Integer, nullable=False),
    Column("wave_name", String(64), nullable=False),
    Column("approved", Boolean, nullable=False),
    Column("by", String(255), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("comment", Text, nullable=False),
)

assessments = Table(
    "assessments", metadata,  # schema 5: one baseline assessment of one host
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch", String(64), nullable=False, index=True),  # one `patchwave assess` run
    Column("host", String(255), nullable=False, index=True),
    Column("baseline", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # assess | confirm (after remediation)
    Column("at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False),  # the host was assessed
    Column("unreachable", Boolean, nullable=False),
    Column("message", Text, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("score", Float),  # % passing of the applicable rules, exceptions not counted
    Column("score_with_exceptions", Float),  # excepted rules counted as passing
    Column("snapshot", JSON),
    Column("drift", JSON),
)

rule_results = Table(
    "rule_results", metadata,  # schema 5: every rule's result with its evidence
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("assessment_id", Integer, ForeignKey("assessments.id"), nullable=False, index=True),
    Column("host", String(255), nullable=False),
    Column("rule_id", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("severity", String(16), nullable=False, index=True),  # trends read the critical ones
    Column("criticality", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("duration", Float),
    Column("exception_id", String(64)),
)

rule_failures = Table(
    "rule_failures", metadata,  # schema 11: each time a host's rule started failing, and when it passed again
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),
    Column("rule_id", String(64), nullable=False),
    Column("title", Text, nullable=False),  # as the failing result named it
    Column("severity", String(16), nullable=False, index=True),
    Column("opened_id", Integer, ForeignKey("assessments.id"), nullable=False),  # the first failing assessment
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("closed_id", Integer, ForeignKey("assessments.id")),  # the first passing one after it
    Column("closed_at", DateTime(timezone=True)),
    Index("ix_rule_failures_open", "host", "closed_id"),
)

remediations = Table(
    "remediations", metadata,  # schema 5: what a remediation changed (or would change) on a host
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch", String(64), nullable=False, index=True),
    Column("host", String(255), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("check_mode", Boolean, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("changed", Boolean, nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSON, nullable=False),
)

outbox = Table(
    "outbox", metadata,  # schema 6: every notification and ticket call, written before it is sent
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, unique=True),  # idempotency key: one row per message, ever
    Column("channel", String(64), nullable=False),
    Column("route", String(64), nullable=False),
    Column("event", String(32), nullable=False),
    Column("op", String(16), nullable=False),  # send, or for tickets: open, update, close, check
    Column("ticket", String(255)),  # tickets.key for ticket operations
    Column("severity", String(16), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", JSON, nullable=False),  # the event's data; never a secret (those are read when sending)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # pending, sent, failed (gave up), skipped
    Column("attempts", Integer, nullable=False),
    Column("next_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("result", JSON),
    Column("claimed_by", String(320)),  # schema 9: the flusher sending it (host:pid:token, status `sending`) ...
    Column("claimed_until", DateTime(timezone=True)),  # ... until then; after that it is pending again
)

tickets = Table(
    "tickets", metadata,  # schema 6: one ticket per host and rule (or host and failed cycle) and channel
    Column("key", String(255), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # rule or patch
    Column("host", String(255), nullable=False),
    Column("subject", String(255), nullable=False),  # the rule id or the cycle id
    Column("external_id", String(128)),  # the ticket system's key (OPS-12, an incident sys_id)
    Column("number", String(128)),  # what people call it (OPS-12, INC0010001)
    Column("state", String(16), nullable=False),  # opening, open, closing, closed
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("reopened", Integer, nullable=False),  # times found closed in the ticket system while still failing
    Column("note", Text, nullable=False),
)

assets = Table(
    "assets", metadata,  # schema 7: every host any discovery saw, as it was last seen in the inventory
    Column("host", String(255), primary_key=True),
    Column("inventory", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_discovered", DateTime(timezone=True), nullable=False),
    Column("gone_at", DateTime(timezone=True)),
    Column("groups", JSON, nullable=False),
    Column("device_type", String(64), nullable=False),
    Column("owner", String(255), nullable=False),
)

asset_events = Table(
    "asset_events", metadata,  # schema 7: new, gone, returned, changed — and the new-device decision
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("host", String(255), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("decision", String(16)),  # observe, remediate-now, patch-now, next-cycle (new hosts)
    Column("done_at", DateTime(timezone=True)),  # when the decision was carried out
    Column("outcome", Text),
)

schedule_runs = Table(
    "schedule_runs", metadata,  # schema 7: one row per job and slot, written before the job starts
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(64), nullable=False),
    Column("slot", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),  # running, ok, failed, skipped
    Column("runner", String(255), nullable=False),  # host:pid of the process that runs it
    Column("detail", JSON, nullable=False),
    UniqueConstraint("job", "slot", name="uq_schedule_runs_slot"),
)

agent_tokens = Table(
    "agent_tokens", metadata,  # schema 8: hosts that deliver their own results (agent mode)
    Column("host", String(255), primary_key=True),
    Column("token_sha256", String(64), nullable=False),  # the token itself is shown once and never stored
    Column("created_at", DateTime(timezone=True), nullable=False),
)
