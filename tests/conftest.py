"""Shared fixtures: the two roles, a superuser, a connection with mappings, and update factories.

Every test talks to a real database (SQLite by default; PostgreSQL when DATABASE_URL says so).
"""

from __future__ import annotations

import functools
import importlib
import itertools

import pytest
from django.contrib.auth.models import Group, User

from updates import workflow
from updates.models import AttributeMapping, TargetConnection

pytest_plugins = ["tests.fixtures_emulator", "tests.fixtures_bulk"]

# The admin's registrations are made by the URLconf (profileops/apps.py), as in the web process:
# load it, so every test that reads admin.site sees all of them, whether or not a request ran first.
importlib.import_module("profileops.urls")

_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users made in-process hash passwords with MD5: the default PBKDF2 costs ~0.3 s a user,
    which dominates the suite. (Users who log into a separate server process are created by that
    process, e.g. start_demo's seed, so they keep the real hasher.)"""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Port 9 (discard) refuses connections here: a request that went through it fails.
REFUSING_PROXY = "http://127.0.0.1:9"


@pytest.fixture
def proxy_in_the_environment(monkeypatch):
    """The process's environment names a proxy for every host (one that refuses connections)."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, REFUSING_PROXY)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return REFUSING_PROXY


def ensure_roles() -> None:
    """(Re)create the role groups as the data migration does: a transactional test before this
    one may have flushed them."""
    from django.apps import apps

    roles = importlib.import_module("updates.migrations.0002_roles")
    if Group.objects.filter(name__in=roles.ROLES).count() != len(roles.ROLES):
        roles.create_roles(apps, None)
    lifecycle = importlib.import_module("updates.migrations.0029_lifecycle")
    if not Group.objects.filter(name=lifecycle.DPO_GROUP).exists():
        lifecycle.create_group(apps, None)


def make_user(username: str, *groups: str, superuser: bool = False) -> User:
    if groups:
        ensure_roles()
    user = User.objects.create_user(username=username, password="pw-" + username,
                                    is_staff=True, is_superuser=superuser)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


@pytest.fixture
def operator(db):
    return make_user("operator", "Operators")


@pytest.fixture
def other_operator(db):
    return make_user("operator2", "Operators")


@pytest.fixture
def supervisor(db):
    return make_user("supervisor", "Supervisors")


@pytest.fixture
def other_supervisor(db):
    return make_user("supervisor2", "Supervisors")


@pytest.fixture
def admin_user(db):
    return make_user("admin", superuser=True)


def make_connection(code: str = "acme", **kwargs) -> TargetConnection:
    kwargs.setdefault("label", f"Connection {code}")
    return TargetConnection.objects.create(client_code=code, **kwargs)


def use_adobe_credentials(connection: TargetConnection, emulator, *,
                          secret: str | None = None) -> TargetConnection:
    """Point `connection` at `emulator` (one with `adobe`) with its Adobe credentials: the
    profile token is then ProfileOps' to obtain (updates/credentials.py)."""
    adobe = emulator.adobe
    connection.base_url = emulator.base_url
    connection.adobe_client_id = adobe.client_id
    connection.adobe_client_secret = adobe.client_secret if secret is None else secret
    connection.adobe_org_id = "1234ABCD5678@AdobeOrg"
    connection.target_tenant = adobe.tenant
    connection.ims_token_url = emulator.base_url + "/ims/token/v3"
    connection.admin_api_url = emulator.base_url
    connection.save()
    return connection


def make_mapping(connection: TargetConnection, source: str, target: str | None = None,
                 **kwargs) -> AttributeMapping:
    return AttributeMapping.objects.create(
        connection=connection, source_name=source, target_name=target or source, **kwargs)


@pytest.fixture
def connection(db):
    conn = make_connection("acme")
    # These mappings choose to trim (a new mapping does not): the tests using them mean it.
    make_mapping(conn, "loan_status", "loanStatus", value_type="choice",
                 choices="applied\nfunded\ndeclined", trim=True)
    make_mapping(conn, "tier", "loyaltyTier", trim=True)
    make_mapping(conn, "note", "callNote", max_length=1000, trim=True)
    return conn


@pytest.fixture
def stage(connection, operator):
    """stage(**overrides) -> a draft update created by `operator` unless `by` is given."""

    def _stage(**kwargs):
        kwargs.setdefault("connection", connection)
        kwargs.setdefault("identity_type", "mbox3rdPartyId")
        kwargs.setdefault("identity", f"customer-{next(_counter)}")
        kwargs.setdefault("attributes", {"loanStatus": "funded"})
        kwargs.setdefault("by", operator)
        return workflow.update_stage(**kwargs)

    return _stage


@pytest.fixture
def acme(connection, faithful_emulator):
    """The conftest connection, pointed at the faithful emulator. A module that needs it pointed
    elsewhere (the plain or a hostile emulator) or configured otherwise defines its own `acme`."""
    connection.base_url = faithful_emulator.base_url
    connection.save(update_fields=["base_url"])
    return connection


@pytest.fixture
def approve(acme, stage, operator, supervisor):
    """approve(**stage_overrides) -> an update approved through the workflow, sent to `acme` (the
    module's own where it defines one)."""
    return functools.partial(approve_via_workflow, stage, operator, supervisor)


def approve_via_workflow(stage, operator, supervisor, **stage_overrides):
    """Stage (as `operator`), submit, and approve (as `supervisor`): an update ready to send."""
    update = stage(**stage_overrides)
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor)
    return update


# --- customer data lifecycle (issue 27) -------------------------------------------------------

# A visitor with a history everywhere customer data lives, and the strings that must disappear
# when it is forgotten: its identity, what was sent, what is still open, what Target held.
FORGOTTEN_IDENTITY = "forget-me-8472"
FORGOTTEN_VALUES = ("platinum-X9Q", "called about the mortgage 7Q2", "silver-K4Z",
                    "gold-import-5T1")
KEPT_IDENTITY, KEPT_VALUE = "keep-me-1135", "keep-value-55W"


@pytest.fixture
def visitor_history(acme, stage, operator, supervisor, faithful_emulator):
    """Seed FORGOTTEN_IDENTITY's history on `acme`: an update sent to the faithful emulator (its
    attempt and answer), a pending one read live from Target (a profile read holding Target's
    value), an import awaiting confirmation whose kept file names the visitor, an admin log
    entry; and
    KEPT_IDENTITY's update, which forgetting must leave alone. Returns the forgotten updates."""
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    from updates import importing, reading, sending
    from updates.models import ProfileUpdate

    faithful_emulator.seed_profile(identity=FORGOTTEN_IDENTITY,
                                   attributes={"loyaltyTier": "silver-K4Z"})
    sent = approve_via_workflow(stage, operator, supervisor, identity=FORGOTTEN_IDENTITY,
                                attributes={"loyaltyTier": "platinum-X9Q"})
    sending.send_due()
    pending = stage(identity=FORGOTTEN_IDENTITY,
                    attributes={"callNote": "called about the mortgage 7Q2"})
    workflow.update_submit(update=pending, by=operator)
    reading.update_live_diff(update=pending, by=supervisor)
    importing.import_job_create(
        connection=acme, file_name="visitors.csv", by=operator, file_data=(
            "identity_type,identity,loan_status,tier,note\r\n"
            f"mbox3rdPartyId,{FORGOTTEN_IDENTITY},funded,gold-import-5T1,\r\n").encode())
    LogEntry.objects.create(user=supervisor, action_flag=CHANGE, object_id=str(sent.pk),
                            content_type=ContentType.objects.get_for_model(ProfileUpdate),
                            object_repr=str(sent)[:200], change_message="[]")
    stage(identity=KEPT_IDENTITY, attributes={"loyaltyTier": KEPT_VALUE})
    return [ProfileUpdate.objects.get(pk=sent.pk), ProfileUpdate.objects.get(pk=pending.pk)]
