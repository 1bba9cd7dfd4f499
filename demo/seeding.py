"""Demo data for the embedded quick start: users, a connection to the local emulator, mappings
and a few updates in several states. Idempotent: running it again adds nothing twice.

Demo users get fresh random passwords on every run, printed once; this is for the embedded mode
(DEBUG on) only — `seed_demo` refuses to run otherwise.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from django.contrib.auth.models import Group, User
from django.db import transaction

from updates import workflow
from updates.models import AttributeMapping, ProfileUpdate, TargetConnection

DEMO_CLIENT_CODE = "demo"
DEMO_USERS = (
    # username, group, superuser
    ("operator", "Operators", False),
    ("supervisor", "Supervisors", False),
    ("admin", None, True),
)
DEMO_MAPPINGS = (
    dict(source_name="loan_status", target_name="loanStatus", label="Loan status",
         value_type="choice", choices="applied\nfunded\ndeclined", help_text="Where the customer's loan stands."),
    dict(source_name="loyalty_tier", target_name="loyaltyTier", label="Loyalty tier",
         value_type="choice",
         choices="bronze\nsilver\ngold", case_transform="lower", help_text="Card tier in store."),
    dict(source_name="last_call", target_name="lastCallDate", label="Last call-centre contact",
         value_type="date",
         help_text="Date of the customer's last call-centre contact."),
    dict(source_name="store_visits", target_name="storeVisits", label="Store visits this year",
         value_type="integer",
         help_text="Visits with the loyalty card this year."),
)


# The visitors the demo's Target (the emulator in faithful mode) has profiles for. With the demo
# updates below they show, in a first walk-through: CUST-1002's pending update changes two values
# (approve it: sent, then verified once the emulator applied it); CUST-1003's approved update
# changes nothing (skipped as unchanged, no quota used); the kiosk visitor (mboxPC) is unknown to
# Target (approve it: acknowledged, then "not applied" at its first check).
DEMO_PROFILES = (
    {"identity": "CUST-1001", "attributes": {"loanStatus": "declined"}},
    {"identity": "CUST-1002", "attributes": {"loanStatus": "applied", "storeVisits": "2",
                                             "loyaltyTier": "bronze"}},
    {"identity": "CUST-1003", "attributes": {"loyaltyTier": "silver",
                                             "lastCallDate": "2026-11-27"}},
    {"identity": "CUST-1004", "attributes": {"loanStatus": "applied"}},
)
# Seconds the demo's emulator takes to apply an acknowledged update (Target: up to 24 hours).
DEMO_APPLY_DELAY_SECONDS = 20
# The demo reads sent updates back after 1, 2, 5 and 15 minutes instead of 5 min … 24 h.
DEMO_VERIFY_SCHEDULE_MINUTES = "1,2,5,15"


def demo_profiles_json() -> str:
    """DEMO_PROFILES as the emulator's --profiles file expects them."""
    return json.dumps([{"client": DEMO_CLIENT_CODE, "identity_type": "mbox3rdPartyId", **spec}
                       for spec in DEMO_PROFILES], indent=2)


@dataclass
class DemoSeed:
    passwords: dict[str, str]
    connection: TargetConnection
    created_updates: int


def demo_adobe_credentials(emulator_url: str) -> dict[str, str]:
    """The Adobe credentials of the emulator's IMS (start_demo runs it with --adobe): ProfileOps
    obtains the profile token itself, and forgetting a visitor files at the emulator's Privacy
    Service with an IMS token (docs/user-guide/forgetting-a-visitor.md). Only with an emulator
    that plays Adobe: without it, the token could not be obtained and nothing would be sent."""
    return {"adobe_client_id": "profileops-client", "adobe_client_secret": "profileops-secret",
            "adobe_org_id": "DEMO0000@AdobeOrg", "target_tenant": "acme",
            "ims_token_url": f"{emulator_url}/ims/token/v3", "admin_api_url": emulator_url}


def seed_demo(*, emulator_url: str, adobe: bool = False) -> DemoSeed:
    """Users, the demo connection and its mappings, a few updates. `adobe`: the emulator plays
    Adobe too (start_demo's --adobe), and the connection gets its credentials."""
    with transaction.atomic():
        passwords = {}
        users = {}
        for username, group, superuser in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            password = secrets.token_urlsafe(9)
            user.set_password(password)
            user.is_staff = True
            user.is_superuser = superuser
            user.is_active = True
            user.save()
            if group:
                user.groups.add(Group.objects.get(name=group))
            passwords[username] = password
            users[username] = User.objects.get(pk=user.pk)

        connection, _ = TargetConnection.objects.update_or_create(
            client_code=DEMO_CLIENT_CODE,
            defaults={"label": "Demo (local emulator)", "base_url": emulator_url, "active": True,
                      "quota_limit": 1_000_000, "skip_unchanged": True,
                      "verify_after_send": True,
                      **(demo_adobe_credentials(emulator_url) if adobe else {})},
        )
        for spec in DEMO_MAPPINGS:
            if not AttributeMapping.objects.filter(connection=connection,
                                                   source_name=spec["source_name"]).exists():
                AttributeMapping.objects.create(connection=connection, **spec)
            else:  # seeded before the demo had labels: give them one, keep any set since
                AttributeMapping.objects.filter(
                    connection=connection, source_name=spec["source_name"], label="",
                ).update(label=spec["label"])

        created = 0
        if not ProfileUpdate.objects.filter(connection=connection).exists():
            created = _demo_updates(connection, users["operator"], users["supervisor"])
    return DemoSeed(passwords=passwords, connection=connection, created_updates=created)


def _demo_updates(connection: TargetConnection, operator: User, supervisor: User) -> int:
    def stage(identity: str, attributes: dict, reason: str, identity_type="mbox3rdPartyId"):
        return workflow.update_stage(connection=connection, identity_type=identity_type,
                                     identity=identity, attributes=attributes, reason=reason,
                                     by=operator)

    stage("CUST-1001", {"loanStatus": "applied"}, "Loan application — call centre")
    pending = stage("CUST-1002", {"loanStatus": "funded", "storeVisits": "3"}, "Loan funded")
    workflow.update_submit(update=pending, by=operator)
    pending2 = stage("1368007744041-575948.01_00", {"loyaltyTier": "gold"}, "Kiosk sign-up",
                     identity_type="mboxPC")
    workflow.update_submit(update=pending2, by=operator)
    approved = stage("CUST-1003", {"loyaltyTier": "silver", "lastCallDate": "2026-11-27"},
                     "Loyalty card used in store")
    workflow.update_submit(update=approved, by=operator)
    workflow.update_approve(update=approved, by=supervisor, comment="Checked against CRM")
    rejected = stage("CUST-1004", {"loanStatus": "declined"}, "Duplicate call")
    workflow.update_submit(update=rejected, by=operator)
    workflow.update_reject(update=rejected, by=supervisor, comment="Customer asked to withdraw")
    return 5
