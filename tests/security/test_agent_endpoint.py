"""The agent endpoint (`patchwave serve`) under abuse: a real server on 127.0.0.1 with a real TLS
certificate (made here) and a real store (SQLite in tmp_path). Two hundred idle connections and a
client that sends its headers a byte a second do not hold up agent deliveries, which are stored;
the slow client is cut off at the header deadline; the connection cap holds (idle clients make
room, authorised deliveries are never dropped for a newcomer, and a delivery that stalls is cut
off at its own deadline); every refused request is answered 4xx and leaves every table as it was."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from patchwave.baseline.assessment import compile_rules
from patchwave.baseline.profile import DEFAULT_PROFILE, Baseline
from patchwave.fleet.agent import AgentServer, Receiver, new_token, serve
from patchwave.models import Host
from patchwave.store import Store
from patchwave.store.schema import metadata

HOSTS = [Host("agent1", ("remote",), "workstation", "field-team"),
         Host("agent2", ("remote",), "workstation", "field-team")]
MAX_BODY = 64 * 1024  # small, so that "too large" is cheap to send

# What playbooks/agent.yml posts for its scan: {"kind": "scan", "result": <the registered result of
# patchwave.endpoint.pending_updates>} (ansible.builtin.uri, body_format json).
SCAN_RESULT: dict[str, Any] = {
    "changed": False, "failed": False,
    "updates": [
        {"name": "pw-libssl", "installed": "1.0-1", "candidate": "1.0-2", "source": "pw-libssl",
         "origins": [{"label": "Debian-Security", "suite": "bookworm-security"}], "security": True, "held": False,
         "new_install": False, "needs_new_packages": False, "new_packages": [], "removes": [], "required_by": []},
        {"name": "pw-tools-common", "installed": None, "candidate": "1.1-1", "source": "pw-tools",
         "origins": [{"label": "Patchwave Lab", "suite": "patchwave-lab"}], "security": False, "held": False,
         "new_install": True, "needs_new_packages": False, "new_packages": [], "removes": [],
         "required_by": ["pw-agent"]},
    ],
    "removals": [],
    "reboot_required": {"required": False, "packages": [], "signals": [], "details": {}},
    "dpkg": {"clean": True, "output": "", "lock_holders": []},
    "free_space_mb": 5120, "installed": {}, "package_manager": "apt",
    "invocation": {"module_args": {"update_cache": True, "query": [], "expect": None, "cycle_id": None,
                                   "state_dir": "/var/lib/patchwave", "download_limit_kbps": 0, "relay": None}},
}
SCAN = {"kind": "scan", "result": SCAN_RESULT}


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key; the clients here trust exactly this certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "patchwave-test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.now(UTC) - timedelta(minutes=5))
            .not_valid_after(datetime.now(UTC) + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "endpoint.crt", folder / "endpoint.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class Endpoint:
    server: AgentServer
    port: int
    store: Store
    tokens: dict[str, str]
    tls: ssl.SSLContext
    log: list[str]

    def deliver(self, host: str, body: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, Any]]:
        """An HTTPS POST as ansible.builtin.uri sends it (the certificate verified)."""
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=10)
        try:
            connection.request("POST", "/v1/results", body=json.dumps(body).encode(), headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {token or self.tokens[host]}",
                "X-Patchwave-Host": host, "User-Agent": "ansible-httpget", "Connection": "close"})
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            connection.close()

    def tls_socket(self) -> ssl.SSLSocket:
        return self.tls.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=10),
                                    server_hostname="127.0.0.1")

    def raw(self, head: bytes, body: bytes = b"") -> tuple[int | None, bytes]:
        """Send exactly these bytes over TLS; the status and body of the answer (None: none came)."""
        with self.tls_socket() as sock:
            sock.sendall(head + body)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        if not received:
            return None, b""
        status_line, _sep, rest = received.partition(b"\r\n")
        return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@contextmanager
def endpoint(folder: Path, **limits: Any) -> Iterator[Endpoint]:
    store = Store(f"sqlite:///{folder / 'pw.db'}")
    log: list[str] = []
    receiver = Receiver(store, HOSTS, Baseline(DEFAULT_PROFILE), log.append)
    tokens = {h.name: new_token(store, h.name, HOSTS) for h in HOSTS}
    cert, key = self_signed(folder)
    server = serve(receiver, "127.0.0.1:0", cert, key, **limits)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield Endpoint(server, server.server_address[1], store, tokens, ssl.create_default_context(cafile=str(cert)),
                       log)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def row_counts(store: Store) -> dict[str, int]:
    return {table: len(list(store.rows(table))) for table in sorted(metadata.tables)}


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def closed_by_server(sock: socket.socket, seconds: float) -> bool:
    """Did the server end this connection within `seconds`? (EOF or reset; it never sends data.)"""
    sock.settimeout(max(seconds, 0.01))
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except (BlockingIOError, ssl.SSLWantReadError):  # nothing to read: still open
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


class SlowHeaders(threading.Thread):
    """Slowloris: completes the TLS handshake, then sends its request a byte a second."""

    def __init__(self, ep: Endpoint) -> None:
        super().__init__(daemon=True)
        self.ep, self.sent, self.lasted, self.cut = ep, 0, 0.0, False

    def run(self) -> None:
        request = b"POST /v1/results HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Patchwave-Host: agent1\r\nX-Padding: " + b"a" * 100
        with self.ep.tls_socket() as sock:
            started = time.monotonic()
            sock.settimeout(1.0)
            for byte in request:
                try:
                    sock.send(bytes([byte]))
                    self.sent += 1
                    if sock.recv(1) == b"":  # waits a second for the server to say something
                        self.cut = True
                        break
                except TimeoutError:
                    continue
                except OSError:
                    self.cut = True
                    break
            self.lasted = time.monotonic() - started


def test_idle_connections_and_slow_headers_do_not_hold_up_deliveries(tmp_path: Path) -> None:
    header_timeout = 3.0
    with endpoint(tmp_path, header_timeout=header_timeout, idle_timeout=10.0, request_timeout=10.0,
                  max_connections=64) as ep:
        before = row_counts(ep.store)
        idle = [socket.create_connection(("127.0.0.1", ep.port), timeout=10) for _ in range(200)]
        # every connection the server has room for is now held by an idle client
        assert wait_for(lambda: ep.server.open_connections == 64, 5)
        slow = SlowHeaders(ep)
        slow.start()
        time.sleep(0.3)  # the slow client is in, among the idle ones
        timings, answers = [], []
        lock = threading.Lock()

        def one(host: str) -> None:
            started = time.monotonic()
            answer = ep.deliver(host, SCAN)
            with lock:
                timings.append(time.monotonic() - started)
                answers.append(answer)

        workers = [threading.Thread(target=one, args=(host,)) for host in ("agent1", "agent2") * 3]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        assert [code for code, _answer in answers] == [200] * 6, answers
        assert max(timings) < 3.0, timings  # while the idle clients still hold their connections
        assert all(answer == {"stored": "scan", "updates": 2} for _code, answer in answers)

        # the slow client is cut off at the header deadline, though it never went quiet
        slow.join(timeout=header_timeout + 10)
        assert slow.cut and header_timeout - 0.5 <= slow.lasted <= header_timeout + 2.0, (slow.cut, slow.lasted)
        assert slow.sent >= 2
        # and so is every idle client (or it made room earlier)
        ends = time.monotonic() + header_timeout + 3
        assert all(closed_by_server(sock, ends - time.monotonic()) for sock in idle)
        for sock in idle:
            sock.close()
        assert wait_for(lambda: ep.server.open_connections == 0, 5)

        # the server still answers, and stored exactly the deliveries
        assert ep.deliver("agent1", SCAN)[0] == 200
        after = row_counts(ep.store)
        assert after["scans"] == before["scans"] + 7 and after["pending_updates"] == before["pending_updates"] + 14
        changed = {table for table in after if after[table] != before[table]}
        assert changed == {"scans", "pending_updates"}
        stored = list(ep.store.rows("scans"))
        assert sorted(s["host"] for s in stored) == ["agent1"] * 4 + ["agent2"] * 3
        assert all(s["ok"] and s["result"]["delivered_by"] == "agent" for s in stored)


def test_the_connection_cap_holds_and_deliveries_are_never_dropped_for_a_newcomer(tmp_path: Path) -> None:
    with endpoint(tmp_path, header_timeout=5.0, idle_timeout=10.0, request_timeout=3.0, max_connections=4) as ep:
        before = row_counts(ep.store)
        # ten idle clients: the six oldest make room for the newer ones, four stay
        idle = []
        for _ in range(10):
            idle.append(socket.create_connection(("127.0.0.1", ep.port), timeout=10))
            time.sleep(0.02)  # in this order
        assert wait_for(lambda: sum(not still_open(s) for s in idle) == 6, 3)
        assert [still_open(s) for s in idle] == [False] * 6 + [True] * 4
        assert ep.server.open_connections == 4
        for sock in idle:
            sock.close()
        assert wait_for(lambda: ep.server.open_connections == 0, 5)

        # four authorised deliveries that stall in their body hold every connection
        head = (f"POST /v1/results HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Patchwave-Host: agent1\r\n"
                f"Authorization: Bearer {ep.tokens['agent1']}\r\nContent-Length: 1000\r\n\r\n").encode()
        stalled = []
        for _ in range(4):
            sock = ep.tls_socket()
            sock.sendall(head + b'{"kind": "scan", ')
            stalled.append(sock)
        started = time.monotonic()
        assert wait_for(lambda: ep.server.open_connections == 4, 3)
        time.sleep(1.0)  # the server has read their headers and checked their tokens
        # a newcomer is closed at once; none of the deliveries gives way
        newcomer = socket.create_connection(("127.0.0.1", ep.port), timeout=10)
        assert closed_by_server(newcomer, 1.0)
        newcomer.close()
        assert all(still_open(sock) for sock in stalled)
        # a stalled delivery is cut off at its request deadline, without an answer; nothing stored
        assert all(closed_by_server(sock, 3.0 + 3 - (time.monotonic() - started)) for sock in stalled)
        assert time.monotonic() - started >= 3.0 - 0.5
        for sock in stalled:
            sock.close()
        assert wait_for(lambda: ep.server.open_connections == 0, 5)
        assert row_counts(ep.store) == before
        # after the abuse, deliveries go through
        assert ep.deliver("agent2", SCAN) == (200, {"stored": "scan", "updates": 2})


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    with endpoint(tmp_path_factory.mktemp("endpoint"), header_timeout=5.0, idle_timeout=5.0, request_timeout=2.0,
                  max_body=MAX_BODY) as ep:
        yield ep


def _request(ep: Endpoint, host: str | None = "agent1", bearer: str | None = "agent1", length: str | None = "auto",
             body: bytes = b"", extra: str = "", path: str = "/v1/results") -> tuple[int | None, bytes]:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if host is not None:
        lines.append(f"X-Patchwave-Host: {host}")
    if bearer is not None:  # a host's name stands for its token
        lines.append(f"Authorization: Bearer {ep.tokens.get(bearer, bearer)}")
    if length is not None:
        lines.append(f"Content-Length: {len(body) if length == 'auto' else length}")
    head = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    return ep.raw(head.encode(), body)


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


REFUSED: dict[str, tuple[dict[str, Any], int | None]] = {
    "missing token": (dict(bearer=None, body=_json(SCAN)), 401),
    "wrong token": (dict(bearer="not-the-token", body=_json(SCAN)), 401),
    "another host's token": (dict(bearer="agent2", body=_json(SCAN)), 401),
    "unknown host": (dict(host="web9", body=_json(SCAN)), 401),
    "missing host": (dict(host=None, body=_json(SCAN)), 401),
    "wrong path": (dict(path="/v1/other", body=_json(SCAN)), 404),
    "two host headers": (dict(extra="X-Patchwave-Host: agent2\r\n", body=_json(SCAN)), 400),
    "non-numeric Content-Length": (dict(length="abc", body=_json(SCAN)), 400),
    "negative Content-Length": (dict(length="-5", body=_json(SCAN)), 400),
    "fractional Content-Length": (dict(length="1.5e3", body=_json(SCAN)), 400),
    "zero Content-Length": (dict(length="0"), 400),
    "too large Content-Length": (dict(length=str(MAX_BODY + 1)), 413),
    "absurd Content-Length": (dict(length="9" * 5000), 413),
    "no Content-Length": (dict(length=None, body=_json(SCAN)), 411),
    "two Content-Lengths": (dict(extra="Content-Length: 5\r\n", body=_json(SCAN)), 400),
    "chunked body": (dict(length=None, extra="Transfer-Encoding: chunked\r\n", body=b"5\r\n{}\r\n0\r\n\r\n"), 400),
    "body shorter than declared": (dict(length="5000", body=_json(SCAN)), None),
    "not JSON": (dict(body=b"kind=scan&result=x"), 400),
    "NaN": (dict(body=b'{"kind": "scan", "result": {"free_space_mb": NaN}}'), 400),
    "nested too deep": (dict(body=b"[" * 30_000 + b"]" * 30_000), 400),
    "not an object": (dict(body=_json([SCAN])), 400),
    "wrong kind": (dict(body=_json({"kind": "reboot", "result": SCAN_RESULT})), 400),
    "no result": (dict(body=_json({"kind": "scan"})), 400),
    "result not an object": (dict(body=_json({"kind": "scan", "result": "all fine"})), 400),
    "updates not a list": (dict(body=_json({"kind": "scan", "result": {"updates": "pw-libssl"}})), 400),
    "update without a candidate": (dict(body=_json({"kind": "scan", "result": {"updates": [{"name": "x"}]}})), 400),
    "results not a list": (dict(body=_json({"kind": "assessment", "result": {"results": {"id": "x"}}})), 400),
    "a rule without a status": (dict(body=_json({"kind": "assessment", "result": {"results": [{"id": "x"}]}})), 400),
    "a port without a protocol": (dict(body=_json({"kind": "assessment", "result": {
        "results": [], "snapshot": {"ports": ["22"]}}})), 400),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_requests_are_answered_4xx_and_store_nothing(shared: Endpoint, case: str) -> None:
    request, expected = REFUSED[case]
    before = row_counts(shared.store)
    status, body = _request(shared, **request)
    assert status == expected, body
    if status is not None:
        assert 400 <= status < 500 and "error" in json.loads(body)
    assert row_counts(shared.store) == before
    if expected == 401:
        assert any("refused a delivery" in line for line in shared.log)


def test_a_basic_scheme_is_not_a_bearer_token(shared: Endpoint) -> None:
    before = row_counts(shared.store)
    status, _body = _request(shared, bearer=None, body=_json(SCAN),
                             extra=f"Authorization: Basic {shared.tokens['agent1']}\r\n")
    assert status == 401 and row_counts(shared.store) == before


def test_real_deliveries_are_stored(shared: Endpoint) -> None:
    """The control for the refusals: the same endpoint takes a scan and an assessment."""
    before = row_counts(shared.store)
    assert shared.deliver("agent2", SCAN) == (200, {"stored": "scan", "updates": 2})
    rules = compile_rules(Baseline(DEFAULT_PROFILE), [HOSTS[1]])["agent2"].rules[:3]
    assessment = {"kind": "assessment", "result": {
        "changed": False, "failed": False,
        "results": [{"id": r.id, "status": "pass", "duration": 0.01,
                     "evidence": {"expected": "x", "observed": "x", "where": "/etc/x:1"}} for r in rules],
        "summary": {"pass": 3, "fail": 0, "error": 0, "not_applicable": 0, "excepted": 0, "total": 3,
                    "facts": {"distribution": "Debian", "version": "12"}, "duration": 0.2},
        "snapshot": {"listening": ["tcp 0.0.0.0:22 sshd"], "ports": ["tcp/22"], "packages": {"bash": "5.2.15-2+b2"},
                     "services": ["ssh.service"], "uid0": ["root"]}}}
    status, answer = shared.deliver("agent2", assessment)
    assert status == 200 and answer["stored"] == "assessment"
    after = row_counts(shared.store)
    assert (after["scans"], after["assessments"]) == (before["scans"] + 1, before["assessments"] + 1)
