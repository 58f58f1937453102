"""Agent-style mode, for hosts the orchestrator cannot reach over SSH: the host runs the same
collection locally (ansible-pull, or `ansible-playbook -c local playbooks/agent.yml` on a timer)
and delivers its scan and assessment results to `patchwave serve`, an HTTP(S) endpoint. Each host
has its own token (shown once by `patchwave agent token HOST`; the store keeps only its SHA-256).
A request with a missing or wrong token, for an unknown host, or with a body that is not a result
is refused and nothing is stored; an accepted result is stored exactly as one fetched over SSH."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import ssl
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from patchwave.assessment import compile_rules, record_result
from patchwave.baseline import Baseline
from patchwave.cycle import new_cycle_id, updates_from_scan
from patchwave.errors import InputError
from patchwave.models import Host
from patchwave.store import Store

MAX_BODY = 20 * 1024 * 1024  # an assessment with its snapshot stays far below this
PATH = "/v1/results"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(store: Store, host: str, known: list[Host]) -> str:
    """Make (or replace) the host's token; the only time the token itself is seen."""
    if host not in {h.name for h in known}:
        raise InputError(f"agent token: {host!r} is not in the inventory")
    token = secrets.token_urlsafe(32)
    store.set_agent_token(host, digest(token))
    return token


class Receiver:
    """Checks and stores what agents deliver."""

    def __init__(self, store: Store, hosts: list[Host], baseline: Baseline, log: Callable[[str], None]) -> None:
        self.store, self.baseline, self.log = store, baseline, log
        self.hosts = {h.name: h for h in hosts}

    def authorised(self, host: str, header: str) -> bool:
        expected = self.store.agent_token(host) if host in self.hosts else None
        scheme, _sep, token = header.partition(" ")
        # compare digests in constant time; a missing host still costs a comparison
        return (expected is not None and scheme == "Bearer" and bool(token)
                and hmac.compare_digest(digest(token), expected))

    def accept(self, host: str, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or body.get("kind") not in ("scan", "assessment") \
                or not isinstance(body.get("result"), dict):
            return 400, {"error": "the body is {\"kind\": \"scan\" | \"assessment\", \"result\": {...}}"}
        result = body["result"]
        failed = bool(result.get("failed"))
        if body["kind"] == "scan":
            updates = [] if failed else updates_from_scan(host, result)
            self.store.add_scan(None, host, "scan", not failed, {**result, "delivered_by": "agent"}, updates)
            self.log(f"agent {host}: scan stored ({len(updates)} pending update(s))")
            return 200, {"stored": "scan", "updates": len(updates)}
        compiled = compile_rules(self.baseline, [self.hosts[host]])[host]
        entry = record_result(self.store, f"agent-{new_cycle_id()}", host, self.baseline.profile.name, compiled,
                              "assess", None if failed else result, False,
                              str(result.get("msg", "the agent's assessment failed")) if failed else "")
        self.log(f"agent {host}: assessment stored (score {entry.get('score')}%)")
        return 200, {"stored": "assessment", "assessment": entry.get("assessment"), "score": entry.get("score")}


def serve(receiver: Receiver, listen: str, cert: Path | None = None, key: Path | None = None) -> ThreadingHTTPServer:
    """Bind the endpoint (HTTPS with `cert` and `key`); the caller runs serve_forever()."""
    address, _sep, port = listen.rpartition(":")
    if not port.isdigit() or not address:
        raise InputError(f"--listen {listen!r}: use ADDRESS:PORT (e.g. 127.0.0.1:8787)")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, code: int, data: dict[str, Any]) -> None:
            text = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def do_POST(self) -> None:
            host = self.headers.get("X-Patchwave-Host", "")
            if self.path != PATH:
                self._answer(404, {"error": f"POST results to {PATH}"})
                return
            if not receiver.authorised(host, self.headers.get("Authorization", "")):
                receiver.log(f"agent: refused a delivery for {host!r} from {self.client_address[0]}: bad or missing "
                             "token")
                self._answer(401, {"error": "unknown host or bad token"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._answer(413 if length > MAX_BODY else 400, {"error": "a result body is required (max 20 MB)"})
                return
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                self._answer(400, {"error": "the body is not JSON"})
                return
            code, answer = receiver.accept(host, body)
            self._answer(code, answer)

    server = ThreadingHTTPServer((address, int(port)), Handler)
    if cert is not None and key is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    elif (cert is None) != (key is None):
        raise InputError("--tls-cert and --tls-key go together")
    return server
