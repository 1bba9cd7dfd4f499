"""Adobe IMS and Target's Admin API, as far as ProfileOps uses them: the credentials twins.

- ``POST /ims/token/v3`` — OAuth Server-to-Server: ``grant_type=client_credentials``, the client
  ID and secret (form body) give ``{access_token, token_type, expires_in}``; a wrong secret gives
  401 ``{"error": "invalid_client"}`` as IMS does.
- ``GET /{tenant}/target/authentication/token?authorizationScope=profile_api`` — the current
  profile token ``{accessToken, tokenType, scope, expiresIn}``, or 404 when none is valid.
- ``POST`` on the same path — a new token (201); the previous one stops working at once, as when
  it is regenerated in Target's UI.
- ``GET /{tenant}/target/profileattributes/mbox`` — ``{mboxProfileAttributes: [...]}``.

Admin API calls need a current IMS token as ``Authorization: Bearer``, ``x-api-key`` equal to
the client ID it was issued to (401 otherwise). Tokens really expire: lifetimes are seconds,
short ones (a second or two) compress a day of renewals into a test. With ``require_auth`` the
profile update and read APIs of the emulator accept only the current profile token (401 for an
expired, replaced or unknown one).

The counters say what a test must know: how many tokens were minted, and how many ``POST``s came
while a token was still valid (ProfileOps must never make one unless an administrator forces a
rotation).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl

IMS_PATH = "/ims/token/v3"
TOKEN_SCOPE = "profile_api"


@dataclass
class AdobeCounts:
    ims_tokens: int = 0
    ims_refused: int = 0
    token_gets: int = 0
    token_posts: int = 0
    posts_while_valid: int = 0
    attribute_reads: int = 0
    admin_refused: int = 0
    profile_refused: int = 0  # profile API calls refused for their token


@dataclass
class AdobeAdmin:
    client_id: str = "profileops-client"
    client_secret: str = "profileops-secret"
    tenant: str = "acme"
    ims_lifetime: float = 86_399.0
    profile_token_lifetime: float = 7 * 86_400.0
    attributes: list[str] = field(default_factory=lambda: ["loanStatus", "loyaltyTier"])
    require_auth: bool = True
    # Adobe gives expiresIn in whole seconds (rounded down): a token with 0.7 s left says 0.
    # Off, short test lifetimes are given in milliseconds.
    whole_seconds: bool = False
    clock: Callable[[], float] = time.time
    counts: AdobeCounts = field(default_factory=AdobeCounts)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ims: dict[str, float] = {}  # IMS token -> expires at
        self._profile: tuple[str, float] | None = None  # (token, expires at)

    # --- what a test asks ------------------------------------------------------------------

    def current_profile_token(self) -> str | None:
        with self._lock:
            return self._valid_profile()

    def expire_profile_token(self) -> None:
        """The current profile token expires now (as if its lifetime had run out)."""
        with self._lock:
            self._profile = None

    def profile_token_accepted(self, authorization: str | None) -> bool:
        """The profile APIs' check when authentication is required."""
        with self._lock:
            current = self._valid_profile()
            accepted = current is not None and authorization == f"Bearer {current}"
            if not accepted:
                self.counts.profile_refused += 1
            return accepted

    # --- routing ---------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        parts = path.split("/")
        return path == IMS_PATH or (len(parts) >= 4 and parts[1] == self.tenant
                                    and parts[2] == "target")

    def answer(self, method: str, path: str, query: str, headers: Any, body: bytes
               ) -> tuple[int, dict]:
        """(status, JSON) for one request to IMS or the Admin API."""
        if path == IMS_PATH:
            return self._ims_token(method, body)
        if not self._admin_authorized(headers):
            with self._lock:
                self.counts.admin_refused += 1
            return 401, {"error_code": "401013", "message": "Oauth token is not valid"}
        rest = path.split("/")[3:]
        if rest == ["authentication", "token"]:
            if dict(parse_qsl(query)).get("authorizationScope") != TOKEN_SCOPE:
                return 400, {"errors": [{"errorCode": "BadRequest",
                                         "message": "authorizationScope must be profile_api"}]}
            return self._token(method)
        if rest == ["profileattributes", "mbox"] and method == "GET":
            with self._lock:
                self.counts.attribute_reads += 1
                return 200, {"mboxProfileAttributes": list(self.attributes)}
        return 404, {"errors": [{"errorCode": "NotFound", "message": "Unknown resource"}]}

    # --- the endpoints ---------------------------------------------------------------------

    def _ims_token(self, method: str, body: bytes) -> tuple[int, dict]:
        if method != "POST":
            return 405, {"error": "method_not_allowed"}
        form = dict(parse_qsl(body.decode("utf-8", errors="replace")))
        with self._lock:
            if form.get("grant_type") != "client_credentials":
                self.counts.ims_refused += 1
                return 400, {"error": "unsupported_grant_type"}
            if (form.get("client_id") != self.client_id
                    or form.get("client_secret") != self.client_secret):
                self.counts.ims_refused += 1
                return 401, {"error": "invalid_client",
                             "error_description": "invalid client_secret parameter"}
            token = "ims-" + secrets.token_urlsafe(24)
            self._ims[token] = self.clock() + self.ims_lifetime
            self.counts.ims_tokens += 1
            return 200, {"access_token": token, "token_type": "bearer",
                         "expires_in": _seconds(self.ims_lifetime, self.whole_seconds)}

    def _admin_authorized(self, headers: Any) -> bool:
        authorization = headers.get("Authorization") or ""
        token = authorization.removeprefix("Bearer ")
        with self._lock:
            expires_at = self._ims.get(token)
            return (authorization.startswith("Bearer ") and expires_at is not None
                    and self.clock() < expires_at and headers.get("x-api-key") == self.client_id)

    def _token(self, method: str) -> tuple[int, dict]:
        with self._lock:
            current = self._valid_profile()
            if method == "GET":
                self.counts.token_gets += 1
                if current is None:
                    return 404, {"errors": [{"errorCode": "NotFound",
                                             "message": "No valid profile authentication token"}]}
                return 200, self._token_json(current)
            if method != "POST":
                return 405, {"errors": [{"errorCode": "MethodNotAllowed", "message": method}]}
            self.counts.token_posts += 1
            if current is not None:
                self.counts.posts_while_valid += 1  # Target replaces it: its users now fail
            token = "profile-" + secrets.token_urlsafe(24)
            self._profile = (token, self.clock() + self.profile_token_lifetime)
            return 201, self._token_json(token)

    def _valid_profile(self) -> str | None:
        if self._profile is None or self.clock() >= self._profile[1]:
            return None
        return self._profile[0]

    def _token_json(self, token: str) -> dict:
        assert self._profile is not None
        return {"accessToken": token, "tokenType": "bearer", "scope": TOKEN_SCOPE,
                "expiresIn": _seconds(self._profile[1] - self.clock(), self.whole_seconds)}


def _seconds(value: float, whole: bool = False) -> float | int:
    """Whole seconds as Adobe gives them; fractions only for the compressed test lifetimes."""
    if whole or value >= 60:
        return max(0, math.floor(value))
    return round(max(0.0, value), 3)
