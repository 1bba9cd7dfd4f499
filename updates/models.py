"""ProfileOps data: connections, attribute mappings, staged updates, attempts, quota, audit.

State changes go through the services (`workflow.py`, `sending.py`, `quota.py`, `mappings.py`,
`importing.py`); models hold data, field-level validation and small derived properties only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxLengthValidator, MaxValueValidator, MinValueValidator, RegexValidator, URLValidator,
)
from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import target
from .encryption import EncryptedTextField

DEFAULT_QUOTA_LIMIT = 1_000_000
DEFAULT_VALUE_MAX_LENGTH = 256
# Retention defaults (TargetConnection.retain_*_days): long enough to answer "what did we send
# last quarter?", short enough not to keep customer data for years.
DEFAULT_RETAIN_VALUES_DAYS = 90
DEFAULT_RETAIN_READS_DAYS = 30
DEFAULT_RETAIN_RECORDS_DAYS = 730


def validate_bearer_token(token: str) -> None:
    """A token must travel in an HTTP header as it is: visible ASCII only (RFC 6750's b64token
    is a subset). Spaces, line breaks, control and non-ASCII (so also non-Latin-1) characters
    could not be sent, or would split the header. The message never repeats the token."""
    if any(not ("!" <= ch <= "~") for ch in token):
        raise ValidationError(
            "A token contains no spaces, line breaks or control characters, and no non-ASCII "
            "letters: only visible ASCII can travel in an HTTP header.", code="invalid_token")


class SendRoute(models.TextChoices):
    """A connection's rule for choosing the route of a decided batch (routing.py)."""

    SINGLE = "single", "Single only"
    THRESHOLD = "threshold", "Bulk above a row threshold"
    HEADROOM = "headroom", "Bulk when the batch does not fit the single quota's headroom"
    THRESHOLD_OR_HEADROOM = "threshold_or_headroom", "Bulk above the threshold or beyond headroom"


class PcIdBulk(models.TextChoices):
    SINGLE = "single", "Stay on the single route"
    V1 = "v1", "Bulk v1 (the site uses the Experience Cloud ID)"
    V2 = "v2", "Bulk v2 (the site does not use the Experience Cloud ID)"


_VISIBLE_ASCII = RegexValidator(r"^[!-~]*\Z", "Visible ASCII characters only, no spaces.",
                                code="invalid_credential")
# The scopes the Adobe Developer Console lists for a Target OAuth Server-to-Server credential.
IMS_SCOPES = ("openid,AdobeID,target_sdk,additional_info.projectedProductContext,"
              "read_organizations,additional_info.roles")
_TENANT = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_-]*\Z",
                         "A tenant holds letters, digits, '-' and '_' only.", code="invalid_tenant")


class TargetConnection(models.Model):
    """One Adobe Target client (account) that updates are sent to."""

    label = models.CharField(max_length=100, unique=True, help_text="A name people recognise.")
    client_code = models.CharField(
        max_length=64,
        unique=True,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9][A-Za-z0-9_-]*\Z",
                "A client code holds letters, digits, '-' and '_' only.",
                code="invalid_client_code",
            )
        ],
        help_text="Target's client code, as in https://<clientCode>.tt.omtrdc.net.",
    )
    base_url = models.URLField(
        blank=True,
        # Its own code: the field's "invalid" message would replace this one.
        validators=[URLValidator(schemes=["http", "https"], code="invalid_base_url",
                                 message="Enter an http:// or https:// URL.")],
        help_text="Leave empty for https://<clientCode>.tt.omtrdc.net. Set it for the local "
        "emulator or a proxy, e.g. http://127.0.0.1:8765.",
    )
    # Write-only in the admin; encrypted at rest; never logged, exported or shown back.
    bearer_token = EncryptedTextField(
        blank=True,
        validators=[validate_bearer_token],
        help_text="Sent as 'Authorization: Bearer <token>' when Target requires authentication "
        "and the connection holds no Adobe credentials.",
    )
    # Adobe OAuth Server-to-Server credentials (updates/credentials.py): with them ProfileOps
    # obtains and renews the profile token itself and nobody pastes one.
    adobe_client_id = models.CharField(
        max_length=100, blank=True, validators=[_VISIBLE_ASCII],
        help_text="The OAuth Server-to-Server credential's client ID (Adobe Developer Console); "
        "also sent as x-api-key.")
    adobe_client_secret = EncryptedTextField(
        blank=True, validators=[validate_bearer_token],
        help_text="The credential's client secret. Write-only, encrypted at rest.")
    adobe_org_id = models.CharField(
        max_length=100, blank=True, validators=[_VISIBLE_ASCII],
        help_text="The IMS organization ID, e.g. 1234ABCD5678@AdobeOrg.")
    target_tenant = models.CharField(
        max_length=64, blank=True, validators=[_TENANT],
        help_text="Target's tenant name in Admin API paths (https://mc.adobe.io/<tenant>/target/…).")
    ims_token_url = models.URLField(
        default="https://ims-na1.adobelogin.com/ims/token/v3",
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Adobe IMS token endpoint; change it only for tests or another region.")
    ims_scopes = models.CharField(
        max_length=500, default=IMS_SCOPES, validators=[_VISIBLE_ASCII],
        help_text="The scopes asked of IMS, comma-separated, as the Developer Console lists them "
        "for the credential (add those of other APIs on the same credential, e.g. the Privacy "
        "Service's).")
    admin_api_url = models.URLField(
        default="https://mc.adobe.io", validators=[URLValidator(schemes=["http", "https"])],
        help_text="Target Admin API base URL; change it only for tests or a proxy.")
    quota_limit = models.PositiveIntegerField(
        default=DEFAULT_QUOTA_LIMIT,
        validators=[MinValueValidator(1)],
        help_text="Most requests in any rolling 24 hours (Adobe allows 1,000,000 per client).",
    )
    active = models.BooleanField(default=True, help_text="Inactive connections send nothing.")
    # Closing the loop with Target's profile read API (updates/reading.py, verification.py).
    verify_after_send = models.BooleanField(
        default=True,
        help_text="Read each acknowledged update back from Target until it shows the sent values "
        "(verified) or the checks run out (not applied).",
    )
    skip_unchanged = models.BooleanField(
        default=False,
        help_text="Before sending, end an update whose every attribute already holds the staged "
        "value at Target as 'unchanged', without a request (no quota used).",
    )
    drop_unchanged_attributes = models.BooleanField(
        default=False,
        help_text="Before sending, leave out of the request the attributes that already hold the "
        "staged value at Target (per a recent read), when others still change. Approval and "
        "verification still cover every attribute.",
    )
    # Customer data lifecycle (updates/retention.py). Empty: kept for ever — retention off, which
    # a system check warns about in production. Conservative defaults, stated in the docs.
    retain_values_days = models.PositiveIntegerField(
        null=True, blank=True, default=DEFAULT_RETAIN_VALUES_DAYS, validators=[MinValueValidator(1)],
        help_text="Days an update's identity and values are kept after it reached a final state "
        "(sent and verified or not applied, unchanged, rejected, cancelled, failed); then they "
        "are replaced by keyed hashes. Empty: kept for ever.")
    retain_reads_days = models.PositiveIntegerField(
        null=True, blank=True, default=DEFAULT_RETAIN_READS_DAYS, validators=[MinValueValidator(1)],
        help_text="Days profile reads (what Target returned) and Target's answer bodies are "
        "kept. Empty: kept for ever.")
    retain_records_days = models.PositiveIntegerField(
        null=True, blank=True, default=DEFAULT_RETAIN_RECORDS_DAYS,
        validators=[MinValueValidator(1)],
        help_text="Days the non-personal record of an update (states, times, hashes, audit "
        "structure) is kept after its values were purged; then it is deleted. Empty: kept for "
        "ever.")
    # The Bulk Profile Update route (updates/routing.py, bulk_sending.py).
    send_route = models.CharField(
        max_length=22, choices=SendRoute.choices, default=SendRoute.SINGLE,
        db_default=SendRoute.SINGLE,
        help_text="When a decided batch goes through Target's Bulk Profile Update API instead of "
        "one request per update (bulk does not use the single quota).")
    bulk_row_threshold = models.PositiveIntegerField(
        default=100_000, db_default=100_000, validators=[MinValueValidator(1)],
        help_text="\"Bulk above a row threshold\": batches of at least this many updates go "
        "bulk.")
    pc_id_bulk = models.CharField(
        max_length=6, choices=PcIdBulk.choices, default=PcIdBulk.SINGLE, db_default=PcIdBulk.SINGLE,
        help_text="Where updates keyed by mboxPC go when their batch takes the bulk route. Adobe: "
        "if the site uses the Experience Cloud ID, pcId files must go to bulk v1.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["label"]
        verbose_name = "Target connection"

    def __str__(self) -> str:
        return f"{self.label} ({self.client_code})"

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or f"https://{self.client_code}.tt.omtrdc.net").rstrip("/")

    @property
    def has_token(self) -> bool:
        return bool(self.bearer_token)

    @property
    def has_adobe_credentials(self) -> bool:
        """Client ID, secret and tenant: enough for ProfileOps to obtain the profile token."""
        return bool(self.adobe_client_id and self.adobe_client_secret and self.target_tenant)

    def clean(self) -> None:
        super().clean()
        given = [bool(self.adobe_client_id), bool(self.adobe_client_secret),
                 bool(self.target_tenant)]
        if any(given) and not all(given):
            raise ValidationError(
                "Adobe credentials need the client ID, the client secret and the tenant "
                "together (or none of them).", code="incomplete_credentials")

    def secrets(self) -> tuple[str, ...]:
        """Every secret of the connection, redacted from whatever comes back from outside before
        it is stored or shown (target.from_outside). A credential added later belongs here."""
        held = [self.bearer_token, self.adobe_client_secret]
        if self.has_adobe_credentials and self.pk is not None:
            # credentials.py leaves the state it used here, so the sender's threads never query.
            state = self.__dict__.get("_credential_state")
            if state is None:
                state = CredentialState.objects.filter(connection_id=self.pk).first()
                self._credential_state = state
            if state is not None:
                held += [state.profile_token, state.ims_token]
        return tuple(secret for secret in held if secret)


class CredentialState(models.Model):
    """The tokens ProfileOps obtained for a connection with Adobe credentials — one row per
    connection, shared by the web, the qcluster workers and the commands.

    credentials.py locks this row while it renews a token, so a token is minted by one process
    and used by all; the tokens are encrypted at rest and never shown. Also Target's list of
    known profile attributes, with the time it was read (the attribute catalogue).
    """

    class Source(models.TextChoices):
        FETCHED = "fetched", "Fetched (Target's existing token)"
        MINTED = "minted", "Minted (a new token, when none was valid)"
        ROTATED = "rotated", "Rotated by an administrator"

    connection = models.OneToOneField(TargetConnection, on_delete=models.CASCADE,
                                      primary_key=True, related_name="credential_state")
    ims_token = EncryptedTextField(blank=True)
    ims_renew_at = models.DateTimeField(null=True, blank=True)  # ahead of its expires_in
    profile_token = EncryptedTextField(blank=True)
    profile_expires_at = models.DateTimeField(null=True, blank=True)
    # When to ask Target again: ahead of expiry for a fresh token, at expiry once Target has
    # said the current one is still the one (a POST before then would break its other users).
    profile_refresh_at = models.DateTimeField(null=True, blank=True)
    profile_source = models.CharField(max_length=8, choices=Source.choices, blank=True)
    # When Target last said that a token it had just refused is still its current one.
    refusal_checked_at = models.DateTimeField(null=True, blank=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)  # written to take the row's lock
    # The last renewal that failed (never a secret), cleared by the next success; alerts read it.
    failure = models.CharField(max_length=300, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    attributes = models.JSONField(default=list, blank=True)
    attributes_read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "credential state"

    def __str__(self) -> str:
        return f"credential state of connection #{self.connection_id}"


class AttributeMapping(models.Model):
    """How one of our fields (a spreadsheet column, a form field) becomes a Target attribute."""

    class ValueType(models.TextChoices):
        TEXT = "text", "Text"
        INTEGER = "integer", "Integer"
        DECIMAL = "decimal", "Decimal"
        BOOLEAN = "boolean", "Boolean"
        DATE = "date", "Date"
        DATETIME = "datetime", "Date and time"
        CHOICE = "choice", "Choice"

    class CaseTransform(models.TextChoices):
        NONE = "none", "Keep as entered"
        LOWER = "lower", "lower case"
        UPPER = "upper", "UPPER CASE"

    connection = models.ForeignKey(TargetConnection, on_delete=models.PROTECT, related_name="mappings")
    source_name = models.CharField(
        max_length=128, help_text="The column or field name operators use, e.g. loan_status."
    )
    target_name = models.CharField(
        max_length=128,
        help_text="Target profile attribute, without the 'profile.' prefix. Case-sensitive.",
    )
    value_type = models.CharField(max_length=10, choices=ValueType.choices, default=ValueType.TEXT)
    # Off unless the operator chooses it: nothing is trimmed silently (README).
    trim = models.BooleanField(default=False, help_text="Strip surrounding whitespace from values.")
    case_transform = models.CharField(
        max_length=5, choices=CaseTransform.choices, default=CaseTransform.NONE
    )
    required = models.BooleanField(default=False, help_text="Every update must carry a value.")
    max_length = models.PositiveIntegerField(
        default=DEFAULT_VALUE_MAX_LENGTH,
        validators=[MinValueValidator(1), MaxValueValidator(60_000)],
        help_text="Longest value sent, in characters (Target's default limit is 256).",
    )
    choices = models.TextField(
        blank=True, help_text="For the choice type: the allowed values, one per line (exact case)."
    )
    pattern = models.CharField(
        max_length=500, blank=True, help_text="Optional regular expression the whole value must match."
    )
    send_empty = models.BooleanField(
        default=False,
        help_text="Send an empty value (clearing the attribute) instead of refusing it.",
    )
    help_text = models.CharField(max_length=300, blank=True, help_text="Shown to operators.")
    label = models.CharField(
        max_length=128, blank=True,
        help_text="What the staging form calls the field, e.g. \"Loan status\". Empty: the "
        "source name. Files always use the source name.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connection", "source_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "target_name"],
                condition=Q(active=True),
                name="uniq_active_mapping_target",
                violation_error_message="Another active mapping of this connection already "
                "targets this attribute.",
            ),
            models.UniqueConstraint(
                fields=["connection", "source_name"],
                condition=Q(active=True),
                name="uniq_active_mapping_source",
                violation_error_message="Another active mapping of this connection already "
                "uses this source name.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_name} → profile.{self.target_name}"

    @property
    def choice_list(self) -> list[str]:
        return [line.strip() for line in self.choices.splitlines() if line.strip()]


class UpdateStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent (acknowledged)"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # Skipped at send time: Target already held every staged value (no request, no quota).
    UNCHANGED = "unchanged", "Unchanged (not sent)"


class IdentityType(models.TextChoices):
    MBOX_PC = "mboxPC", "mboxPC (Target visitor id)"
    THIRD_PARTY = "mbox3rdPartyId", "mbox3rdPartyId (your customer id)"


class VerificationState(models.TextChoices):
    """Whether Target shows an acknowledged update. Blank: not (yet) sent."""

    PENDING = "pending", "Verifying"
    VERIFIED = "verified", "Verified"
    NOT_APPLIED = "not_applied", "Not applied"
    UNVERIFIED = "unverified", "Could not verify"
    OFF = "off", "Not verified (off)"


def content_hash(identity_type: str, identity: str, attributes: dict[str, str]) -> str:
    """A stable fingerprint of what would be sent, to tell whether an approval still applies."""
    payload = json.dumps([identity_type, identity, sorted(attributes.items())], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class PurgeReason(models.TextChoices):
    RETENTION = "retention", "Retention"
    FORGOTTEN = "forgotten", "Visitor forgotten"


def purge_note(purged_at: dt.datetime | None, reason: str, connection_label: str) -> str:
    """"purged on <date> under the retention of <connection>" (or "…: the visitor was
    forgotten"); "" for an update whose values are all there."""
    if purged_at is None:
        return ""
    if reason == PurgeReason.FORGOTTEN:
        return f"purged on {purged_at:%Y-%m-%d}: the visitor was forgotten"
    return f"purged on {purged_at:%Y-%m-%d} under the retention of {connection_label}"


class VisibleUpdateManager(models.Manager):
    """Every list, count, approval queue and sender query sees only live updates: the rows an
    unfinished import is still writing (ProfileUpdate.import_pending set) stay invisible until
    the import makes them all live at once — or deletes them when it fails."""

    def get_queryset(self):
        return super().get_queryset().filter(import_pending__isnull=True)

    def by_ids(self, ids) -> models.QuerySet:
        """The updates `ids`, found by primary key alone — for updates past the import's states
        (approved, sending, sent …; an unfinished import writes drafts and pending updates only).
        With the live filter in the query, a planner without fresh statistics (autovacuum behind
        a day of a million state changes) reads the whole partial index of the live updates for
        a list of a few hundred ids: 0.2 s for 500 ids, 1.2 s for 5,000 among a million, growing
        with the table (bench/day.py, docs/benchmarks.md)."""
        return self.model._base_manager.filter(id__in=ids)


class ProfileUpdate(models.Model):
    """One visitor's staged profile update: what will be sent, and where it is in its life."""

    objects = VisibleUpdateManager()
    # Live or not: for the import that writes, publishes and discards its own rows.
    with_pending_imports = models.Manager()

    connection = models.ForeignKey(TargetConnection, on_delete=models.PROTECT, related_name="updates")
    identity_type = models.CharField(max_length=14, choices=IdentityType.choices)
    identity = models.CharField(max_length=256)
    # Target attribute name (without "profile.") -> the exact string that is sent.
    attributes = models.JSONField(default=dict)
    reason = models.CharField(max_length=200, blank=True)
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="Earliest send time (UTC). Empty: as soon as approved."
    )
    status = models.CharField(max_length=10, choices=UpdateStatus.choices, default=UpdateStatus.DRAFT)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    last_edited_at = models.DateTimeField()
    # Everyone who wrote what is sent — its creator and whoever changed its identity or attributes,
    # ever. Four eyes: none of them may approve or reject it (workflow.py). Editing only the reason
    # or the earliest send time does not make someone an author.
    content_authors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="+", blank=True,
        help_text="Who created or changed the identity or attributes; none of them may decide.")
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    # Fingerprint of the content a supervisor approved; a re-queue keeps the approval only if
    # the content still has this fingerprint.
    approved_hash = models.CharField(max_length=64, blank=True)

    # Sending bookkeeping (owned by sending.py).
    # Attempts since the last (re-)queue, which the attempt budget counts; and over all time.
    attempt_count = models.PositiveIntegerField(default=0)
    attempts_total = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Set while the import that created this row is still running: the row is not live yet
    # (see VisibleUpdateManager). Cleared, for all of the import's rows at once, when it ends.
    # Indexed by upd_import_pending (Meta), over the pending rows only.
    import_pending = models.ForeignKey("ImportJob", on_delete=models.CASCADE, null=True,
                                       blank=True, editable=False, related_name="+",
                                       db_index=False)
    # The import that created this update, for good. Its one "imported" AuditEvent (connection
    # level: who, when, the file, the count) plus this update's first state is the update's
    # "imported" entry on its timeline (selectors.update_timeline) — no audit row per update.
    # RESTRICT: a job whose updates are live cannot be deleted (its rows not yet live cascade
    # away through import_pending). No index: it is read from the update, never searched by
    # (jobs are never deleted), and each index costs every imported row an entry.
    import_job = models.ForeignKey("ImportJob", on_delete=models.RESTRICT, null=True,
                                   blank=True, editable=False, related_name="+",
                                   db_index=False)

    # Read-back after sending (owned by verification.py); see VerificationState.
    verification_state = models.CharField(
        max_length=12, choices=VerificationState.choices, blank=True, default="")
    verification_checks = models.PositiveSmallIntegerField(default=0)
    verification_next_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # What Target held before the send, per attribute: {"name": {"value", "modifiedAt"}} or
    # {"name": None} when the attribute did not exist; empty when no read was on record.
    prior_values = models.JSONField(default=dict, blank=True)
    prior_read_at = models.DateTimeField(null=True, blank=True)
    # Attributes the last send left out because Target already held their staged value (the
    # connection's drop_unchanged_attributes); verification still checks them, by value.
    unsent_unchanged = models.JSONField(default=list, blank=True)
    # Customer data lifecycle (retention.py, forgetting.py): when the identity and values were
    # replaced by keyed hashes, and why. The record (states, times, hashes) stays.
    purged_at = models.DateTimeField(null=True, blank=True, editable=False)
    purge_reason = models.CharField(max_length=10, blank=True, editable=False,
                                    choices=PurgeReason.choices)

    # The route chosen when it was decided ("" single, "bulk"); the single sender claims only
    # single ones, bulk_sending.py only bulk ones (and may hand one back to single).
    # A database default too: rows written by raw INSERTs (bench/history.py) take it.
    send_route = models.CharField(max_length=4, blank=True, default="", db_default="",
                                  choices=[("", "Single"), ("bulk", "Bulk")])
    # The bulk file and its line (1 = the first row after the header) that carried it, if any.
    bulk_file = models.ForeignKey("BulkFile", on_delete=models.PROTECT, null=True, blank=True,
                                  editable=False, related_name="updates", db_index=False)
    bulk_line = models.PositiveIntegerField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Live rows only (every count by status asks import_pending IS NULL): the dashboard's
            # and the list's counts by status read these indexes alone.
            models.Index(fields=["status", "-id"], condition=Q(import_pending__isnull=True),
                         name="upd_status_id"),
            models.Index(fields=["connection", "status", "-id"],
                         condition=Q(import_pending__isnull=True), name="upd_conn_status_id"),
            models.Index(fields=["created_by", "-id"], name="upd_creator_id"),
            models.Index(fields=["created_at"], name="upd_created_at"),
            models.Index(fields=["identity"], name="upd_identity"),
            models.Index(fields=["identity_type", "-id"], name="upd_identity_type_id"),
            # The sender's claim: due approved updates, and leases that ran out.
            models.Index(
                fields=["connection", "next_attempt_at"],
                condition=Q(status="approved"),
                name="upd_due_approved",
            ),
            models.Index(
                fields=["lease_expires_at"], condition=Q(status="sending"), name="upd_lease_sending"
            ),
            models.Index(
                fields=["verification_next_at"], condition=Q(verification_state="pending"),
                name="upd_verification_due",
            ),
            # Acknowledged updates whose verification is not scheduled yet (verification.
            # _schedule_new, once per run): a handful between two runs. Without it each run read
            # every sent update (the status index), a million on a full quota day.
            # Every column compared, equalities only: SQLite without statistics takes the
            # index that matches the most of them.
            models.Index(fields=["status", "verification_state", "connection"],
                         condition=Q(status="sent", verification_state=""),
                         name="upd_sent_unscheduled"),
            # The rows an unfinished import is writing, for making them live or deleting them.
            # Only those: a full index on the column would hold a million NULLs, and SQLite
            # without statistics takes `import_pending IS NULL` (asked by every listing) for a
            # selective equality and reads the whole table through it.
            models.Index(fields=["import_pending"], condition=Q(import_pending__isnull=False),
                         name="upd_import_pending"),
            # The dashboard's verification picture (verification.daily_summary): updates by day
            # of acknowledgment, read from the index alone. Its query names no status (it
            # counts the sent ones with a filter): a `status = 'sent'` condition would steer
            # SQLite without statistics to upd_status_id, read over every sent update.
            models.Index(fields=["acknowledged_at", "status", "verification_state",
                                 "import_pending"],
                         condition=Q(acknowledged_at__isnull=False), name="upd_acknowledged"),
            # Retention: the updates whose values are still held, oldest first, per connection.
            models.Index(fields=["connection", "created_at"], condition=Q(purged_at__isnull=True),
                         name="upd_unpurged_created"),
            # A bulk file's rows (the job page, reconciliation); only rows a file carried.
            models.Index(fields=["bulk_file", "verification_state"],
                         condition=Q(bulk_file__isnull=False), name="upd_bulk_file"),
            models.Index(fields=["connection", "next_attempt_at"],
                         condition=Q(status="approved", send_route="bulk"),
                         name="upd_due_bulk"),
        ]
        permissions = [
            ("submit_profileupdate", "Can submit profile updates for approval"),
            ("approve_profileupdate", "Can approve or reject profile updates"),
            ("cancel_profileupdate", "Can cancel profile updates"),
            ("requeue_profileupdate", "Can re-queue failed profile updates"),
            ("import_profileupdate", "Can import profile updates from CSV/XLSX"),
            ("export_profileupdate", "Can export profile updates"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.identity_type}={self.identity}"

    @property
    def content_hash(self) -> str:
        return content_hash(self.identity_type, self.identity, self.attributes)

    @property
    def purge_note(self) -> str:
        """What pages, timelines and exports show instead of purged values ("" when none were)."""
        if self.purged_at is None:
            return ""
        return purge_note(self.purged_at, self.purge_reason, self.connection.label)

    def matches_approval(self, *, unapproved: bool = False) -> bool:
        """Whether the content is exactly what was approved: the approval keeps the content's
        fingerprint (`approved_hash`). An update that carries none (never approved, or written
        straight into the database without an approval) answers `unapproved`."""
        if not self.approved_hash:
            return unapproved
        return self.approved_hash == self.content_hash


class SendAttemptQuerySet(models.QuerySet):
    def started_between(self, since: dt.datetime | None = None,
                        until: dt.datetime | None = None) -> models.QuerySet:
        """Attempts started in (since, until], either end open when None. Every connection is
        named, so the window is read as one range of att_conn_started per connection: a bare
        time condition cannot use that index, and SQLite then scans every attempt ever made
        (~0.5 s at a million)."""
        attempts = self.filter(connection_id__in=TargetConnection.objects.values("pk"))
        if since is not None:
            attempts = attempts.filter(started_at__gt=since)
        if until is not None:
            attempts = attempts.filter(started_at__lte=until)
        return attempts


class SendAttempt(models.Model):
    """One HTTP request to Target (or one that may have reached it) and what came back."""

    Outcome = target.Outcome  # one type for the protocol's answers and the stored rows

    objects = SendAttemptQuerySet.as_manager()

    update = models.ForeignKey(ProfileUpdate, on_delete=models.CASCADE, related_name="attempts")
    connection = models.ForeignKey(TargetConnection, on_delete=models.PROTECT, related_name="+")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    method = models.CharField(max_length=4)
    request_bytes = models.PositiveIntegerField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=target.OUTCOME_CHOICES)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=64, blank=True)
    # When Target's answer body and the error text were emptied (retention.py, forgetting.py).
    purged_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["update", "number"]
        indexes = [
            models.Index(fields=["update", "number"], name="att_update_number"),
            models.Index(fields=["connection", "-started_at"], name="att_conn_started"),
            models.Index(
                fields=["-started_at"], condition=Q(outcome="acknowledged"), name="att_acked_recent"
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of update #{self.update_id}: {self.outcome}"


class QuotaMinute(models.Model):
    """Requests reserved for one connection in one UTC minute.

    The rolling-24-hour check sums at most ~1,441 of these rows per connection, however long the
    history grows — never a count over attempts.
    """

    connection = models.ForeignKey(TargetConnection, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "minute"], name="uniq_quota_minute")
        ]


class DailyUsage(models.Model):
    """Per connection and UTC day: requests made, acknowledged, failed. Kept as history."""

    connection = models.ForeignKey(TargetConnection, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    acknowledged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(fields=["connection", "day"], name="uniq_daily_usage")
        ]


class SendRun(models.Model):
    """One run of the sending service (scheduled task or command) and its totals."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        COMMAND = "command", "Command"
        OTHER = "other", "Other"

    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.OTHER)
    worker = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    claimed = models.PositiveIntegerField(default=0)
    # Requests made (each counted against the quota), retries included.
    requests_sent = models.PositiveIntegerField(default=0)
    acknowledged = models.PositiveIntegerField(default=0)
    retried = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    deferred_by_quota = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["-started_at"], name="run_started")]


class AuditEvent(models.Model):
    """Who changed what, when — written in the same transaction as the change, always through
    updates/audit.py."""

    class Action(models.TextChoices):
        """Everything an audit row can say happened, in the words the update's timeline shows."""

        # The workflow's moves (workflow.TRANSITIONS)
        STAGED = "staged", "staged"
        IMPORTED = "imported", "imported"
        EDITED = "edited", "edited"
        SUBMITTED = "submitted", "submitted for approval"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        CANCELLED = "cancelled", "cancelled"
        SUPERSEDED = "superseded", "superseded"
        REQUEUED = "requeued", "re-queued"
        # The sender's moves
        CLAIMED = "claimed", "claimed for sending"
        RECLAIMED = "reclaimed", "claimed again after a worker's lease ran out"
        RELEASED = "released", "put back unsent"
        ACKNOWLEDGED = "acknowledged", "acknowledged by Target"
        RETRY_SCHEDULED = "retry_scheduled", "retry scheduled"
        FAILED = "failed", "failed"
        UNCHANGED = "unchanged", "unchanged"
        SENT = "sent", "sent"  # written by earlier versions for what is now "acknowledged"
        READ_BEFORE_SEND_FAILED = "read_before_send_failed", "read before send failed"
        UNCHANGED_ATTRIBUTES_LEFT_OUT = ("unchanged_attributes_left_out",
                                         "unchanged attributes left out")
        # Verification after sending and reverts (verification.py)
        VERIFICATION_SCHEDULED = "verification_scheduled", "verification scheduled"
        VERIFICATION_OFF = "verification_off", "verification off"
        VERIFICATION_READ = "verification_read", "verification read"
        VERIFIED = "verified", "verified"
        NOT_APPLIED = "not_applied", "not applied"
        UNVERIFIED = "unverified", "unverified"
        REVERT_STAGED = "revert_staged", "revert staged"
        # Configuration (connections.py, mappings.py, alerts.py)
        CONNECTION_CREATED = "connection_created", "connection created"
        CONNECTION_CHANGED = "connection_changed", "connection changed"
        MAPPING_CREATED = "mapping_created", "mapping created"
        MAPPING_CHANGED = "mapping_changed", "mapping changed"
        ALERT_TESTED = "alert_tested", "alert tested"
        # Adobe credentials (credentials.py): never the token, only times and sources
        IMS_TOKEN_OBTAINED = "ims_token_obtained", "IMS access token obtained"
        PROFILE_TOKEN_FETCHED = "profile_token_fetched", "profile token fetched from Target"
        PROFILE_TOKEN_MINTED = "profile_token_minted", "profile token minted (none was valid)"
        PROFILE_TOKEN_ROTATED = "profile_token_rotated", "profile token rotated by an administrator"
        TOKEN_RENEWAL_FAILED = "token_renewal_failed", "token renewal failed"
        # Customer data lifecycle (forgetting.py, privacy.py): never an identity or a value
        VISITOR_FORGOTTEN = "visitor_forgotten", "visitor forgotten (values purged)"
        CANCELLED_FORGOTTEN = "cancelled_forgotten", "cancelled: the visitor was forgotten"
        SUPPRESSION_LIFTED = "suppression_lifted", "suppression of a forgotten visitor lifted"
        PRIVACY_FILED = "privacy_filed", "privacy request filed with Adobe"
        PRIVACY_PROCESSING = "privacy_processing", "privacy request processing at Adobe"
        PRIVACY_COMPLETE = "privacy_complete", "privacy request complete: deleted at Target"
        PRIVACY_NOT_FOUND = "privacy_not_found", "privacy request: nothing held at Target"
        PRIVACY_ERROR = "privacy_error", "privacy request ended in error"
        # The bulk route (routing.py, bulk_sending.py, bulk_reconcile.py)
        ROUTED_BULK = "routed_bulk", "batch routed to the bulk API"
        BULK_JOB_CREATED = "bulk_job_created", "bulk job created"
        REQUEUED_SINGLE = "requeued_single", "re-queued on the single route (not applied in bulk)"
        BULK_REQUEUED_SINGLE = ("bulk_requeued_single",
                                "a bulk job's not-applied updates re-queued single")

    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for the system (the sender).",
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    update = models.ForeignKey(
        ProfileUpdate, on_delete=models.CASCADE, null=True, blank=True, related_name="audit_events"
    )
    mapping = models.ForeignKey(
        AttributeMapping, on_delete=models.CASCADE, null=True, blank=True, related_name="audit_events"
    )
    connection = models.ForeignKey(
        TargetConnection, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10, blank=True)
    comment = models.TextField(blank=True)
    # {"field": {"before": ..., "after": ...}} for the fields this event changed.
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["update", "at"], name="audit_update_at"),
            models.Index(fields=["mapping", "at"], name="audit_mapping_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action}"


class ImportJob(models.Model):
    """A CSV/XLSX import of profile updates, validated first, saved all-or-nothing."""

    class Status(models.TextChoices):
        CHECKING = "checking", "Checking the file"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        INVALID = "invalid", "Invalid rows — nothing saved"
        ERROR = "error", "Error — nothing saved"

    connection = models.ForeignKey(TargetConnection, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=4)
    file_data = models.BinaryField(editable=False)
    submit_after_import = models.BooleanField(default=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_updates = models.PositiveIntegerField(default=0)
    # [{"row": n, "column": name, "message": text}, ...] — capped, with the total in error_count.
    errors = models.JSONField(default=list, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    # mappings.mappings_fingerprint of the active mappings the preview checked the rows against;
    # the import saves only while the connection's mappings still have it.
    mappings_fingerprint = models.CharField(max_length=64, blank=True, default="", editable=False)
    # SHA-256 of the file the preview checked; the import saves only that very file (a file
    # streamed from disk by `import_updates` is not stored, so it could change in between).
    file_sha256 = models.CharField(max_length=64, blank=True, default="", editable=False)
    # The uploader chose to supersede: a row for a visitor and attribute with an open update
    # cancels that update (audited "superseded") instead of refusing the file (open_changes.py).
    supersede_open = models.BooleanField(default=False, editable=False)
    # When the file and the error excerpts were emptied (retention.py, forgetting.py).
    purged_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import #{self.pk} {self.file_name}"


class VisitorLock(models.Model):
    """One of a fixed number of lock rows; a visitor (connection, identity type, identity) hashes
    to one. Every service that creates or reopens an update locks its visitor's row first, so
    two changes of one visitor never check for open updates at the same time (open_changes.py
    says why a lock and not an index)."""

    stripe = models.PositiveIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"visitor lock {self.stripe}"


class SchedulerHeartbeat(models.Model):
    """When a scheduled job last completed a run (one row per job), for /readyz and /metrics."""

    SEND_SCHEDULE = "send_schedule"

    name = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField()
    worker = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def beat(cls, *, name: str = SEND_SCHEDULE, now: dt.datetime | None = None) -> None:
        """Record that the scheduled job `name` has just completed a run."""
        worker = f"{socket.gethostname()}:{os.getpid()}"[:64]
        cls.objects.update_or_create(
            name=name, defaults={"beat_at": now or timezone.now(), "worker": worker})

    @classmethod
    def last_beat_at(cls, *, name: str = SEND_SCHEDULE) -> dt.datetime | None:
        return cls.objects.filter(name=name).values_list("beat_at", flat=True).first()


class ReadRateSlot(models.Model):
    """The read rate limit of one connection, shared by every process (updates/reading.py): the
    time (Unix seconds) from which the next read slot is free. A process takes several slots per
    round trip, so the row is written about twice a second at most, not once per read."""

    connection = models.OneToOneField(TargetConnection, on_delete=models.CASCADE,
                                      primary_key=True, related_name="+")
    next_free_at = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"reads of connection {self.connection_id} free from {self.next_free_at:.3f}"


class ProfileRead(models.Model):
    """One read of a visitor's profile from Target's read API, kept as evidence with its time.

    Holds customer values (what Target had): shown to the people who may see the update, never
    logged. `attributes` is {"name": {"value": str, "modifiedAt": ISO-8601}} for the whole profile
    as read (found), empty otherwise.
    """

    class Outcome(models.TextChoices):
        FOUND = "found", "Profile found"
        NOT_FOUND = "not_found", "No profile at Target"
        ERROR = "error", "Read failed"

    class Purpose(models.TextChoices):
        DIFF = "diff", "Live diff"
        BEFORE_SEND = "before_send", "Before sending"
        VERIFICATION = "verification", "Verification"

    update = models.ForeignKey(ProfileUpdate, on_delete=models.CASCADE, related_name="reads")
    connection = models.ForeignKey(TargetConnection, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField()
    purpose = models.CharField(max_length=12, choices=Purpose.choices)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # PostgreSQL stores no NUL and no lone surrogate: a read holding one keeps every name and
    # string escaped (target.escape_unstorable); `held` gives back what Target returned.
    escaped = models.BooleanField(
        default=False, help_text="Target returned characters that cannot be stored as they are "
        "(NUL or a lone surrogate); the stored attributes are escaped.")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # When the values read were replaced by keyed hashes (retention.py, forgetting.py).
    purged_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["update", "-at"], name="read_update_at"),
                   models.Index(fields=["connection", "at"], condition=Q(purged_at__isnull=True),
                                name="read_unpurged_at")]

    @property
    def held(self) -> dict[str, dict[str, str]]:
        """The attributes exactly as Target returned them (escaped ones given back); compare
        with these, show `attributes` (or target.shown)."""
        if not self.escaped:
            return self.attributes
        cached = getattr(self, "_held", None)
        if cached is None:
            cached = self._held = target.unescaped_attributes(self.attributes)
        return cached

    def __str__(self) -> str:
        return f"read of update #{self.update_id} at {self.at:%Y-%m-%d %H:%M:%S}: {self.outcome}"


class AlertRule(models.Model):
    """When to tell people about trouble on one connection (updates/alerts.py checks them).

    A rule fires once when its condition becomes true and once more when it clears; `firing`
    is the state last reported. Alert texts name counts and rates, never customer values.
    """

    class Kind(models.TextChoices):
        FAILURE_RATE = "failure_rate", "Failure rate over a window"
        QUOTA_USE = "quota_use", "Quota use crossing a threshold"
        WAITING = "waiting", "Updates waiting for approval too long"
        TOKEN_REFUSED = "token_refused", "Bearer token refused by Target (401/403)"
        TOKEN_RENEWAL = "token_renewal", "Token renewal failing (Adobe credentials)"
        NOT_APPLIED = "not_applied", "Updates not applied after verification"
        PRIVACY_ERROR = "privacy_error", "A privacy request ended in error"
        BULK_JOB = "bulk_job", "Bulk file stuck or not complete after 24 hours"

    connection = models.ForeignKey(TargetConnection, on_delete=models.CASCADE,
                                   related_name="alert_rules")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    threshold = models.DecimalField(
        max_digits=7, decimal_places=2, blank=True,
        help_text="Failure rate and quota use: a percentage (e.g. 20, 80, 95). Waiting: hours. "
        "Not applied: a number of updates in the window. Token refused: not used. Left empty: "
        "the kind's default (failure rate 10 %, quota use 80 %, waiting 4 hours, not applied "
        "1 update).")
    window_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="Failure rate and not applied: the period looked at, in minutes.")
    min_requests = models.PositiveIntegerField(
        default=20, help_text="Failure rate: fewer requests than this in the window never fire "
        "(two failures of three requests are not a trend).")
    email_to = models.TextField(
        blank=True, help_text="Addresses to email, one per line or comma-separated (sent with "
        "the server's mail settings). Empty: no email.")
    # Encrypted at rest: a webhook URL usually carries its secret in the path.
    webhook_url = EncryptedTextField(
        blank=True, validators=[MaxLengthValidator(500), URLValidator()],
        help_text="A URL to POST the alert to as JSON "
        "{\"text\": …} (Slack-compatible). Write-only: it often holds a secret.")
    active = models.BooleanField(default=True)
    firing = models.BooleanField(default=False, editable=False)
    changed_at = models.DateTimeField(null=True, blank=True, editable=False)

    # What an empty threshold becomes, per kind, in the kind's unit (alerts.threshold_words):
    # never 0, at which a failure-rate rule would fire on any failure.
    DEFAULT_THRESHOLDS = {
        Kind.FAILURE_RATE: Decimal(10),   # % of the requests in the window not acknowledged
        Kind.QUOTA_USE: Decimal(80),      # % of the rolling-24-hour limit in use
        Kind.WAITING: Decimal(4),         # hours an update has waited for approval
        Kind.TOKEN_REFUSED: Decimal(0),   # not used: any 401/403 fires
        Kind.TOKEN_RENEWAL: Decimal(0),   # not used: any failing renewal fires
        Kind.NOT_APPLIED: Decimal(1),     # updates not applied in the window
        Kind.PRIVACY_ERROR: Decimal(0),   # not used: any request in error fires
        Kind.BULK_JOB: Decimal(1),        # bulk files stuck or timed out in the window
    }

    class Meta:
        ordering = ["connection", "kind", "threshold"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.connection.label})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.threshold is None:  # left empty: the kind's default, however it is saved
            self.threshold = self.DEFAULT_THRESHOLDS.get(self.kind, Decimal(0))
        super().save(*args, **kwargs)

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.email_to.replace(",", "\n").splitlines() if a.strip()]

    def clean(self) -> None:
        # Where a webhook may go (http(s) only, no credentials, no link-local or unspecified
        # address; private ones only where allowed) is checked here, so every save through
        # full_clean — the admin's form, alert_rule_save — refuses what delivery would refuse.
        from .webhooks import check_url

        super().clean()
        if self.webhook_url:
            try:
                check_url(self.webhook_url)
            except ValidationError as error:
                raise ValidationError({"webhook_url": error}) from None


class AlertEvent(models.Model):
    """One state change of a rule — it fired or it cleared — and how it was delivered."""

    class State(models.TextChoices):
        FIRING = "firing", "Fired"
        CLEARED = "cleared", "Cleared"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    state = models.CharField(max_length=7, choices=State.choices)
    text = models.TextField()
    emailed = models.PositiveIntegerField(default=0, help_text="Recipients the email went to.")
    webhook_status = models.PositiveSmallIntegerField(null=True, blank=True)
    delivery_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["rule", "-at"], name="alert_rule_at")]

    def __str__(self) -> str:
        return f"{self.get_state_display()}: {self.text[:60]}"


class BatchJob(models.Model):
    """What a background job over a batch page's updates shares: who started it, its scope as on
    the batch page, and its progress (how many updates, when it started and finished, why it
    failed). BatchRead and DecisionJob are its two kinds; each has its own states and counters."""

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField()
    # The batch's scope, as on the batch page (both empty: every pending update).
    connection = models.ForeignKey(TargetConnection, on_delete=models.PROTECT, null=True,
                                   blank=True, related_name="+")
    import_job = models.ForeignKey(ImportJob, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    total = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        abstract = True
        ordering = ["-id"]

    @classmethod
    def claim(cls, pk: int, *, now: dt.datetime) -> bool:
        """Queued → running, started now: True for the one worker that claims the job (another
        worker has it, or it ended, when False). Each kind's Status has these two states."""
        return bool(cls.objects.filter(pk=pk, status=cls.Status.QUEUED).update(
            status=cls.Status.RUNNING, started_at=now))


class BatchRead(BatchJob):
    """Reading a whole batch of pending updates from Target in the background (batch_reads.py):
    what each update would do there, so the batch page can offer to decide only the updates that
    change something. One row per "Read the whole batch from Target"."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Reading"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    # The updates of the batch when the read started, in id order.
    update_ids = models.JSONField(default=list)
    done = models.PositiveIntegerField(default=0)
    # {"<update id>": [verdict, content hash read against]}; batch_reads.VERDICTS keys or
    # "not_read" / "gone" (no longer pending when its turn came).
    verdicts = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=dict, blank=True)  # verdict -> how many

    def __str__(self) -> str:
        return f"batch read #{self.pk}"


class DecisionJob(BatchJob):
    """A batch decision too large for one request (batch_decisions.py): the updates a batch page
    showed — their ids and content fingerprints, kept (ShownSnapshot) when it was rendered — decided
    in the background by django-q2, chunk by chunk, each chunk all or nothing. One row per large
    batch page shown; it becomes a decision when the page's Approve or Reject is clicked."""

    class Status(models.TextChoices):
        SHOWN = "shown", "Shown, not decided"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Deciding"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    # Whether an update of the scope that joined a chunk's id range refuses the chunk (the
    # whole batch: yes; "only the rows that change something": no, the rest stay pending).
    check_joined = models.BooleanField(default=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.SHOWN)
    decision = models.CharField(max_length=8, blank=True)  # "approve" or "reject"
    comment = models.TextField(blank=True)
    # The SHA-256 of what the page showed (batch_decisions.snapshot_digest), which it posts
    # back; the pairs themselves are the job's ShownSnapshot (a row of its own, so that saving
    # the progress never rewrites them), removed once the job has run.
    digest = models.CharField(max_length=64)
    chunks = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)  # decided or refused, so far
    decided = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)  # updates not decided: stale chunks, own
    # One entry per chunk handled: {"chunk", "first", "last", "size", "outcome" ("decided" or
    # "refused"), "decided", "own", "why"}.
    report = models.JSONField(default=list, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)  # the click
    # The route chosen at the click (routing.py) and, per connection id, the route it gave:
    # {"<connection id>": {"route": "single" | "bulk", "why": text}}.
    route_choice = models.CharField(max_length=6, blank=True, default="auto", db_default="auto")
    route_plan = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"batch decision #{self.pk}"


class ShownSnapshot(models.Model):
    """What a large batch page showed, for its DecisionJob: zlib-compressed JSON
    [[id, content fingerprint], ...] in id order (batch_decisions._pack)."""

    job = models.OneToOneField(DecisionJob, on_delete=models.CASCADE, primary_key=True,
                               related_name="shown")
    pairs = models.BinaryField()


class BulkJob(models.Model):
    """One run of the bulk route for one connection: the updates it took, in one or more files
    (BulkFile), and how they ended at Target and at read-back (bulk_sending.py, bulk_polling.py,
    bulk_reconcile.py)."""

    class State(models.TextChoices):
        SENDING = "sending", "Uploading files"
        PROCESSING = "processing", "Target is processing"
        COMPLETE = "complete", "Complete at Target"
        STUCK = "stuck", "Stuck at Target"
        TIMED_OUT = "timed_out", "Not complete after 24 hours"
        FAILED = "failed", "Refused by Target"

    connection = models.ForeignKey(TargetConnection, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()
    worker = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.SENDING)
    rows = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "bulk job"

    def __str__(self) -> str:
        return f"bulk job #{self.pk}"


class BulkFile(models.Model):
    """One file of a bulk job: exactly the bytes sent, Target's verbatim answer, its batchStatus
    URL as given, and where it is. Each upload and status call is a BulkCall."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to upload"
        ACCEPTED = "accepted", "Accepted, processing"
        COMPLETE = "complete", "Complete"
        STUCK = "stuck", "Stuck"
        TIMED_OUT = "timed_out", "Not complete after 24 hours"
        REFUSED = "refused", "Refused"

    job = models.ForeignKey(BulkJob, on_delete=models.CASCADE, related_name="files")
    number = models.PositiveIntegerField()
    version = models.CharField(max_length=2)  # "v1" or "v2"
    id_column = models.CharField(max_length=12)  # "pcId" or "thirdPartyId"
    attribute_names = models.JSONField(default=list)
    rows = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    body = models.BinaryField(editable=False)  # zlib-compressed file, kept for retries and proof
    state = models.CharField(max_length=9, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    answer = models.TextField(blank=True)  # Target's answer to the upload, verbatim (capped)
    status_url = models.TextField(blank=True)  # the batchStatus URL exactly as Target gave it
    batch_id = models.CharField(max_length=200, blank=True)
    polls = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    target_status = models.CharField(max_length=20, blank=True)  # the latest batchStatus status
    counts = models.JSONField(default=dict, blank=True)  # the latest showDetails counts
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The customer data's lifecycle (bulk_purging.py): when retention emptied the body and
    # answers, and each forget that removed lines from it ({"at", "privacy_request", "lines"}).
    # `sha256` and `size_bytes` stay those of the file as sent: the proof of what went out.
    body_purged_at = models.DateTimeField(null=True, blank=True)
    purges = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"],
                                               name="uniq_bulk_file_number")]

    def __str__(self) -> str:
        return f"file {self.number} of bulk job #{self.job_id}"

    @property
    def purge_note(self) -> str:
        """What was erased from the kept body since it was sent, in words (no personal data)."""
        notes = [f"{p['lines']} line(s) removed on {p['at'][:10]} by privacy request "
                 f"#{p['privacy_request']}" for p in self.purges or []]
        if self.body_purged_at:
            notes.append(f"body and answers emptied on {self.body_purged_at:%Y-%m-%d} under the "
                         "connection's retention")
        return "; ".join(notes)


class BulkCall(models.Model):
    """One call to the Bulk API (an upload or a batchStatus poll) and what came back: the
    50-calls-a-minute budget is counted from these, and a poll's counts are kept here."""

    class Kind(models.TextChoices):
        UPLOAD = "upload", "Upload"
        STATUS = "status", "Status poll"

    connection = models.ForeignKey(TargetConnection, on_delete=models.CASCADE, related_name="+")
    file = models.ForeignKey(BulkFile, on_delete=models.CASCADE, related_name="calls")
    kind = models.CharField(max_length=6, choices=Kind.choices)
    at = models.DateTimeField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    answer = models.TextField(blank=True)  # verbatim (capped), secrets redacted
    error = models.CharField(max_length=300, blank=True)
    target_status = models.CharField(max_length=20, blank=True)
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["connection", "-at"], name="bulkcall_conn_at")]


class BulkCallSlot(models.Model):
    """The bulk API's call rate of one connection, shared by every process (bulk_pacing.py): the
    time (Unix seconds) from which the next call is free, as ReadRateSlot for reads."""

    connection = models.OneToOneField(TargetConnection, on_delete=models.CASCADE,
                                      primary_key=True, related_name="+")
    next_free_at = models.FloatField(default=0.0)


class MetricsCheckpoint(models.Model):
    """What /metrics has added up, shared by every process (updates/metrics.py), so a new
    gunicorn worker does not add up every attempt ever made (seconds at tens of millions) nor
    recount the updates on its first scrape, and deleting old attempts (retention) does not
    make the counters go down. One row per figure: ATTEMPTS — the totals of the attempts
    started up to `at` (settled: they no longer change); UPDATES — the updates by status and
    verification state as counted at `at`."""

    ATTEMPTS = "attempts"
    UPDATES = "updates"

    name = models.CharField(max_length=16, primary_key=True)
    at = models.DateTimeField()
    values = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"metrics checkpoint {self.name} at {self.at:%Y-%m-%d %H:%M:%S}"


class PrivacyRequest(models.Model):
    """One "forget this visitor" (forgetting.py) and Adobe's part of it (privacy.py): the evidence
    of an erasure. Holds no personal data: the identity only as its keyed hash. While the
    suppression is not lifted, nothing for that identity can be staged or imported again."""

    class State(models.TextChoices):
        LOCAL_DONE = "local_done", "Local purge done; Target's part not filed"
        FILED = "filed", "Filed with Adobe"
        PROCESSING = "processing", "Processing at Adobe"
        COMPLETE = "complete", "Complete: deleted at Target"
        NOT_FOUND = "not_found", "Not found at Target"
        ERROR = "error", "Error"

    class Regulation(models.TextChoices):
        GDPR = "gdpr", "GDPR (EU)"
        CCPA = "ccpa", "CCPA (California)"
        CPRA = "cpra_usa", "CPRA (California)"
        LGPD = "lgpd_bra", "LGPD (Brazil)"
        PDPA = "pdpa_tha", "PDPA (Thailand)"
        NZPA = "nzpa_nzl", "NZPA (New Zealand)"

    OPEN_STATES = (State.FILED, State.PROCESSING)

    connection = models.ForeignKey(TargetConnection, on_delete=models.PROTECT, related_name="+")
    identity_type = models.CharField(max_length=14, choices=IdentityType.choices)
    identity_hash = models.CharField(max_length=80, help_text="The identity's keyed hash.")
    regulation = models.CharField(max_length=10, choices=Regulation.choices)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                     related_name="+")
    requested_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.LOCAL_DONE)
    # {"table": rows purged} of the local purge (forgetting.PURGED_TABLES).
    purge_counts = models.JSONField(default=dict, blank=True)
    cancelled_updates = models.PositiveIntegerField(default=0)
    filed_at = models.DateTimeField(null=True, blank=True)
    filed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                                 blank=True, related_name="+")
    # Set while a filing is on its way to Adobe (privacy.privacy_request_file): a second filing
    # in that time would open a second job there.
    filing_started_at = models.DateTimeField("filing under way since", null=True, blank=True,
                                             editable=False)
    # Set while a status read is on its way (privacy.privacy_requests_poll): the schedule and an
    # event (or two workers) reading the same job at once would both count a poll.
    poll_started_at = models.DateTimeField("status read under way since", null=True, blank=True,
                                           editable=False)
    adobe_job_id = models.CharField(max_length=100, blank=True)
    # Adobe's answers, oldest first: {"at", "http_status", "status", "message", "code"}.
    adobe_answers = models.JSONField(default=list, blank=True)
    polls = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, help_text="What is left to do, in words (no personal "
                                                  "data).")
    suppression_lifted_at = models.DateTimeField(null=True, blank=True)
    suppression_lifted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                              null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [
            models.Index(fields=["connection", "identity_type", "identity_hash"],
                         name="privacy_identity"),
            models.Index(fields=["next_poll_at"], condition=Q(state__in=["filed", "processing"]),
                         name="privacy_poll_due"),
        ]
        permissions = [
            ("forget_visitor", "Can forget a visitor (erase here and at Target)"),
            ("lift_suppression", "Can lift the suppression of a forgotten visitor"),
        ]

    def __str__(self) -> str:
        return f"privacy request #{self.pk} ({self.get_state_display()})"

    @property
    def suppressing(self) -> bool:
        return self.suppression_lifted_at is None


class RetentionRun(models.Model):
    """One run of the retention purge (retention.py) for one connection: what it erased, as
    counts per table — the evidence, with no personal data."""

    connection = models.ForeignKey(TargetConnection, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # {"table": rows purged or deleted}
    counts = models.JSONField(default=dict, blank=True)
    chunks = models.PositiveIntegerField(default=0)
    complete = models.BooleanField(default=False, help_text="Nothing due was left for later.")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["connection", "started_at"], name="retention_conn_at")]

    def __str__(self) -> str:
        return f"retention run #{self.pk} of {self.connection_id}"
