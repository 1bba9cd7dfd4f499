"""Target connections, for administrators. The bearer token is write-only: the form never
renders the stored value, an empty field keeps it, a checkbox clears it; no list, export or log
line carries it."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from updates.connections import connection_save
from updates.models import TargetConnection, validate_bearer_token
from .base import OfferedLookupsAdmin


class TargetConnectionForm(forms.ModelForm):
    new_token = forms.CharField(
        label="Bearer token",
        required=False,
        strip=True,  # a pasted token often carries a trailing newline, which no header may hold
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password",
                                                              "size": 60}),
        help_text="Sent as the header 'Authorization: Bearer' followed by the token when Target "
                  "requires authentication for the profile APIs. Leave empty to keep the current "
                  "token; it is never shown again.",
    )
    clear_token = forms.BooleanField(
        label="Clear token",
        required=False,
        help_text="Remove the stored token; requests are then sent without authentication.",
    )

    # The model's help texts write <clientCode>, which the admin (rendering help as HTML) hides.
    base_url = forms.URLField(
        label="Base URL", required=False, assume_scheme="https",
        help_text="Leave empty for https://{clientCode}.tt.omtrdc.net. Set it for the local "
                  "emulator or a proxy, e.g. http://127.0.0.1:8765.")

    class Meta:
        model = TargetConnection
        fields = ["label", "client_code", "base_url", "quota_limit", "active", "verify_after_send",
                  "skip_unchanged", "drop_unchanged_attributes", "send_route",
                  "bulk_row_threshold", "pc_id_bulk"]
        labels = {
            "label": "Label",
            "client_code": "Client code",
            "base_url": "Base URL",
            "quota_limit": "Quota limit (rolling 24 h)",
            "active": "Active",
            "verify_after_send": "Verify after sending",
            "skip_unchanged": "Skip unchanged updates",
            "drop_unchanged_attributes": "Leave out unchanged attributes",
            "send_route": "Route of decided batches",
            "bulk_row_threshold": "Bulk threshold (updates)",
            "pc_id_bulk": "mboxPC updates in bulk",
        }
        help_texts = {
            "client_code": "Target's client code, as in https://{clientCode}.tt.omtrdc.net.",
        }

    # The bulk route's settings keep their current value (or default) when a form leaves them
    # out, as a form posted before they existed does.
    _KEPT_WHEN_EMPTY = ("send_route", "bulk_row_threshold", "pc_id_bulk")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in self._KEPT_WHEN_EMPTY:
            self.fields[name].required = False

    def _kept(self, name: str):
        value = self.cleaned_data.get(name)
        if value in (None, ""):
            current = getattr(self.instance, name, None)
            return current if current not in (None, "") else \
                TargetConnection._meta.get_field(name).get_default()
        return value

    def clean_send_route(self) -> str:
        return self._kept("send_route")

    def clean_bulk_row_threshold(self) -> int:
        return self._kept("bulk_row_threshold")

    def clean_pc_id_bulk(self) -> str:
        return self._kept("pc_id_bulk")

    def clean_new_token(self) -> str:
        token = self.cleaned_data["new_token"]
        if token:
            validate_bearer_token(token)  # the model's rule; its message never repeats the token
        return token

    def clean(self) -> dict:
        data = super().clean()
        if data.get("new_token") and data.get("clear_token"):
            raise ValidationError("Either enter a new token or clear the current one, not both.",
                                  code="token_conflict")
        return data

@admin.register(TargetConnection)
class TargetConnectionAdmin(OfferedLookupsAdmin):
    """Administrators only: the model permissions below are held by no role but superusers (and
    whoever an administrator grants them to explicitly)."""

    form = TargetConnectionForm
    list_display = ("label", "client_code", "endpoint", "quota", "token_status", "active")

    class Media:
        css = {"all": ["updates/admin.css"]}  # e.g. a quota field wide enough for 1,000,000

    list_filter = ("active",)
    search_fields = ("label", "client_code")
    readonly_fields = ("token_status", "endpoint", "created_at", "updated_at")
    fieldsets = [
        (None, {"fields": ["label", "client_code", "active"]}),
        ("Where requests go", {"fields": ["base_url", "endpoint", "quota_limit"]}),
        ("Authentication", {
            "fields": ["token_status", "new_token", "clear_token"],
            "description": "The token is write-only: it is stored, sent to Target, and never "
                           "displayed, exported or logged.",
        }),
        ("Closing the loop with Target", {
            "fields": ["verify_after_send", "skip_unchanged", "drop_unchanged_attributes"],
        }),
        ("Bulk Profile Update API", {
            "fields": ["send_route", "bulk_row_threshold", "pc_id_bulk"],
            "description": "Large decided batches can go through Target's bulk API, which does "
                           "not use the single quota; every row is still read back. See the "
                           "user guide's page on the bulk route.",
        }),
        ("Record", {"classes": ["collapse"], "fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="quota limit", ordering="quota_limit")
    def quota(self, obj: TargetConnection) -> str:
        return f"{obj.quota_limit:,}"  # 1,000,000: a list's numbers carry thousands separators

    @admin.display(description="token")
    def token_status(self, obj: TargetConnection | None) -> str:
        if obj is None or obj.pk is None:
            return "—"
        return "set" if obj.has_token else "not set"

    @admin.display(description="endpoint")
    def endpoint(self, obj: TargetConnection | None) -> str:
        if obj is None or not obj.client_code:
            return "—"
        return f"{obj.effective_base_url}/m2/{obj.client_code}/profile/update"

    def has_delete_permission(self, request: HttpRequest,
                              obj: TargetConnection | None = None) -> bool:
        # Deleting would drop quota history (and is blocked by any update anyway): deactivate.
        return False

    def save_model(self, request: HttpRequest, obj: TargetConnection, form, change: bool) -> None:
        # Through the service: permission checked there, audit row (never the token) written.
        connection_save(connection=obj, by=request.user,
                        new_token=form.cleaned_data.get("new_token", ""),
                        clear_token=bool(form.cleaned_data.get("clear_token")))
        if form.cleaned_data.get("clear_token"):
            messages.info(request, f"The bearer token of {obj.label} was removed.")
        elif form.cleaned_data.get("new_token"):
            messages.info(request, f"A new bearer token is stored for {obj.label}.")
