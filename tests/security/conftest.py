"""A small world for the security tests: one object of every model the admin registers, the four
kinds of visitor (anonymous, operator, supervisor, superuser), and a walker that turns every
admin URL pattern into a concrete URL — so a page added later is covered, or fails loudly."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from tests.conftest import make_user
from updates import importing, workflow
from updates.models import (AlertEvent, AlertRule, AttributeMapping, BulkJob, ImportJob,
                            PrivacyRequest, ProfileUpdate, RetentionRun, TargetConnection)

ROLES = ("anonymous", "operator", "supervisor", "admin")


@dataclass
class World:
    users: dict[str, User | None]
    connection: TargetConnection
    mapping: AttributeMapping
    update: ProfileUpdate  # pending, staged by a third person: nobody here is its author
    job: ImportJob  # uploaded by the operator
    objects: dict[type, object]  # model -> an instance, for change/delete/history URLs


@pytest.fixture
def world(db, connection) -> World:
    # The live diff reads from the connection: a closed loopback port answers at once (refused)
    # and nothing leaves the machine.
    connection.base_url = "http://127.0.0.1:9"
    connection.save(update_fields=["base_url"])
    operator = make_user("operator", "Operators")
    supervisor = make_user("supervisor", "Supervisors")
    admin_user = make_user("admin", superuser=True)
    author = make_user("author", "Operators")
    update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                   identity="customer-1", attributes={"loanStatus": "funded"},
                                   by=author)
    update = workflow.update_submit(update=update, by=author)
    job = importing.import_job_create(
        connection=connection, file_name="updates.csv", by=operator,
        file_data=b"identity_type,identity,loan_status\r\nmbox3rdPartyId,c-9,funded\r\n")
    now = timezone.now()
    success = Task.objects.create(id=uuid.uuid4().hex, name="ok-task", func="math.floor",
                                  started=now, stopped=now, success=True)
    failure = Task.objects.create(id=uuid.uuid4().hex, name="bad-task", func="math.floor",
                                  started=now, stopped=now, success=False)
    schedule = Schedule.objects.create(name="security-test", func="math.floor")
    queued = OrmQ.objects.create(key="profileops", payload="x", lock=now)
    mapping = AttributeMapping.objects.filter(connection=connection).first()
    alert_rule = AlertRule.objects.create(connection=connection, kind="token_refused")
    alert_event = AlertEvent.objects.create(rule=alert_rule, at=now, state="firing", text="x")
    privacy_request = PrivacyRequest.objects.create(
        connection=connection, identity_type="mbox3rdPartyId", identity_hash="hmac:" + "0" * 40,
        regulation="gdpr", requested_by=admin_user, requested_at=now)
    retention_run = RetentionRun.objects.create(connection=connection, started_at=now)
    objects = {
        PrivacyRequest: privacy_request, RetentionRun: retention_run,
        Group: Group.objects.get(name="Operators"), User: author, Schedule: schedule,
        TargetConnection: connection, ImportJob: job, ProfileUpdate: update,
        AttributeMapping: mapping, OrmQ: queued, AlertRule: alert_rule, AlertEvent: alert_event,
        BulkJob: BulkJob.objects.create(connection=connection, created_at=now),
    }
    # Failed logins and lock-outs (django-axes, updates/admin/logins.py).
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    objects[AccessAttempt] = AccessAttempt.objects.create(
        username="someone", ip_address="203.0.113.7", user_agent="x", path_info="/admin/login/",
        failures_since_start=1, get_data="", post_data="")
    objects[AccessFailureLog] = AccessFailureLog.objects.create(
        username="someone", ip_address="203.0.113.7", user_agent="x", path_info="/admin/login/")
    objects[AccessLog] = AccessLog.objects.create(
        username="admin", ip_address="203.0.113.8", user_agent="x", path_info="/admin/login/")
    for model in admin.site._registry:
        if model._meta.label == "django_q.Success":
            objects[model] = success
        elif model._meta.label == "django_q.Failure":
            objects[model] = failure
    return World(users={"anonymous": None, "operator": operator, "supervisor": supervisor,
                        "admin": admin_user},
                 connection=connection, mapping=mapping, update=update, job=job, objects=objects)


def client_for(client, world: World, role: str):
    if world.users[role] is not None:
        client.force_login(world.users[role])
    return client


# --- every admin URL, concretely ---------------------------------------------------------------

@dataclass(frozen=True)
class AdminURL:
    name: str  # the URL name, or the pattern when it has none
    url: str


def _patterns(resolvers, prefix: str = ""):
    for entry in resolvers:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


def admin_patterns() -> list[tuple[str, str | None]]:
    """(pattern, name) of every URL under admin/, the catch-all and unnamed ones included."""
    return [(p, n) for p, n in _patterns(get_resolver().url_patterns) if p.startswith("admin/")]


# The admin's catch-all (redirects unknown admin URLs) and the unnamed "<id>/" legacy redirect
# to the change page are not pages of their own.
NOT_PAGES = {"admin/(?P<url>.*)$"}


def concrete_admin_urls(world: World) -> list[AdminURL]:
    """Every admin URL pattern with real values: each model's own object, the import job, …"""
    by_prefix = {f"admin/{m._meta.app_label}/{m._meta.model_name}/": obj
                 for m, obj in world.objects.items()}
    urls = []
    for pattern, name in admin_patterns():
        if pattern in NOT_PAGES:
            continue
        if pattern.startswith("admin/^(?P<app_label>"):
            apps = re.search(r"\(\?P<app_label>([^)]*)\)", pattern).group(1).split("|")
            urls += [AdminURL(f"app_list:{a}", f"/admin/{a}/") for a in apps]
            continue
        obj = next((o for prefix, o in by_prefix.items() if pattern.startswith(prefix)), None)
        url = pattern
        if "<path:content_type_id>" in pattern:
            ct = ContentType.objects.get_for_model(ProfileUpdate)
            url = url.replace("<path:content_type_id>", str(ct.pk))
            url = url.replace("<path:object_id>", str(world.update.pk))
        for placeholder in ("<path:object_id>", "<int:pk>", "<id>"):
            if placeholder in url:
                assert obj is not None, f"no object for {pattern}"
                url = url.replace(placeholder, str(obj.pk))
        assert "<" not in url and "(?" not in url, f"cannot fill in {pattern}"
        urls.append(AdminURL(name or f"{pattern} (unnamed)", "/" + url))
    return urls
