"""Real receivers on 127.0.0.1 for the notification tests: a webhook receiver that checks the
HMAC signature (and can fail N times, or hang), an SMTP server with STARTTLS or SMTPS and AUTH
(aiosmtpd), and small Jira- and ServiceNow-compatible REST servers that keep their tickets in
memory. Any of the HTTP ones can serve https with a certificate made here (the test's own CA).
For the outbound rules: a server that answers every request with a redirect, and one that
records every request it gets (and whether it carried credentials)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlparse

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hanging handler must not hold up the test's shutdown


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], state: Any, port: int = 0,
            tls: tuple[Path, Path] | None = None) -> Iterator[tuple[str, Any]]:
    """Serve on 127.0.0.1; with `tls` (a certificate and its key, see `self_signed`) over https."""
    server = _Server(("127.0.0.1", port), handler)
    server.state = state  # type: ignore[attr-defined]
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    @property
    def state(self) -> Any:
        return self.server.state  # type: ignore[attr-defined]

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(self, code: int, data: Any = None) -> None:
        text = json.dumps(data).encode() if data is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


# --- webhook ---------------------------------------------------------------------------------

class WebhookState:
    def __init__(self, secret: str, fail_first: int = 0, hang_seconds: float = 0) -> None:
        self.secret, self.fail_first, self.hang_seconds = secret, fail_first, hang_seconds
        self.delivered: list[tuple[str, dict[str, Any]]] = []  # (delivery id, message), accepted ones
        self.refused = 0  # wrong or stale signatures
        self.failed = 0  # answered 503 on purpose
        self.lock = threading.Lock()

    def ids(self) -> list[str]:
        return [d for d, _m in self.delivered]


class WebhookHandler(_Handler):
    def do_POST(self) -> None:
        state: WebhookState = self.state
        body = self.body()
        stamp = self.headers.get("X-Patchwave-Timestamp", "")
        expected = "sha256=" + hmac.new(state.secret.encode(), stamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        if not fresh or not hmac.compare_digest(expected, self.headers.get("X-Patchwave-Signature", "")):
            with state.lock:
                state.refused += 1
            self.answer(401, {"error": "bad signature"})
            return
        if state.hang_seconds:
            time.sleep(state.hang_seconds)  # the sender gives up (or is killed) before the answer
            return
        with state.lock:
            if state.failed < state.fail_first:
                state.failed += 1
                self.answer(503, {"error": "try later"})
                return
            state.delivered.append((self.headers.get("X-Patchwave-Delivery", ""), json.loads(body)))
        self.answer(200, {"ok": True})


# --- SMTP ------------------------------------------------------------------------------------

def self_signed(folder: Path, name: str = "localhost", stem: str = "smtp") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key (the test's own CA: the client trusts
    exactly this certificate), as `<stem>.crt` and `<stem>.key` in `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.now(UTC) - timedelta(minutes=5))
            .not_valid_after(datetime.now(UTC) + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class MailBox:
    def __init__(self, user: str, password: str, implicit_tls: bool = False) -> None:
        self.user, self.password, self.implicit_tls = user, password, implicit_tls
        self.messages: list[dict[str, Any]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes

        mail = message_from_bytes(envelope.content)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "subject": mail["Subject"], "message_id": mail["Message-ID"],
                              "delivery": mail["X-Patchwave-Delivery"],
                              "tls": self.implicit_tls or session.ssl is not None,
                              "body": mail.get_payload(decode=True).decode()})
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login.decode() == self.user
              and data.password.decode() == self.password)
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself


@contextmanager
def smtp_server(folder: Path, user: str, password: str,
                tls: Literal["starttls", "smtps", "none"] = "starttls") -> Iterator[tuple[int, MailBox, Path]]:
    """AUTH required, and `tls`: STARTTLS required before anything (the default), TLS from the
    first byte (SMTPS), or none at all (a server that would take a password in the clear)."""
    cert, key = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = MailBox(user, password, implicit_tls=tls == "smtps")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options: dict[str, Any] = {"starttls": {"tls_context": context, "require_starttls": True},
                               "smtps": {"ssl_context": context, "auth_require_tls": False},
                               "none": {"auth_require_tls": False}}[tls]
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate, auth_required=True,
                            auth_exclude_mechanism=["LOGIN"], **options)  # PLAIN answers a wrong password at once
    controller.start()
    try:
        yield port, box, cert
    finally:
        controller.stop()


# --- Jira ------------------------------------------------------------------------------------

class JiraState:
    """A Jira as its REST API answers today. `deployment` "Cloud": the enhanced search
    (`/rest/api/3/search/jql`, pages with `nextPageToken`/`isLast`, no `total`), and 410 Gone on
    the search endpoints Cloud removed; "DataCenter": `/rest/api/2/search` (with `total`), and no
    v3 API at all. Both serve v2 issues, comments, transitions and serverInfo."""

    def __init__(self, user: str, token: str, deployment: str = "Cloud") -> None:
        self.auth = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.deployment = deployment
        self.issues: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def close_by_hand(self, key: str) -> None:
        self.issues[key]["status"] = "Done"


class JiraHandler(_Handler):
    def _allowed(self) -> bool:
        if self.headers.get("Authorization") != self.state.auth:
            self.answer(401, {"errorMessages": ["unauthorized"]})
            return False
        self.state.calls.append((self.command, urlparse(self.path).path))
        return True

    def _status(self, issue: dict[str, Any]) -> dict[str, Any]:
        done = issue["status"] == "Done"
        return {"name": issue["status"], "statusCategory": {"key": "done" if done else "new"}}

    def do_GET(self) -> None:  # noqa: PLR0912 - one branch per endpoint the fake serves
        if not self._allowed():
            return
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        cloud = self.state.deployment == "Cloud"
        if url.path == "/rest/api/2/serverInfo":
            self.answer(200, {"baseUrl": f"http://{self.headers.get('Host')}", "deploymentType": self.state.deployment,
                              "version": "1001.0.0-SNAPSHOT" if cloud else "10.3.4"})
        elif cloud and url.path in ("/rest/api/2/search", "/rest/api/3/search"):
            self.answer(410, {"errorMessages": ["The requested API has been removed. Please migrate to the "
                                                "/rest/api/3/search/jql API."], "errors": {}})
        elif not cloud and parts[:3] == ["rest", "api", "3"]:
            self.answer(404, {"errorMessages": ["null for uri: " + url.path]})
        elif url.path in ("/rest/api/3/search/jql", "/rest/api/2/search/jql", "/rest/api/2/search"):
            query = parse_qs(url.query)
            jql = query["jql"][0]
            label = jql.split('labels = "', 1)[1].rstrip('"')
            found = [{"id": str(n), "key": k, "fields": {"status": self._status(i)}}
                     for n, (k, i) in enumerate(self.state.issues.items(), 1) if label in i["labels"]]
            size = int(query.get("maxResults", ["50"])[0])
            if url.path == "/rest/api/2/search":  # Data Center: offset pages with a total
                self.answer(200, {"startAt": 0, "maxResults": size, "total": len(found), "issues": found[:size]})
            else:
                page = {"issues": found[:size], "isLast": len(found) <= size}
                if len(found) > size:
                    page["nextPageToken"] = f"page-2-{len(found)}"
                self.answer(200, page)
        elif len(parts) == 6 and parts[5] == "transitions":
            issue = self.state.issues[unquote(parts[4])]
            offered = [{"id": "31", "name": "Done", "to": {"name": "Done"}}] if issue["status"] != "Done" else [
                {"id": "41", "name": "Reopen", "to": {"name": "To Do"}}]
            self.answer(200, {"transitions": offered})
        elif len(parts) == 5 and parts[3] == "issue":
            issue = self.state.issues.get(unquote(parts[4]))
            if issue is None:
                self.answer(404, {"errorMessages": ["no such issue"]})
            else:
                self.answer(200, {"key": unquote(parts[4]), "fields": {"status": self._status(issue)}})
        else:
            self.answer(404, {})

    def do_POST(self) -> None:
        if not self._allowed():
            return
        data = json.loads(self.body() or b"{}")
        parts = urlparse(self.path).path.strip("/").split("/")
        with self.state.lock:
            if parts == ["rest", "api", "2", "issue"]:
                fields = data["fields"]
                key = f"{fields['project']['key']}-{len(self.state.issues) + 1}"
                self.state.issues[key] = {"summary": fields["summary"], "description": fields["description"],
                                          "labels": fields["labels"], "status": "To Do", "comments": []}
                self.answer(201, {"key": key, "id": str(len(self.state.issues))})
            elif parts[-1] == "comment":
                self.state.issues[unquote(parts[4])]["comments"].append(data["body"])
                self.answer(201, {"id": "1"})
            elif parts[-1] == "transitions":
                issue = self.state.issues[unquote(parts[4])]
                offered = {"31": "Done"} if issue["status"] != "Done" else {"41": "To Do"}
                if data["transition"]["id"] not in offered:  # as Jira answers a transition not offered now
                    self.answer(400, {"errorMessages": [], "errors": {
                        "transition": "It seems that you have tried to perform a workflow operation (transition) "
                                      "that is not valid for the current state of this issue."}})
                    return
                issue["status"] = offered[data["transition"]["id"]]
                for change in (data.get("update") or {}).get("comment", []):
                    issue["comments"].append(change["add"]["body"])
                self.answer(204)
            else:
                self.answer(404, {})


# --- ServiceNow ------------------------------------------------------------------------------

class SnowState:
    def __init__(self, user: str, password: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.incidents: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()


class SnowHandler(_Handler):
    def _allowed(self) -> bool:
        if self.headers.get("Authorization") != self.state.auth:
            self.answer(401, {"error": {"message": "User Not Authenticated"}})
            return False
        return True

    def do_GET(self) -> None:
        if not self._allowed():
            return
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if url.path == "/api/now/table/incident":
            wanted = parse_qs(url.query)["sysparm_query"][0].split("=", 1)[1]
            found = [{"sys_id": s, "number": i["number"], "state": i["state"]}
                     for s, i in self.state.incidents.items() if i["correlation_id"] == wanted]
            self.answer(200, {"result": found[:1]})
        elif len(parts) == 5:
            incident = self.state.incidents.get(parts[4])
            self.answer(404, {}) if incident is None else self.answer(200, {"result": {"state": incident["state"]}})
        else:
            self.answer(404, {})

    def do_POST(self) -> None:
        if not self._allowed():
            return
        data = json.loads(self.body())
        with self.state.lock:
            sys_id = hashlib.sha1(str(len(self.state.incidents)).encode()).hexdigest()  # noqa: S324 - an id
            number = f"INC{len(self.state.incidents) + 10001:07d}"
            self.state.incidents[sys_id] = {**data, "number": number, "state": "1", "notes": []}
        self.answer(201, {"result": {"sys_id": sys_id, "number": number}})

    def do_PATCH(self) -> None:
        if not self._allowed():
            return
        data = json.loads(self.body())
        incident = self.state.incidents[urlparse(self.path).path.strip("/").split("/")[4]]
        if data.get("state") in ("6", "7") and not (data.get("close_code") and data.get("close_notes")):
            # the out-of-the-box data policy: resolving needs the resolution code and notes
            self.answer(403, {"error": {"message": "Operation Failed", "detail": "Data Policy Exception: \n"
                                        "The following fields are mandatory: Resolution code, Resolution notes"},
                              "status": "failure"})
            return
        with self.state.lock:
            if "close_code" in data:
                incident["close_code"] = data["close_code"]
            for note in ("work_notes", "close_notes"):
                if note in data:
                    incident["notes"].append(data[note])
            if "state" in data:
                incident["state"] = data["state"]
        self.answer(200, {"result": {"state": incident["state"]}})


# --- redirects -------------------------------------------------------------------------------

class RedirectState:
    """Answers every request with `code` and `Location: location`."""

    def __init__(self, location: str, code: int = 302) -> None:
        self.location, self.code = location, code
        self.requests: list[tuple[str, str]] = []  # (method, path)


class RedirectHandler(_Handler):
    def _redirect(self) -> None:
        self.body()
        self.state.requests.append((self.command, self.path))
        self.send_response(self.state.code)
        self.send_header("Location", self.state.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PATCH = do_PUT = _redirect


class RecorderState:
    """Where a redirect points: records every request it gets and answers 200 with `answer`
    (JSON), so that a client that followed the redirect would think it had succeeded."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = {} if answer is None else answer
        self.requests: list[dict[str, Any]] = []  # method, path, headers (names lower-case), body
        self.lock = threading.Lock()

    def with_credentials(self) -> list[dict[str, Any]]:
        """The requests that carried basic auth, a bearer token or a webhook signature."""
        return [r for r in self.requests
                if {"authorization", "x-patchwave-signature", "cookie"} & set(r["headers"])]


class RecorderHandler(_Handler):
    def _record(self) -> None:
        body = self.body()
        with self.state.lock:
            self.state.requests.append({"method": self.command, "path": self.path, "body": body,
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
        self.answer(200, self.state.answer)

    do_GET = do_POST = do_PATCH = do_PUT = _record
