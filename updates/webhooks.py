"""Webhook URLs and the one POST an alert makes: where the admin said, only there, and bounded.

The rules, checked when a rule is saved (`check_url`, from AlertRule.clean) and again when an
alert is delivered (`post_json`):

- only ``http://`` and ``https://``, with a host name, and no ``user:password@`` part (a secret
  in the userinfo would be sent in the clear by some receivers and shown by proxies' logs);
- never to a link-local, unspecified, multicast or reserved address (``169.254.0.0/16`` — the
  cloud metadata service —, ``fe80::/10``, ``0.0.0.0``, ``::``, …), whatever the setting;
- loopback and private addresses (``127.0.0.0/8``, ``10/8``, ``172.16/12``, ``192.168/16``,
  ``fc00::/7``, ``100.64/10``, ``::1``) only when ``PROFILEOPS_WEBHOOK_ALLOW_PRIVATE`` is on —
  for an internal relay. Unset, it is on in the embedded mode (``PROFILEOPS_DEMO``, which follows
  ``DEBUG``: the demo and the tests post to 127.0.0.1) and off in production.

At delivery the host name is resolved, every address it resolves to is checked, and the
connection goes to the checked address (with the host name kept for the ``Host`` header and for
TLS), so DNS cannot point the hook somewhere else between the check and the call. Redirects are
never followed: the answer's status is the outcome, and a 3xx is a failed delivery.

The whole call — resolving, connecting, TLS, sending, the status line and headers — has one
wall-clock deadline (`DEADLINE_SECONDS`): each socket operation waits at most for the time left,
and the watchdog that bounds calls to Target (deadlines.py) shuts the socket down when the
deadline passes, so a receiver that drips its answer one byte at a time cannot hold the caller
longer. The answer's body is not read.

Errors never quote the URL (it often holds a secret): they say what was refused and why.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from .conf import setting
from .deadlines import Deadline, DeadlineExceeded, bounded, watch

DEADLINE_SECONDS = 5.0
SCHEMES = ("http", "https")

# Codes of the ValidationErrors check_url raises (and of WebhookRefused at delivery).
SCHEME = "webhook_scheme"
CREDENTIALS = "webhook_credentials"
NO_HOST = "webhook_no_host"
FORBIDDEN_ADDRESS = "webhook_forbidden_address"
PRIVATE_ADDRESS = "webhook_private_address"
UNRESOLVED = "webhook_unresolved"


class WebhookRefused(Exception):
    """Delivery refused before anything was sent; `code` is one of the codes above."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # a scope id (fe80::1%eth0) is no help
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return ip


def private_allowed() -> bool:
    """PROFILEOPS_WEBHOOK_ALLOW_PRIVATE; unset, it follows the embedded mode (PROFILEOPS_DEMO)."""
    allowed = setting("WEBHOOK_ALLOW_PRIVATE")
    return bool(getattr(settings, "PROFILEOPS_DEMO", False)) if allowed is None else allowed


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *,
                    allow_private: bool) -> tuple[str, str] | None:
    """(code, reason) when a webhook may not go to `ip`; None when it may."""
    forbidden = (FORBIDDEN_ADDRESS, "a link-local, unspecified, multicast or reserved address "
                                    "(never allowed)")
    if ip.is_unspecified or ip.is_link_local or ip.is_multicast:
        return forbidden
    if ip.is_reserved and not ip.is_loopback:  # ::1 lies in the reserved ::/8
        return forbidden
    if not ip.is_global and not allow_private:
        return PRIVATE_ADDRESS, ("a loopback or private address (allowed only with "
                                 "PROFILEOPS_WEBHOOK_ALLOW_PRIVATE on, for an internal relay)")
    return None


def _parse(url: str) -> Target:
    """The URL's parts, or a ValidationError saying which rule it breaks (never quoting it)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationError("The webhook URL is not a valid URL.", code=SCHEME) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValidationError("A webhook URL must start with http:// or https://.", code=SCHEME)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError("A webhook URL may not carry a user name or password (user:pass@); "
                              "put the secret in the path, as Slack does.", code=CREDENTIALS)
    if not parts.hostname:
        raise ValidationError("A webhook URL needs a host name.", code=NO_HOST)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


def check_url(url: str) -> None:
    """Refuse (ValidationError with a code) a webhook URL that may never be delivered to.

    Checked without DNS: the scheme, credentials, and a host given as an address literal. A host
    name is resolved and checked at every delivery instead.
    """
    target = _parse(url)
    ip = _address(target.host)
    if ip is not None:
        problem = address_problem(ip, allow_private=private_allowed())
        if problem:
            code, reason = problem
            raise ValidationError(f"A webhook may not go to {reason}.", code=code)


# --- delivery ------------------------------------------------------------------------------------

def _resolve(host: str, port: int, deadline: Deadline) -> list[str]:
    """Every address `host` resolves to, within the deadline (getaddrinfo has no timeout of its
    own, so it runs in a daemon thread that is abandoned on overrun)."""
    if _address(host) is not None:
        return [host]
    found: dict[str, object] = {}

    def lookup() -> None:
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            found["error"] = error

    worker = threading.Thread(target=lookup, daemon=True, name="webhook-dns")
    worker.start()
    worker.join(deadline.left())
    if worker.is_alive():
        raise DeadlineExceeded(f"no answer within {deadline.seconds:g} s (resolving the host)")
    if "error" in found or not found.get("infos"):
        raise WebhookRefused("the webhook's host name does not resolve", code=UNRESOLVED)
    return list(dict.fromkeys(info[4][0] for info in found["infos"]))  # type: ignore[index]


def checked_addresses(host: str, port: int, *, deadline: Deadline | None = None) -> list[str]:
    """The addresses `host` resolves to, all of them allowed, or WebhookRefused."""
    deadline = deadline or Deadline(DEADLINE_SECONDS)
    addresses = _resolve(host, port, deadline)
    allow_private = private_allowed()
    for text in addresses:
        ip = _address(text)
        problem = address_problem(ip, allow_private=allow_private) if ip else (
            FORBIDDEN_ADDRESS, "an address that cannot be checked")
        if problem:
            code, reason = problem
            # One bad address refuses the host: DNS answers in any order, a check that passed
            # on one address would let the next lookup pick the other.
            raise WebhookRefused(f"the webhook's host resolves to {reason}", code=code)
    return addresses


def _connect(target: Target, addresses: list[str], deadline: Deadline) -> socket.socket:
    last: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left())
            sock.connect((address, target.port))
            return sock
        except OSError as error:
            sock.close()
            if isinstance(error, TimeoutError) and deadline.passed():
                raise DeadlineExceeded(f"no answer within {deadline.seconds:g} s") from None
            last = error
    assert last is not None
    raise last


class _PinnedConnection(http.client.HTTPConnection):
    """http.client speaking to an already connected socket (the checked address)."""

    def __init__(self, target: Target, sock: socket.socket) -> None:
        super().__init__(target.host, target.port)
        self.sock = sock

    def connect(self) -> None:  # never dial anything else
        raise ConnectionError("the pinned connection was closed")


def post_json(url: str, payload: dict, *, deadline_seconds: float = DEADLINE_SECONDS) -> int:
    """POST `payload` as JSON to `url`; the answer's HTTP status (3xx included: no redirects).

    Raises ValidationError (a URL that may never be used), WebhookRefused (its host resolves to
    an address that may not be used, or not at all), DeadlineExceeded, or OSError.
    """
    deadline = Deadline(deadline_seconds)
    check_url(url)
    target = _parse(url)
    addresses = checked_addresses(target.host, target.port, deadline=deadline)
    try:
        with bounded(deadline.until):
            return _exchange(target, _connect(target, addresses, deadline), payload, deadline)
    except (OSError, http.client.HTTPException) as error:
        if isinstance(error, DeadlineExceeded) or deadline.passed():
            raise DeadlineExceeded(f"no answer within {deadline_seconds:g} s") from None
        if isinstance(error, http.client.HTTPException):
            raise ConnectionError(f"not an HTTP answer ({type(error).__name__})") from None
        raise


def _exchange(target: Target, sock: socket.socket, payload: dict, deadline: Deadline) -> int:
    """Send the POST over the connected socket and read the status line and headers, each step
    waiting at most for the time left; the watchdog cuts a step that drips past the deadline.
    The socket is closed after."""
    try:
        if target.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(
                sock, server_hostname=target.host, do_handshake_on_connect=False)
        watch(sock)  # the TLS socket, when there is one: the handshake is watched too
        sock.settimeout(deadline.left())
        if isinstance(sock, ssl.SSLSocket):
            sock.do_handshake()
        connection = _PinnedConnection(target, sock)
        body = json.dumps(payload).encode("utf-8")
        sock.settimeout(deadline.left())
        connection.request("POST", target.path, body=body, headers={
            "Content-Type": "application/json", "User-Agent": "ProfileOps alerts",
            "Connection": "close"})
        sock.settimeout(deadline.left())
        response = connection.getresponse()  # the status line and headers; the body is not read
        deadline.left()
        return response.status
    finally:
        try:
            sock.close()
        except OSError:
            pass
