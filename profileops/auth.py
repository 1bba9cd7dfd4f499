"""Logins: django-axes' lockout, and the client address it counts failures against.

`LockoutBackend` is django-axes' backend (first in AUTHENTICATION_BACKENDS): it refuses a login
to a locked-out account or from a locked-out address before any password is checked. A call to
authenticate() without a request is not a login from the network — Django's test client's
`login()`, a shell — so it is not counted or refused here (axes would raise); the admin's login
form always passes its request. The notebook's and the commands' `as_user` do not authenticate
at all (README, "Security guarantees").
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs):
        if request is None:
            return None  # the next backend decides; nothing to count an address against
        return super().authenticate(request, username, password, **kwargs)


def client_address(request: HttpRequest) -> str | None:
    """The address failures are counted against: REMOTE_ADDR, or — with TRUSTED_PROXY_COUNT = N
    proxies in front of gunicorn — the address the outermost of them saw, N entries from the
    right of X-Forwarded-For (a client can put anything further left). Too few entries: the
    request did not come through the proxies, REMOTE_ADDR it is."""
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    remote = request.META.get("REMOTE_ADDR")
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
                 if part.strip()]
    if len(forwarded) < proxies:
        return remote
    return forwarded[-proxies]
