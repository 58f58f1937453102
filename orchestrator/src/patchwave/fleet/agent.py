"""Agent-style mode, for hosts the orchestrator cannot reach over SSH: the host runs the same
collection locally (ansible-pull, or `ansible-playbook -c local playbooks/agent.yml` on a timer)
and delivers its scan and assessment results to `patchwave serve`, an HTTP(S) endpoint. Each host
has its own token (shown once by `patchwave agent token HOST`; the store keeps only its SHA-256).
A request with a missing or wrong token, for an unknown host, or with a body that is not a result
is refused and nothing is stored; an accepted result is stored exactly as one fetched over SSH.

The endpoint faces networks the orchestrator does not control, so no client can hold it up: the
accept loop only accepts (the TLS handshake and every read happen in the connection's own
thread), every connection has a deadline for its handshake and headers and a limit on silence,
and at most `max_connections` are open at once. When all are taken, the oldest connection that
has not yet shown a valid token makes room for the new one; only when every connection is an
authorised delivery is the new one closed. Idle or slow clients therefore cannot lock agents out."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from patchwave.baseline.assessment import compile_rules, record_result
from patchwave.baseline.profile import Baseline
from patchwave.errors import InputError, PatchwaveError
from patchwave.ids import new_cycle_id
from patchwave.models import Host
from patchwave.patching.scan import updates_from_scan
from patchwave.paths import Paths
from patchwave.store import Store

MAX_BODY = 20 * 1024 * 1024  # an assessment with its snapshot stays far below this
PATH = "/v1/results"
HEADER_TIMEOUT = 10.0  # accept → TLS handshake → the last request header: an agent needs well under a second
IDLE_TIMEOUT = 30.0  # the longest silence on a connection, at any point
REQUEST_TIMEOUT = 120.0  # the last header → the last byte of the body (20 MB at ~170 KB/s)
MAX_CONNECTIONS = 64
STATUSES = ("pass", "fail", "error", "not_applicable", "excepted")
REPORT_EVERY = 60.0  # seconds between two summaries of the connections cut off or refused
_DIGITS = re.compile(r"[0-9]+")
_NO_TOKEN = hashlib.sha256(b"").hexdigest()  # compared against when a host has no token


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(store: Store, host: str, known: list[Host]) -> str:
    """Make (or replace) the host's token; the only time the token itself is seen."""
    if host not in {h.name for h in known}:
        raise InputError(f"agent token: {host!r} is not in the inventory")
    token = secrets.token_urlsafe(32)
    store.set_agent_token(host, digest(token))
    return token


def _text(value: Any, longest: int = 255) -> bool:
    return isinstance(value, str) and 0 < len(value) <= longest


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _malformed(kind: str, result: dict[str, Any]) -> str | None:  # noqa: PLR0911 - one refusal per field of a delivered result, in the order they are read
    """What in a delivered result the store could not take, or None. Only what is read from a
    result is checked (a failed result is stored as a failure, nothing else in it is read)."""
    if result.get("failed"):
        return None
    if kind == "scan":
        updates = result.get("updates", [])
        if not isinstance(updates, list):
            return "result.updates is not a list"
        for update in updates:
            if not (isinstance(update, dict) and _text(update.get("name")) and _text(update.get("candidate"))
                    and all(update.get(k) is None or _text(update.get(k)) for k in ("installed", "source"))
                    and isinstance(update.get("origins", []), list)
                    and all(isinstance(o, dict) and isinstance(o.get("suite", ""), str) for o in update.get("origins", []))
                    and _texts(update.get("required_by", []))):
                return "each of result.updates needs a name and a candidate (text), as pending_updates returns them"
        return None
    results = result.get("results", [])
    if not isinstance(results, list) or not all(
            isinstance(r, dict) and _text(r.get("id")) and r.get("status") in STATUSES
            and isinstance(r.get("evidence", {}), dict) and (r.get("exception") is None or _text(r.get("exception")))
            and (r.get("duration") is None or isinstance(r.get("duration"), int | float))
            for r in results):
        return f"each of result.results needs an id, a status ({', '.join(STATUSES)}) and evidence (an object)"
    summary, snapshot = result.get("summary", {}), result.get("snapshot") or {}
    if not isinstance(summary, dict) or not isinstance(summary.get("facts", {}), dict):
        return "result.summary is not an object with facts"
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("packages", {}), dict) \
            or not all(_texts(snapshot.get(k, [])) for k in ("ports", "services", "uid0", "listening")) \
            or not all("/" in port for port in snapshot.get("ports", [])):
        return "result.snapshot is not what assess_baseline returns (ports proto/port, services, uid0, packages)"
    return None


class Receiver:
    """Checks and stores what agents deliver."""

    def __init__(self, store: Store, hosts: list[Host], baseline: Baseline, log: Callable[[str], None], *,
                 paths: Paths | None = None, inventory: Path | None = None) -> None:
        """With `paths` and `inventory` (as `patchwave serve` gives them), each delivered
        assessment ends like every other: its workbook, its alerts and tickets."""
        self.store, self.baseline, self.log = store, baseline, log
        self.hosts = {h.name: h for h in hosts}
        self.paths, self.inventory = paths, inventory

    def authorised(self, host: str, header: str) -> bool:
        expected = self.store.agent_token(host) if host in self.hosts else None
        scheme, _sep, token = header.partition(" ")
        # compare digests in constant time; a missing host still costs a comparison
        matches = hmac.compare_digest(digest(token), expected or _NO_TOKEN)
        return expected is not None and scheme == "Bearer" and bool(token) and matches

    def accept(self, host: str, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or body.get("kind") not in ("scan", "assessment") \
                or not isinstance(body.get("result"), dict):
            return 400, {"error": "the body is {\"kind\": \"scan\" | \"assessment\", \"result\": {...}}"}
        result = body["result"]
        problem = _malformed(body["kind"], result)
        if problem is not None:
            self.log(f"agent {host}: refused a malformed {body['kind']}: {problem}")
            return 400, {"error": problem}
        failed = bool(result.get("failed"))
        if body["kind"] == "scan":
            updates = [] if failed else updates_from_scan(host, result)
            self.store.add_scan(None, host, "scan", not failed, {**result, "delivered_by": "agent"}, updates)
            self.log(f"agent {host}: scan stored ({len(updates)} pending update(s))")
            return 200, {"stored": "scan", "updates": len(updates)}
        compiled = compile_rules(self.baseline, [self.hosts[host]])[host]
        batch = f"agent-{new_cycle_id()}"
        entry = record_result(self.store, batch, host, self.baseline.profile.name, compiled,
                              "assess", None if failed else result, False,
                              str(result.get("msg", "the agent's assessment failed")) if failed else "")
        self.log(f"agent {host}: assessment stored (score {entry.get('score')}%)")
        if self.paths is not None and self.inventory is not None:
            from patchwave.baseline.service import finish_assessment

            try:  # stored already: a workbook or a channel that fails must not refuse the delivery
                finish_assessment(self.paths, self.store, self.inventory,
                                  {"batch": batch, "baseline": self.baseline.profile.name, "hosts": [entry]}, self.log)
            except (OSError, PatchwaveError) as exc:
                self.log(f"agent {host}: assessment stored, but its workbook or notifications failed: {exc}")
        return 200, {"stored": "assessment", "assessment": entry.get("assessment"), "score": entry.get("score")}


@dataclass(frozen=True)
class Limits:
    """What one connection may take of the endpoint (seconds, connections, bytes)."""

    header_timeout: float = HEADER_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    request_timeout: float = REQUEST_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    max_body: int = MAX_BODY


@dataclass(eq=False)
class _Connection:
    """One accepted connection, from accept to close. `disposable` until its request has shown a
    valid token: such a connection has proved nothing and is the one dropped to make room."""

    sock: socket.socket
    address: Any
    since: float
    deadline: float | None
    disposable: bool = True
    dropped: bool = False


def _shown(host: str) -> str:
    """A header value as it may appear in the log: quoted, and short."""
    return repr(host[:64] + ("…" if len(host) > 64 else ""))


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 answers close the connection: no connection idles between two requests
    protocol_version = "HTTP/1.0"
    server: AgentServer

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, code: int, data: dict[str, Any]) -> None:
        text = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def do_POST(self) -> None:  # noqa: PLR0911 - one HTTP answer per refusal, in the order the request is read
        server, receiver, limits = self.server, self.server.receiver, self.server.limits
        server.headers_in(self.client_address)
        if self.path != PATH:
            self._answer(404, {"error": f"POST results to {PATH}"})
            return
        for name in ("X-Patchwave-Host", "Authorization", "Content-Length"):
            if len(self.headers.get_all(name) or []) > 1:
                self._answer(400, {"error": f"more than one {name} header"})
                return
        host = self.headers.get("X-Patchwave-Host", "")
        try:
            allowed = receiver.authorised(host, self.headers.get("Authorization", ""))
        except Exception as exc:  # noqa: BLE001 - the store failing (busy, gone) is an answer, not a dead thread
            receiver.log(f"agent: cannot check the token of {_shown(host)}: {type(exc).__name__}")
            self._answer(503, {"error": "the store is not available; try again later"})
            return
        if not allowed:
            receiver.log(f"agent: refused a delivery for {_shown(host)} from {self.client_address[0]}: bad or "
                         "missing token")
            self._answer(401, {"error": "unknown host or bad token"})
            return
        server.authorised(self.client_address)
        if "Transfer-Encoding" in self.headers:
            self._answer(400, {"error": "send the body with a Content-Length, not a Transfer-Encoding"})
            return
        declared = (self.headers.get("Content-Length") or "").strip()
        if not declared:
            self._answer(411, {"error": "a Content-Length is required"})
            return
        if not _DIGITS.fullmatch(declared):
            self._answer(400, {"error": "the Content-Length is not a number of bytes"})
            return
        length = int(declared) if len(declared) <= 18 else limits.max_body + 1  # int() refuses very long digit strings
        if length == 0 or length > limits.max_body:
            self._answer(413 if length else 400,
                         {"error": f"a result body is required (at most {limits.max_body:,} bytes)"})
            return
        data = self.rfile.read(length)
        if len(data) < length:  # the client closed before the end of its body: nobody to answer
            return
        server.body_in(self.client_address)
        try:
            body = json.loads(data, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            self._answer(400, {"error": "the body is not JSON"})
            return
        try:
            code, answer = receiver.accept(host, body)
        except Exception as exc:  # noqa: BLE001 - whatever the store raised, the agent gets an answer and the log a line
            first_line = (str(exc).splitlines() or [""])[0][:300]
            receiver.log(f"agent {host}: the delivery could not be stored: {type(exc).__name__}: {first_line}")
            code, answer = 500, {"error": "the result could not be stored; deliver it again later"}
        self._answer(code, answer)


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, and not every store takes them."""
    raise ValueError(f"{name} is not a JSON value")


class AgentServer(HTTPServer):
    """HTTPServer with a thread per connection, the limits above, and TLS done per connection."""

    request_queue_size = 256  # a burst of connections waits in the kernel's queue, not in SYN retries

    def __init__(self, address: tuple[str, int], receiver: Receiver, limits: Limits,
                 tls: ssl.SSLContext | None) -> None:
        self.receiver, self.limits, self.tls = receiver, limits, tls
        self._lock = threading.Lock()
        self._open: dict[Any, _Connection] = {}  # by client address: unique among open connections
        self._cut = self._made_room = self._refused = 0
        self._reported = time.monotonic()
        super().__init__(address, _Handler)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    # --- in the accept loop: nothing here waits for a client -----------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        connection = self._admit(request, client_address)
        if connection is None:
            self.shutdown_request(request)
            return
        threading.Thread(target=self._run, args=(connection,), daemon=True,
                         name=f"agent-connection {client_address[0]}:{client_address[1]}").start()

    def _admit(self, request: socket.socket, address: Any) -> _Connection | None:
        now = time.monotonic()
        with self._lock:
            if address in self._open:  # not possible for a live TCP connection; never lose track of one
                self._drop(self._open[address])
            if len(self._open) >= self.limits.max_connections:
                oldest = min((c for c in self._open.values() if c.disposable), key=lambda c: c.since, default=None)
                if oldest is None:
                    self._refused += 1
                    return None
                self._drop(oldest)
                self._made_room += 1
            connection = _Connection(request, address, now, now + self.limits.header_timeout)
            self._open[address] = connection
            return connection

    def service_actions(self) -> None:
        """Called by serve_forever between accepts (at least every poll interval): cut off the
        connections past their deadline, and now and then say how many were."""
        now = time.monotonic()
        with self._lock:
            for connection in [c for c in self._open.values() if c.deadline is not None and c.deadline <= now]:
                self._drop(connection)
                self._cut += 1
            if now - self._reported < REPORT_EVERY or not (self._cut or self._made_room or self._refused):
                return
            cut, made_room, refused = self._cut, self._made_room, self._refused
            self._cut = self._made_room = self._refused = 0
            self._reported = now
        self.receiver.log(f"agent: in the last {REPORT_EVERY:.0f} s, {cut} connection(s) cut off (too slow), "
                          f"{made_room} dropped to make room for new ones, {refused} refused (all "
                          f"{self.limits.max_connections} connections busy with deliveries)")

    def _drop(self, connection: _Connection) -> None:
        """Forget the connection and end it; its thread, blocked in a read, returns (lock held)."""
        if self._open.get(connection.address) is connection:
            del self._open[connection.address]
        connection.dropped = True
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)

    # --- in the connection's thread ---------------------------------------------------------------
    def _run(self, connection: _Connection) -> None:
        try:
            connection.sock.settimeout(self.limits.idle_timeout)
            if self.tls is not None:
                with self._lock:  # wrapping does no I/O; under the lock, a drop always finds the current socket
                    if connection.dropped:
                        return
                    wrapped = self.tls.wrap_socket(connection.sock, server_side=True, do_handshake_on_connect=False)
                    connection.sock = wrapped
                wrapped.do_handshake()
            self.finish_request(connection.sock, connection.address)
        except OSError:
            pass  # TLS errors, timeouts, resets, a drop: the client went away or was cut off
        finally:
            with self._lock:
                if self._open.get(connection.address) is connection:
                    del self._open[connection.address]
            self.shutdown_request(connection.sock)

    # --- the handler tells where its request is ---------------------------------------------------
    def headers_in(self, address: Any) -> None:
        """The headers are in: the rest of the request (token check, body) has its own deadline."""
        with self._lock:
            if (connection := self._open.get(address)) is not None:
                connection.deadline = time.monotonic() + self.limits.request_timeout

    def authorised(self, address: Any) -> None:
        """A valid token: this connection is a delivery and is no longer dropped to make room."""
        with self._lock:
            if (connection := self._open.get(address)) is not None:
                connection.disposable = False

    def body_in(self, address: Any) -> None:
        """The body is read: storing it and answering are not cut off (an answer the client does
        not read is bounded by the idle timeout)."""
        with self._lock:
            if (connection := self._open.get(address)) is not None:
                connection.deadline = None

    def server_close(self) -> None:
        with self._lock:
            for connection in list(self._open.values()):
                self._drop(connection)
        super().server_close()


def serve(receiver: Receiver, listen: str, cert: Path | None = None, key: Path | None = None, *,
          header_timeout: float = HEADER_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT,
          request_timeout: float = REQUEST_TIMEOUT, max_connections: int = MAX_CONNECTIONS,
          max_body: int = MAX_BODY) -> AgentServer:
    """Bind the endpoint (HTTPS with `cert` and `key`); the caller runs serve_forever().
    `header_timeout`: from accept to the last request header, TLS handshake included (a client
    that sends its headers slowly is cut off after it); `idle_timeout`: the longest silence on a
    connection; `request_timeout`: from the last header to the last byte of the body;
    `max_connections`: open at once (see the module's docstring for who gives way)."""
    address, _sep, port = listen.rpartition(":")
    if not port.isdigit() or not address or not 0 <= int(port) <= 65535:
        raise InputError(f"--listen {listen!r}: use ADDRESS:PORT with a port up to 65535 (e.g. 127.0.0.1:8787; "
                         "0 picks a free one)")
    limits = Limits(header_timeout, idle_timeout, request_timeout, max_connections, max_body)
    if min(header_timeout, idle_timeout, request_timeout) <= 0 or max_connections < 1 or max_body < 1:
        raise InputError(f"agent endpoint limits must be positive: {limits}")
    if (cert is None) != (key is None):
        raise InputError("--tls-cert and --tls-key go together")
    context = None
    if cert is not None and key is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"--tls-cert {cert} / --tls-key {key}: {exc}") from None
    try:
        return AgentServer((address, int(port)), receiver, limits, context)
    except OSError as exc:
        raise InputError(f"--listen {listen!r}: cannot listen there: {exc.strerror or exc}") from None
