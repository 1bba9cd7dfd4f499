"""Attribute mappings: define, change and deactivate them — every save through
mappings.mapping_save, which checks permissions and writes the audit row.

Mappings are never deleted: their audit trail would go with them, and updates staged under them
stay readable. Deactivate one instead (its source and target names become free again).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from updates import catalogue, mappings
from updates.errors import PERMISSION_DENIED
from updates.models import AttributeMapping, AuditEvent
from .base import OfferedLookupsAdmin

AUDIT_EVENTS_SHOWN = 50


class AttributeMappingForm(forms.ModelForm):
    class Meta:
        model = AttributeMapping
        fields = ["connection", "source_name", "target_name", "value_type", "trim",
                  "case_transform", "required", "max_length", "choices", "pattern", "send_empty",
                  "label", "help_text", "active"]
        widgets = {"choices": forms.Textarea(attrs={"rows": 4, "cols": 40})}
        # For the model fields that carry no help text of their own (every field needs one).
        help_texts = {
            "connection": "The Target connection whose updates this mapping fills; fixed once "
                          "saved.",
            "value_type": "Decides the operator's input and how a value is checked and written "
                          "(see below).",
            "case_transform": "Change the case of values before they are stored and sent "
                              "(a new mapping keeps them as entered).",
            "trim": "Strip surrounding whitespace from values (off unless you choose it: "
                    "otherwise values are sent as typed).",
            "pattern": "Optional regular expression the whole value must match, in RE2 syntax "
                       "(linear time; no look-arounds or back-references).",
            "active": "Inactive mappings are left out of the staging form and imports; their "
                      "source and target names become free again.",
        }

    def _post_clean(self) -> None:
        super()._post_clean()
        if self._errors:
            return
        # The service's own validation, on the form: errors land next to their fields. It runs
        # whole here (the form skips constraints on read-only fields such as connection).
        try:
            mappings.mapping_validate(self.instance)
        except ValidationError as error:
            self._update_errors(error)


@admin.register(AttributeMapping)
class AttributeMappingAdmin(OfferedLookupsAdmin):
    form = AttributeMappingForm

    class Media:
        css = {"all": ["updates/admin.css"]}  # long names wrap instead of being clipped

    list_display = ("source_code", "target_display", "value_type", "required", "max_chars",
                    "send_empty", "active", "connection", "updated_at")
    list_filter = ("connection", "active", "value_type")
    list_select_related = ("connection",)
    search_fields = ("source_name", "target_name")
    ordering = ("connection", "source_name")
    readonly_fields = ("audit_trail",)
    fieldsets = (
        (None, {"fields": ("connection", "source_name", "target_name", "value_type", "active")}),
        ("Checks and normalisation", {
            "fields": ("trim", "case_transform", "required", "max_length", "choices", "pattern",
                       "send_empty"),
            "description": "How a value is cleaned before it is stored and sent: integers "
                           "without leading zeros, decimals without exponent or trailing zeros, "
                           "booleans as true/false, dates as YYYY-MM-DD, date-times as "
                           "YYYY-MM-DDTHH:MM:SSZ in UTC, choices exactly as listed."}),
        ("For operators", {"fields": ("label", "help_text")}),
        ("History", {"fields": ("audit_trail",)}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: AttributeMapping | None = None):
        # A mapping belongs to its connection for life; staged updates rely on that.
        return (*self.readonly_fields, "connection") if obj else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Target attribute", ordering="target_name")
    def target_display(self, obj: AttributeMapping) -> str:
        # Identifiers as code: they may wrap anywhere, the list's words never do.
        return format_html("<code>profile.{}</code>", obj.target_name)

    @admin.display(description="Max length", ordering="max_length")
    def max_chars(self, obj: AttributeMapping) -> str:
        return f"{obj.max_length:,}"

    @admin.display(description="Source name", ordering="source_name")
    def source_code(self, obj: AttributeMapping) -> str:
        return format_html("<code>{}</code>", obj.source_name)

    @admin.display(description="Changes")
    def audit_trail(self, obj: AttributeMapping | None) -> str:
        if obj is None or obj.pk is None:
            return "—"
        events = list(AuditEvent.objects.filter(mapping=obj).select_related("actor")
                      .order_by("-at", "-id")[:AUDIT_EVENTS_SHOWN])
        if not events:
            return "No recorded changes."
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((f"{e.at:%Y-%m-%d %H:%M:%S} UTC", e.actor.get_username() if e.actor else "system",
              e.get_action_display(), _changes_text(e.changes)) for e in events))
        return format_html(
            '<table class="mapping-audit"><thead><tr><th>When</th><th>Who</th><th>What</th>'
            "<th>Changed fields (before → after)</th></tr></thead><tbody>{}</tbody></table>", rows)

    def save_model(self, request: HttpRequest, obj: AttributeMapping, form, change: bool) -> None:
        try:
            mappings.mapping_save(mapping=obj, by=request.user)
        except ValidationError as error:
            # The admin checked the permission and the form the names; a race (rights withdrawn,
            # a concurrent save taking the name) lands here.
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            if getattr(error, "code", None) == PERMISSION_DENIED:
                raise PermissionDenied(" ".join(error.messages)) from error
            raise
        for warning in catalogue.mapping_warnings(obj):  # a warning, never a refusal
            self.message_user(request, warning, messages.WARNING)


def _changes_text(changes: dict) -> str:
    parts = []
    for name, change in (changes or {}).items():
        before, after = change.get("before"), change.get("after")
        parts.append(f"{name}: {_short(before)} → {_short(after)}")
    return "; ".join(parts) or "—"


def _short(value: Any) -> str:
    if value is None:
        return "∅"
    text = str(value).replace("\n", " | ")
    return text if len(text) <= 60 else text[:57] + "…"
