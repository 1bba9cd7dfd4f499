"""Alert rules and the alerts they sent (updates/alerts.py). Administrators set rules up; the
webhook URL is write-only here, like a connection's token, because it usually holds a secret.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from updates.models import AlertEvent, AlertRule

from .base import OfferedLookupsAdmin


class AlertRuleForm(forms.ModelForm):
    webhook_url = forms.URLField(
        required=False, max_length=500, label="Webhook URL", assume_scheme="https",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="POSTed as JSON {\"text\": …} (a Slack incoming webhook works). Write-only: "
                  "leave empty to keep the stored one; tick \"remove\" to drop it.")
    remove_webhook = forms.BooleanField(required=False, label="Remove the webhook",
                                        help_text="Stop posting this rule's alerts.")

    class Meta:
        model = AlertRule
        fields = ["connection", "kind", "threshold", "window_minutes", "min_requests",
                  "email_to", "active"]
        widgets = {"email_to": forms.Textarea(attrs={"rows": 2, "cols": 40})}
        help_texts = {"connection": "The Target connection this rule watches.",
                      "kind": "What to watch (see the threshold's help for its unit).",
                      "active": "Inactive rules are not checked."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stored_webhook = self.instance.webhook_url  # before the form touches it

    def save(self, commit: bool = True) -> AlertRule:
        rule = super().save(commit=False)
        if self.cleaned_data.get("remove_webhook"):
            rule.webhook_url = ""
        else:
            rule.webhook_url = self.cleaned_data.get("webhook_url") or self._stored_webhook
        if commit:
            rule.save()
        return rule


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    fields = ("at", "state", "text", "emailed", "webhook_status", "delivery_error")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-at", "-id")


@admin.register(AlertRule)
class AlertRuleAdmin(OfferedLookupsAdmin):
    form = AlertRuleForm
    list_display = ("kind", "connection", "threshold", "state", "changed_at", "delivery", "active")
    list_filter = ("connection", "kind", "firing", "active")
    list_select_related = ("connection",)
    readonly_fields = ("firing", "changed_at", "webhook_set")
    inlines = [AlertEventInline]
    fieldsets = (
        (None, {"fields": ("connection", "kind", "threshold", "window_minutes", "min_requests",
                           "active")}),
        ("Who is told", {"fields": ("email_to", "webhook_set", "webhook_url", "remove_webhook")}),
        ("State", {"fields": ("firing", "changed_at")}),
    )

    @admin.display(description="state", ordering="firing")
    def state(self, rule: AlertRule) -> str:
        if rule.firing:
            return format_html('<span class="po-status po-status-failed">{}</span>', "firing")
        return format_html('<span class="po-status po-status-sent">{}</span>', "quiet")

    @admin.display(description="told by")
    def delivery(self, rule: AlertRule) -> str:
        ways = (["email"] if rule.recipients else []) + (["webhook"] if rule.webhook_url else [])
        return ", ".join(ways) or "nobody (only recorded here)"

    @admin.display(description="Webhook")
    def webhook_set(self, rule: AlertRule) -> str:
        return "set (hidden)" if rule.webhook_url else "not set"

    class Media:
        css = {"all": ["updates/admin.css"]}


@admin.register(AlertEvent)
class AlertEventAdmin(OfferedLookupsAdmin):
    list_display = ("at", "state", "rule", "text", "emailed", "webhook_status", "delivery_error")
    list_filter = ("state", "rule__connection", "rule__kind")
    list_select_related = ("rule__connection",)
    readonly_fields = ("rule", "at", "state", "text", "emailed", "webhook_status",
                       "delivery_error")
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # written by alerts.alerts_check only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
