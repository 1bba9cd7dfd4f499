"""Failed logins and lock-outs (django-axes), for administrators.

django-axes' own admin pages, registered here instead of by axes (AXES_ENABLE_ADMIN is off) so
that its logs stay an audit trail: *Access attempts* (the failure counts behind a lock-out —
deleting one unlocks, like `manage.py axes_reset_username`) may be deleted; *Access failures*
(every failed login) and *Access logs* (every login and logout) may not.
"""

from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.http import HttpRequest


class _ReadOnlyLog:
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AccessFailureLog)
class LoginFailureAdmin(_ReadOnlyLog, AccessFailureLogAdmin):
    pass


@admin.register(AccessLog)
class LoginLogAdmin(_ReadOnlyLog, AccessLogAdmin):
    pass


admin.site.register(AccessAttempt, AccessAttemptAdmin)
