"""Adobe credentials: the bearer token for Target's profile APIs, obtained and renewed here.

Every request to Target's profile update and read APIs takes its token from `profile_token`:

- A connection **without** Adobe credentials sends the token an administrator pasted
  (`TargetConnection.bearer_token`, "" for none), as before.
- A connection **with** Adobe credentials (OAuth Server-to-Server client ID and secret, IMS org,
  Target tenant) never needs a pasted token. ProfileOps
  1. gets an IMS access token (`POST ims_token_url`, grant_type=client_credentials) and keeps it
     until shortly before its `expires_in`;
  2. asks Target's Admin API for the existing profile token
     (`GET {admin_api_url}/{tenant}/target/authentication/token?authorizationScope=profile_api`)
     and keeps it until its `expiresIn`;
  3. `POST`s the same path (a new token) only when Target holds no valid one — a new token makes
     every request with the old one fail, so never while one is valid — or when an administrator
     forces a rotation (`profile_token_rotate`). A token with less than LAST_MOMENTS left
     (Target's whole seconds: "0" included) is waited out and asked for again first, so no
     request sets out with a token about to expire and none is minted while one is valid.

The tokens live in the connection's `CredentialState` row, encrypted. Renewing happens with that
row locked, so the web, every qcluster worker and every command share one current token and only
one of them ever mints. A 401/403 from Target means the token was refused: `token_refused` asks
once more (another process may have renewed it, or it expired early) and gives the token to retry
that request with once; only then is the request counted as refused.

Every fetch, mint, rotation and failed renewal is an audit row (`_audit`), never with a value;
tokens and the secret are never logged. The Privacy Service client calls `ims_access_token` with
the connection's `adobe_org_id` and `adobe_client_id` (its x-api-key).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
from urllib.parse import quote

from django.db import transaction
from django.utils import timezone

from . import audit, delivery, target
from .conf import setting
from .errors import Refused, require_perm
from .models import AuditEvent, CredentialState, TargetConnection
from .permissions import PERM_CHANGE_CONNECTION

logger = logging.getLogger(__name__)

ADMIN_MEDIA_TYPE = "application/vnd.adobe.target.v1+json"
TOKEN_PATH = "/{tenant}/target/authentication/token?authorizationScope=profile_api"
ATTRIBUTES_PATH = "/{tenant}/target/profileattributes/mbox"
ANSWER_LIMIT_BYTES = 1024 * 1024  # an attribute list of a large account fits; nothing more is read

# Refusal codes (errors.Refused.code).
NO_CREDENTIALS = "no_credentials"  # the connection holds no Adobe credentials
CREDENTIALS_REFUSED = "credentials_refused"  # IMS or the Admin API said no: secret, rights
ADOBE_UNAVAILABLE = "adobe_unavailable"  # no answer, a 5xx, or an answer that is not a token

# Audit actions: every fetch, mint, rotation and failure; the rows carry times and sources.
Action = AuditEvent.Action
IMS_TOKEN_OBTAINED = Action.IMS_TOKEN_OBTAINED
PROFILE_TOKEN_FETCHED = Action.PROFILE_TOKEN_FETCHED
PROFILE_TOKEN_MINTED = Action.PROFILE_TOKEN_MINTED
PROFILE_TOKEN_ROTATED = Action.PROFILE_TOKEN_ROTATED
TOKEN_RENEWAL_FAILED = Action.TOKEN_RENEWAL_FAILED
AUDIT_ACTIONS = (IMS_TOKEN_OBTAINED, PROFILE_TOKEN_FETCHED, PROFILE_TOKEN_MINTED,
                 PROFILE_TOKEN_ROTATED, TOKEN_RENEWAL_FAILED)

_REFUSED_STATUSES = frozenset({401, 403})
# A token Target refuses while it should be valid (rotated elsewhere?) is asked for again at most
# this often.
RECHECK_REFUSED = dt.timedelta(seconds=30)
# A token Target gives with less than this left is waited out (inside the lock) and replaced.
LAST_MOMENTS = 1.0
_ERROR_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,60}\Z")


def has_adobe_credentials(connection: TargetConnection) -> bool:
    """Whether ProfileOps obtains the connection's profile token itself."""
    return connection.has_adobe_credentials


def is_refusal(http_status: int | None) -> bool:
    """Target refused the request's token (401/403): fetch it once more, retry once."""
    return http_status in _REFUSED_STATUSES


# --- the public API --------------------------------------------------------------------------

def profile_token(connection: TargetConnection) -> str:
    """The bearer token for Target's profile update and read APIs ("" when none is needed).

    With Adobe credentials: the current token, renewed first when it is due (which may raise
    Refused: CREDENTIALS_REFUSED or ADOBE_UNAVAILABLE). Database access: call it in the main
    thread and hand the token to sender or reader threads."""
    if not connection.has_adobe_credentials:
        return connection.bearer_token
    state = _state(connection)
    if _usable(state, timezone.now()):
        return state.profile_token
    return _renew(connection, refused="")


def preview_token(connection: TargetConnection) -> str:
    """What a preview or dry run puts in the token's place: the pasted token, a placeholder when
    ProfileOps would obtain one (a preview never asks Adobe), "" when none is sent. Shown only
    through target.shown_headers, which hides the value."""
    if connection.has_adobe_credentials:
        return "obtained-by-profileops"
    return connection.bearer_token


def token_refused(connection: TargetConnection, refused_token: str) -> str:
    """Target answered 401/403 to a request sent with `refused_token`: the token to retry that
    request with once, or "" when there is no other (then the request counts as refused)."""
    if not connection.has_adobe_credentials:
        fresh = TargetConnection.objects.filter(pk=connection.pk).first()
        token = fresh.bearer_token if fresh is not None else ""  # pasted again meanwhile?
        return token if token != refused_token else ""
    try:
        token = _renew(connection, refused=refused_token)
    except Refused:
        return ""
    return token if token != refused_token else ""


def ims_access_token(connection: TargetConnection) -> str:
    """A current IMS access token for the connection's credentials (renewed before it expires).
    Refused with NO_CREDENTIALS when the connection holds none."""
    if not connection.has_adobe_credentials:
        raise Refused(f"{connection.label} holds no Adobe credentials (client ID, secret and "
                      "tenant).", code=NO_CREDENTIALS)
    state = _state(connection)
    if state.ims_token and state.ims_renew_at and timezone.now() < state.ims_renew_at:
        return state.ims_token
    return _locked_attempt(connection, lambda state: _ims_token(connection, state))


def profile_token_rotate(*, connection: TargetConnection, by) -> CredentialState:
    """An administrator's forced rotation: Target mints a new profile token at once. Every other
    user of the old token (another tool, a script) fails from now until it fetches the new one."""
    require_perm(by, PERM_CHANGE_CONNECTION, "Only administrators rotate a connection's token.")
    if not connection.has_adobe_credentials:
        raise Refused("Only a connection with Adobe credentials can rotate its token.",
                      code=NO_CREDENTIALS)

    def rotate(state: CredentialState) -> str:
        token, expires_in = _mint(connection, state)
        _store_profile_token(connection, state, token, expires_in,
                             source=CredentialState.Source.ROTATED, by=by)
        return token

    _locked_attempt(connection, rotate)
    return _state(connection)


def admin_api_get(connection: TargetConnection, path: str) -> tuple[int | None, object]:
    """GET `path` (with {tenant}) of Target's Admin API with the connection's credentials:
    (status, JSON payload). Refused (NO_CREDENTIALS, CREDENTIALS_REFUSED) as the token is; a
    failure here is not a failing token renewal (nothing is recorded)."""
    if not connection.has_adobe_credentials:
        raise Refused(f"{connection.label} holds no Adobe credentials.", code=NO_CREDENTIALS)
    with _locked(connection) as state:  # the IMS token it may renew is shared like the other
        return _admin_call(connection, state, "GET", path)


# --- renewing, under the row's lock ------------------------------------------------------------

def _state(connection: TargetConnection) -> CredentialState:
    state, _ = CredentialState.objects.get_or_create(connection_id=connection.pk)
    connection._credential_state = state  # TargetConnection.secrets() redacts its tokens
    return state


def _usable(state: CredentialState, now: dt.datetime) -> bool:
    return bool(state.profile_token and state.profile_expires_at and now < state.profile_expires_at
                and (state.profile_refresh_at is None or now < state.profile_refresh_at))


@contextlib.contextmanager
def _locked(connection: TargetConnection):
    """The connection's CredentialState, locked until the block ends. The UPDATE takes the lock
    on every database (a row lock on PostgreSQL, the write lock on SQLite); the SELECT then reads
    what the process that held it before committed."""
    _state(connection)
    with transaction.atomic():
        CredentialState.objects.filter(pk=connection.pk).update(locked_at=timezone.now())
        state = CredentialState.objects.select_for_update().get(pk=connection.pk)
        connection._credential_state = state
        yield state


def _locked_attempt(connection: TargetConnection, work) -> str:
    """`work(state)` with the state locked; a Refused it raises is recorded (failure, audit row)
    and raised again once the lock is released."""
    failure: Refused | None = None
    with _locked(connection) as state:
        try:
            result = work(state)
        except Refused as error:
            failure = error
            _note_failure(connection, state, error)
    if failure is not None:
        raise failure
    return result


def _renew(connection: TargetConnection, *, refused: str) -> str:
    def renew(state: CredentialState) -> str:
        now = timezone.now()
        if _usable(state, now) and state.profile_token != refused:
            return state.profile_token  # another process renewed it while this one waited
        if (refused and _usable(state, now) and state.refusal_checked_at
                and now - state.refusal_checked_at < RECHECK_REFUSED):
            # Refused before it expires, and Target said just now that it is still its token:
            # asking again for every refused request would only spend the Admin API's 50 calls
            # a minute.
            return state.profile_token
        token, expires_in = _fetch(connection, state)
        if token and expires_in < LAST_MOMENTS:
            # About to expire: requests sent with it would be refused on the way. Let it run
            # out (a new token while it is valid would break its other users), then ask again.
            time.sleep(max(expires_in, 0.0) + _slack(expires_in))
            token, expires_in = _fetch(connection, state)
            if token and expires_in < LAST_MOMENTS:
                raise _unavailable("Target's Admin API", 200)
        if token:
            if refused and token == refused:
                state.refusal_checked_at = now
            # Target's current token. If it is the refused one, Target still calls it valid: a
            # new one would break its other users and not help, so the request counts as
            # refused (and alerts).
            _store_profile_token(connection, state, token, expires_in,
                                 source=CredentialState.Source.FETCHED)
            return token
        token, expires_in = _mint(connection, state)  # Target holds no valid token
        _store_profile_token(connection, state, token, expires_in,
                             source=CredentialState.Source.MINTED)
        return token

    return _locked_attempt(connection, renew)


def _store_profile_token(connection: TargetConnection, state: CredentialState, token: str,
                         expires_in: float, *, source: str, by=None) -> None:
    now = timezone.now()
    changed = token != state.profile_token
    expires_at = state.profile_asked_at + dt.timedelta(seconds=expires_in)
    state.profile_token = token
    state.profile_expires_at = expires_at
    # A new token is looked at again ahead of its expiry; one Target has just confirmed is used
    # until it expires (asking again would only get the same answer).
    state.profile_refresh_at = (expires_at - _ahead(expires_in)) if changed else expires_at
    state.profile_source = source
    state.renewed_at = now
    state.failure, state.failing_since = "", None
    state.save()
    action = {CredentialState.Source.FETCHED: PROFILE_TOKEN_FETCHED,
              CredentialState.Source.MINTED: PROFILE_TOKEN_MINTED,
              CredentialState.Source.ROTATED: PROFILE_TOKEN_ROTATED}[source]
    _audit(connection, action, {"token": {"before": "", "after": "new" if changed else "same"},
                                "expires_at": {"before": None, "after": expires_at.isoformat()}},
           by=by)


def _slack(expires_in: float) -> float:
    """How long after `expires_in` a token is surely gone: Adobe gives whole seconds rounded
    down ("0" may be valid for almost a second more); a fraction is exact."""
    return 1.0 if float(expires_in).is_integer() else 0.05


def _ahead(lifetime_seconds: float) -> dt.timedelta:
    """How long before expiry a token is renewed: the setting, at most a fifth of its life."""
    return dt.timedelta(seconds=min(float(setting("TOKEN_RENEW_AHEAD_SECONDS")),
                                    lifetime_seconds / 5))


def _note_failure(connection: TargetConnection, state: CredentialState, error: Refused) -> None:
    now = timezone.now()
    state.failure = error.messages[0][:300]
    state.failing_since = state.failing_since or now
    state.save(update_fields=["failure", "failing_since"])
    _audit(connection, TOKEN_RENEWAL_FAILED,
           {"failure": {"before": "", "after": f"{error.code}: {state.failure}"}})
    logger.warning("connection %s: token renewal failed (%s)", connection.client_code, error.code)


def _audit(connection: TargetConnection, action: str, changes: dict, *, by=None) -> None:
    """The one writer of this module's audit rows (never a token or the secret in `changes`)."""
    audit.record(action, by=by, connection=connection, changes=changes)


# --- IMS and the Admin API -------------------------------------------------------------------

def _ims_token(connection: TargetConnection, state: CredentialState, *, force: bool = False
               ) -> str:
    """The IMS access token (state locked by the caller), obtained anew when due or forced."""
    now = timezone.now()
    if not force and state.ims_token and state.ims_renew_at and now < state.ims_renew_at:
        return state.ims_token
    status, payload = _http("POST", connection.ims_token_url, connection, data={
        "grant_type": "client_credentials", "client_id": connection.adobe_client_id,
        "client_secret": connection.adobe_client_secret, "scope": connection.ims_scopes})
    if status in (400, 401, 403):
        raise Refused(f"Adobe IMS refused the client ID and secret of {connection.label} "
                      f"(HTTP {status}{_error_word(payload, connection)}).",
                      code=CREDENTIALS_REFUSED)
    token, expires_in = _token_answer(payload, "access_token", "expires_in")
    if status != 200 or not token or expires_in <= 0:
        raise _unavailable("Adobe IMS", status)
    state.ims_token = token
    state.ims_renew_at = now + dt.timedelta(seconds=expires_in) - _ahead(expires_in)
    state.save(update_fields=["ims_token", "ims_renew_at"])
    _audit(connection, IMS_TOKEN_OBTAINED,
           {"ims_token": {"before": "", "after": "new"},
            "renew_at": {"before": None, "after": state.ims_renew_at.isoformat()}})
    return token


def _admin_call(connection: TargetConnection, state: CredentialState, method: str, path: str
                ) -> tuple[int | None, object]:
    """One Admin API call with the IMS token; a 401/403 gets one new IMS token and one retry."""
    url = connection.admin_api_url.rstrip("/") + path.format(
        tenant=quote(connection.target_tenant, safe=""))
    for attempt in (1, 2):
        ims = _ims_token(connection, state, force=attempt == 2)
        headers = {"Authorization": f"Bearer {ims}", "x-api-key": connection.adobe_client_id,
                   "Accept": ADMIN_MEDIA_TYPE, "Content-Type": ADMIN_MEDIA_TYPE}
        if connection.adobe_org_id:
            headers["x-gw-ims-org-id"] = connection.adobe_org_id
        status, payload = _http(method, url, connection, headers=headers)
        if status not in _REFUSED_STATUSES:
            return status, payload
    raise Refused(f"Target's Admin API refused the credentials of {connection.label} (HTTP "
                  f"{status}): does the credential's product profile include Target with "
                  "Approver or Admin rights?", code=CREDENTIALS_REFUSED)


def _fetch(connection: TargetConnection, state: CredentialState) -> tuple[str, float]:
    """Target's current profile token and its seconds left; ("", 0) when it holds no valid one."""
    state.profile_asked_at = timezone.now()
    status, payload = _admin_call(connection, state, "GET", TOKEN_PATH)
    if status == 404:
        return "", 0.0
    token, expires_in = _token_answer(payload, "accessToken", "expiresIn")
    if status != 200 or not token:
        # A 200 without a readable token (a proxy's page, a cut answer) says nothing about
        # Target's token: a mint now could replace a valid one.
        raise _unavailable("Target's Admin API", status)
    return token, expires_in


def _mint(connection: TargetConnection, state: CredentialState) -> tuple[str, float]:
    state.profile_asked_at = timezone.now()
    status, payload = _admin_call(connection, state, "POST", TOKEN_PATH)
    token, expires_in = _token_answer(payload, "accessToken", "expiresIn")
    if status not in (200, 201) or not token or expires_in <= 0:
        raise _unavailable("Target's Admin API", status)
    return token, expires_in


def _token_answer(payload: object, token_key: str, expires_key: str) -> tuple[str, float]:
    if not isinstance(payload, dict):
        return "", 0.0
    token, expires_in = payload.get(token_key), payload.get(expires_key)
    if not isinstance(token, str) or not all("!" <= ch <= "~" for ch in token):
        return "", 0.0  # a token that could not travel in a header is no token
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        return "", 0.0
    return token, float(expires_in)


def _unavailable(who: str, status: int | None) -> Refused:
    said = f"HTTP {status}" if status is not None else "no answer"
    return Refused(f"{who} gave no usable token ({said}); ProfileOps tries again with the next "
                   "request.", code=ADOBE_UNAVAILABLE)


def _error_word(payload: object, connection: TargetConnection) -> str:
    """IMS's error code ("invalid_client"), unless it could be a secret echoed back."""
    word = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(word, str) or not _ERROR_WORD.match(word):
        return ""
    if any(secret in word for secret in connection.secrets()):
        return ""
    return f": {word}"


def _http(method: str, url: str, connection: TargetConnection, *, headers: dict | None = None,
          data: dict | None = None) -> tuple[int | None, object]:
    """(status, JSON payload or None); (None, None) when no answer came. Nothing is logged but
    the exception's type: URLs and bodies here carry the secret and tokens."""
    try:
        reply = delivery.call_bounded(
            method, url, headers=headers, data=data, limit=ANSWER_LIMIT_BYTES,
            timeout=(setting("CONNECT_TIMEOUT"), setting("READ_TIMEOUT")))
    except Exception as error:  # noqa: BLE001 - transport: the type only (messages quote URLs)
        logger.warning("connection %s: a call to Adobe (%s) got no answer (%s)",
                       connection.client_code, method, type(error).__name__)
        return None, None
    return reply.status, target.json_from_outside(reply.text)
