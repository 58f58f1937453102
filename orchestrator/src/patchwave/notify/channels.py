"""Sending: a signed JSON webhook, an e-mail over SMTP (STARTTLS or SMTPS), and tickets through
Jira-compatible and ServiceNow-compatible REST calls. Each call either succeeds or raises
DeliveryError with a message that never contains a secret; the outbox decides about retries.

Every HTTP call here carries a credential (basic auth, or the webhook's signature), and urllib
would carry it on to wherever a 3xx answer points, another host included. So no redirect is ever
followed, not even one to the same host: a 3xx is a delivery error that names the Location, and
the channel's URL is what to fix."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

from patchwave.notify.config import Jira, NotifyError, ServiceNow, Smtp, Webhook, shown

SIGNATURE_HEADER = "X-Patchwave-Signature"  # sha256=<hex HMAC of "<timestamp>.<body>">
TIMESTAMP_HEADER = "X-Patchwave-Timestamp"  # seconds since the epoch, part of what is signed
DELIVERY_HEADER = "X-Patchwave-Delivery"  # the outbox key: the same for every retry of one message


class DeliveryError(Exception):
    """Not delivered; `retry` is False when sending it again cannot help (a 4xx answer)."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _tls(ca_file: str | None, base: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(base / ca_file) if ca_file else None)


def _secret(item: Any, base: Path) -> str:
    try:
        value: str = item.value(base)
    except NotifyError as exc:
        raise DeliveryError(f"secret: {exc.message}", retry=False) from exc
    return value


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follows nothing: with no new request, urllib hands the 3xx on as an HTTPError, which
    `_request` turns into a DeliveryError naming the Location (see the module docstring)."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        return None


def _request(method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float,
             tls: ssl.SSLContext) -> tuple[int, bytes]:
    """One HTTP(S) call (the channel URLs are checked to be https, or http with insecure: true,
    when the policy loads)."""
    request = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - the scheme is checked at load
                                     headers={"User-Agent": "patchwave", **headers})
    opener = urllib.request.build_opener(_NoRedirects, urllib.request.HTTPSHandler(context=tls))
    try:
        with opener.open(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise DeliveryError(_redirected(method, url, exc.code, exc.headers.get("Location")), retry=False) from None
        # 408, 425, 429 and 5xx may pass; any other 4xx will not (a bad request, credentials, a missing project)
        said = _service_said(exc)
        raise DeliveryError(f"{method} {shown(url)}: HTTP {exc.code} {exc.reason}" + (f": {said}" if said else ""),
                            retry=exc.code in (408, 425, 429) or exc.code >= 500) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"{method} {shown(url)}: {getattr(exc, 'reason', exc)}") from None


def _service_said(error: urllib.error.HTTPError, longest: int = 300) -> str:
    """What the service says went wrong, from its error body: Jira's `errorMessages` and
    `errors`, ServiceNow's `error.message` and `error.detail`; one printable line, cut short."""
    try:
        body = json.loads(error.read(16384) or b"{}")
    except (OSError, ValueError):
        return ""
    said: list[str] = []
    if isinstance(body, dict):
        said += [str(m) for m in body.get("errorMessages") or [] if m]
        said += [f"{k}: {v}" for k, v in (body.get("errors") or {}).items()] if isinstance(body.get("errors"), dict) else []
        nested = body.get("error")
        if isinstance(nested, dict):
            said += [str(nested[k]) for k in ("message", "detail") if nested.get(k)]
    text = " ".join(" ".join(said).split())
    text = "".join(c for c in text if c.isprintable())
    return text if len(text) <= longest else text[:longest - 1] + "…"


def _redirected(method: str, url: str, code: int, location: str | None) -> str:
    """The error for a 3xx: where it pointed (without user, password or query) and whether that
    is another host. Not retried: the channel's URL has to change."""
    if not location:
        return f"{method} {shown(url)}: HTTP {code} without a Location; not followed"
    target = urljoin(url, location.strip())
    other = "another host" if _origin(target) != _origin(url) else "the same host"
    return (f"{method} {shown(url)}: redirected (HTTP {code}) to {shown(target)} ({other}); not followed: Patchwave "
            "never sends a channel's credentials on to where a redirect points: set the channel's url to the "
            "address the service answers on")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number: no origin is equal to it
        port = -1
    return parts.scheme, (parts.hostname or ""), port


def _http(method: str, url: str, body: Any, headers: dict[str, str], timeout: float, tls: ssl.SSLContext) -> Any:
    """A JSON call; the decoded answer."""
    data = json.dumps(body).encode() if body is not None else None
    _status, text = _request(method, url, data, {"Content-Type": "application/json", "Accept": "application/json",
                                                 **headers}, timeout, tls)
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        raise DeliveryError(f"{method} {shown(url)}: the answer is not JSON") from None


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# --- messages --------------------------------------------------------------------------------

def send_webhook(channel: Webhook, base: Path, key: str, message: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(message, sort_keys=True, default=str).encode()
    stamp = str(int(time.time()))
    headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(_secret(channel.secret, base), stamp, body),
               DELIVERY_HEADER: key, "Content-Type": "application/json", "User-Agent": "patchwave"}
    status, _text = _request("POST", channel.url, body, headers, channel.timeout_seconds, _tls(channel.ca_file, base))
    return {"status": status}


def send_mail(channel: Smtp, base: Path, key: str, subject: str, text: str) -> dict[str, Any]:
    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail["Date"] = format_datetime(time_now())
    # the same Message-ID for every retry of one message: mail systems and people can tell a repeat
    mail["Message-ID"] = make_msgid(idstring=hashlib.sha256(key.encode()).hexdigest()[:24], domain="patchwave")
    mail["X-Patchwave-Delivery"] = key
    mail.set_content(text)
    try:
        # smtps: TLS from the first byte; starttls: smtplib raises when the server does not offer
        # it, so a password never goes out in the clear (the policy refuses one without TLS)
        server = (smtplib.SMTP_SSL(channel.host, channel.port, timeout=channel.timeout_seconds,
                                   context=_tls(channel.ca_file, base)) if channel.smtps
                  else smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_seconds))
        with server:
            if channel.starttls and not channel.smtps:
                server.starttls(context=_tls(channel.ca_file, base))
            if channel.username is not None and channel.password is not None:
                server.login(_secret(channel.username, base), _secret(channel.password, base))
            refused = server.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP {channel.host}:{channel.port}: authentication refused ({exc.smtp_code})",
                            retry=False) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP {channel.host}:{channel.port}: {exc.smtp_code}",
                            retry=exc.smtp_code >= 400 and exc.smtp_code < 500) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {channel.host}:{channel.port}: {type(exc).__name__}: {exc}") from None
    if refused:
        raise DeliveryError(f"SMTP {channel.host}:{channel.port}: refused recipients {', '.join(refused)}",
                            retry=False)
    return {"recipients": len(channel.to), "message_id": mail["Message-ID"]}


def time_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- tickets ---------------------------------------------------------------------------------

class TicketSystem:
    """What the closed loop needs from a ticket system; `marker` is the idempotency key that
    finds a ticket again (a Jira label, a ServiceNow correlation id)."""

    def find(self, marker: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def open(self, marker: str, summary: str, text: str, severity: str) -> dict[str, Any]:
        raise NotImplementedError

    def comment(self, external_id: str, text: str) -> None:
        raise NotImplementedError

    def close(self, external_id: str, text: str) -> None:
        raise NotImplementedError

    def reopen(self, external_id: str, text: str) -> None:
        raise NotImplementedError

    def is_closed(self, external_id: str) -> bool:
        raise NotImplementedError


def marker(ticket_key: str) -> str:
    """A stable, label-safe form of a ticket key."""
    return "patchwave-" + hashlib.sha256(ticket_key.encode()).hexdigest()[:20]


class JiraTickets(TicketSystem):
    """Jira's REST API: issues, comments and transitions through v2 (Cloud and Data Center both
    serve it, with a plain-text description); the search through what each offers today: Cloud
    removed `/rest/api/2/search` (it answers 410) for `/rest/api/3/search/jql`, Data Center has
    only the former. The channel's `deployment` says which; `auto` asks the server once."""

    # url -> ("cloud" | "data-center", when the server said so): asked again after DEPLOYMENT_TTL
    _deployments: ClassVar[dict[str, tuple[str, float]]] = {}
    DEPLOYMENT_TTL = 900.0

    def __init__(self, channel: Jira, base: Path) -> None:
        self.channel = channel
        self.tls = _tls(channel.ca_file, base)
        self.auth = _basic(_secret(channel.user, base), _secret(channel.token, base))

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return _http(method, f"{self.channel.url}{path}", body, self.auth, self.channel.timeout_seconds, self.tls)

    def deployment(self) -> str:
        if self.channel.deployment != "auto":
            return self.channel.deployment
        known = self._deployments.get(self.channel.url)
        if known is None or time.monotonic() - known[1] > self.DEPLOYMENT_TTL:
            # serverInfo's deploymentType: "Cloud" on Jira Cloud, "Server" or "DataCenter" otherwise
            info = self._call("GET", "/rest/api/2/serverInfo")
            known = ("cloud" if str(info.get("deploymentType", "")).lower() == "cloud" else "data-center",
                     time.monotonic())
            self._deployments[self.channel.url] = known
        return known[0]

    def find(self, marker: str) -> dict[str, Any] | None:
        jql = quote(f'project = {self.channel.project} AND labels = "{marker}"')
        search = "/rest/api/3/search/jql" if self.deployment() == "cloud" else "/rest/api/2/search"
        found = self._call("GET", f"{search}?jql={jql}&fields=status&maxResults=1")
        issues = found.get("issues") or []
        return {"external_id": issues[0]["key"], "number": issues[0]["key"]} if issues else None

    def open(self, marker: str, summary: str, text: str, severity: str) -> dict[str, Any]:
        created = self._call("POST", "/rest/api/2/issue", {"fields": {
            "project": {"key": self.channel.project}, "issuetype": {"name": self.channel.issue_type},
            "summary": summary[:250], "description": text, "labels": [marker, "patchwave", f"severity-{severity}"]}})
        if not created.get("key"):
            raise DeliveryError("Jira did not return the new issue's key")
        return {"external_id": created["key"], "number": created["key"]}

    def comment(self, external_id: str, text: str) -> None:
        self._call("POST", f"/rest/api/2/issue/{quote(external_id)}/comment", {"body": text})

    def _transition(self, external_id: str, name: str, text: str) -> None:
        offered = self._call("GET", f"/rest/api/2/issue/{quote(external_id)}/transitions").get("transitions", [])
        chosen = next((t for t in offered if t.get("name", "").lower() == name.lower()
                       or (t.get("to") or {}).get("name", "").lower() == name.lower()), None)
        if chosen is None:
            raise DeliveryError(f"Jira issue {external_id} offers no transition {name!r} (it offers "
                                f"{', '.join(t.get('name', '?') for t in offered) or 'none'}): set the channel's "
                                "close_transition / reopen_transition", retry=False)
        # the comment rides on the transition: a retried transition never posts it twice
        self._call("POST", f"/rest/api/2/issue/{quote(external_id)}/transitions",
                   {"transition": {"id": chosen["id"]}, "update": {"comment": [{"add": {"body": text}}]}})

    def close(self, external_id: str, text: str) -> None:
        if self.is_closed(external_id):  # ops closed it by hand: there is no transition left to take
            self.comment(external_id, text)
            return
        self._transition(external_id, self.channel.close_transition, text)

    def reopen(self, external_id: str, text: str) -> None:
        if not self.is_closed(external_id):  # re-opened by hand already
            self.comment(external_id, text)
            return
        self._transition(external_id, self.channel.reopen_transition, text)

    def is_closed(self, external_id: str) -> bool:
        issue = self._call("GET", f"/rest/api/2/issue/{quote(external_id)}?fields=status")
        status = (issue.get("fields") or {}).get("status") or {}
        return bool((status.get("statusCategory") or {}).get("key") == "done")


# ServiceNow incident states: 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled
_SNOW_DONE = ("6", "7", "8")
_SNOW_URGENCY = {"critical": "1", "high": "1", "medium": "2", "low": "3", "unknown": "3"}


class ServiceNowTickets(TicketSystem):
    """ServiceNow Table API on the incident table."""

    def __init__(self, channel: ServiceNow, base: Path) -> None:
        self.channel = channel
        self.tls = _tls(channel.ca_file, base)
        self.auth = _basic(_secret(channel.user, base), _secret(channel.password, base))

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return _http(method, f"{self.channel.url}{path}", body, self.auth, self.channel.timeout_seconds, self.tls)

    def find(self, marker: str) -> dict[str, Any] | None:
        found = self._call("GET", "/api/now/table/incident?sysparm_query=" + quote(f"correlation_id={marker}")
                           + "&sysparm_fields=sys_id,number,state&sysparm_limit=1")
        rows = found.get("result") or []
        return {"external_id": rows[0]["sys_id"], "number": rows[0].get("number", "")} if rows else None

    def open(self, marker: str, summary: str, text: str, severity: str) -> dict[str, Any]:
        body = {"short_description": summary[:160], "description": text, "correlation_id": marker,
                "correlation_display": "Patchwave", "urgency": _SNOW_URGENCY.get(severity, "3"),
                "impact": _SNOW_URGENCY.get(severity, "3")}
        if self.channel.assignment_group:
            body["assignment_group"] = self.channel.assignment_group
        created = (self._call("POST", "/api/now/table/incident", body).get("result") or {})
        if not created.get("sys_id"):
            raise DeliveryError("ServiceNow did not return the new incident's sys_id")
        return {"external_id": created["sys_id"], "number": created.get("number", "")}

    def comment(self, external_id: str, text: str) -> None:
        self._call("PATCH", f"/api/now/table/incident/{quote(external_id)}", {"work_notes": text})

    def close(self, external_id: str, text: str) -> None:
        if self.is_closed(external_id):  # resolved or closed by hand already: only say why it stays so
            self.comment(external_id, text)
            return
        self._call("PATCH", f"/api/now/table/incident/{quote(external_id)}",
                   {"state": self.channel.close_state, "close_code": self.channel.close_code, "close_notes": text})

    def reopen(self, external_id: str, text: str) -> None:
        if not self.is_closed(external_id):  # open (or on hold) already: only add the evidence
            self.comment(external_id, text)
            return
        self._call("PATCH", f"/api/now/table/incident/{quote(external_id)}",
                   {"state": self.channel.reopen_state, "work_notes": text})

    def is_closed(self, external_id: str) -> bool:
        found = self._call("GET", f"/api/now/table/incident/{quote(external_id)}?sysparm_fields=state")
        state = str((found.get("result") or {}).get("state", ""))
        return state in _SNOW_DONE or state == self.channel.close_state


def ticket_system(channel: Jira | ServiceNow, base: Path) -> TicketSystem:
    return JiraTickets(channel, base) if isinstance(channel, Jira) else ServiceNowTickets(channel, base)
