"""Alert rules and the alerts they sent (updates/alerts.py). Administrators set rules up; the
webhook URL is write-only here, like a connection's token, because it usually holds a secret.
Supervisors see rules and events read-only (no webhook field, no add, save or test button).
Rules are saved through `alerts.alert_rule_save` (the model's full validation: where a webhook may
go), and a rule's page has a *Send a test alert* button (`alerts.alert_rule_send_test`) that shows
what the receiver answered.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from updates import alerts
from updates.models import AlertEvent, AlertRule

from .base import OfferedLookupsAdmin, parse_id


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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # The URL the rule will keep, in place before the model's validation (_post_clean
        # copies it onto the rule and runs AlertRule.clean, which checks where a webhook may
        # go), so a bad one is refused on its field. The field never renders a value back.
        if cleaned.get("remove_webhook"):
            cleaned["webhook_url"] = ""
        elif not cleaned.get("webhook_url"):
            cleaned["webhook_url"] = self._stored_webhook
        self.instance.webhook_url = cleaned.get("webhook_url", self._stored_webhook)
        return cleaned

    def save(self, commit: bool = True) -> AlertRule:
        rule = super().save(commit=False)
        rule.webhook_url = self.cleaned_data.get("webhook_url", self._stored_webhook)
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
    list_display = ("kind", "connection", "alert_at", "state", "changed_at", "delivery", "active")
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

    @admin.display(description="alerts at", ordering="threshold")
    def alert_at(self, rule: AlertRule) -> str:
        return alerts.threshold_words(rule)

    def get_fieldsets(self, request: HttpRequest, obj: AlertRule | None = None):
        if self.has_change_permission(request, obj):
            return self.fieldsets
        # Read-only (supervisors): the webhook's address is a secret even to readers; only
        # whether one is set is shown.
        return tuple((name, {**options, "fields": [f for f in options["fields"]
                                                  if f not in ("webhook_url", "remove_webhook")]})
                     for name, options in self.fieldsets)

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

    def save_model(self, request: HttpRequest, obj: AlertRule, form, change: bool) -> None:
        alerts.alert_rule_save(rule=obj, by=request.user)  # permission and validation there

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        extra = {"can_test_alert": self.has_change_permission(request)}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def get_urls(self):
        own = [path("<path:object_id>/test/", self.admin_site.admin_view(self.test_view),
                    name="updates_alertrule_test")]
        return own + super().get_urls()

    def test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: send a test alert through the rule's ways now and say what came back."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        rule = get_object_or_404(AlertRule.objects.select_related("connection"),
                                 pk=parse_id(object_id) or -1)
        if not self.has_change_permission(request, rule):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:updates_alertrule_change", args=[rule.pk]))
        try:
            outcome = alerts.alert_rule_send_test(rule=rule, by=request.user)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return back
        told = []
        if rule.webhook_url:
            told.append(f"the webhook answered HTTP {outcome.webhook_status}"
                        if outcome.webhook_status is not None else "the webhook gave no answer")
        if rule.recipients:
            told.append(f"email went to {outcome.emailed} address"
                        f"{'es' if outcome.emailed != 1 else ''}")
        summary = "Test alert sent: " + "; ".join(told) + "."
        if outcome.error:
            messages.error(request, f"{summary} Not delivered: {outcome.error}")
        else:
            messages.success(request, summary)
        return back

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
