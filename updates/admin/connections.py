"""Target connections, for administrators. The bearer token and the Adobe client secret are
write-only: the form never renders the stored value, an empty field keeps it, a checkbox clears
it; no list, export or log line carries it. With Adobe credentials the page says where the token
comes from, when it expires and when it was last renewed, and offers a forced rotation behind a
confirmation page that says what it breaks."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import formats

from updates import credentials, selectors
from updates.connections import connection_save
from updates.models import TargetConnection, validate_bearer_token
from .base import OfferedLookupsAdmin, parse_id
from .pages import page


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
    new_client_secret = forms.CharField(
        label="Client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password",
                                                              "size": 60}),
        help_text="The OAuth Server-to-Server credential's client secret (Adobe Developer "
                  "Console). Leave empty to keep the current one; it is never shown again.",
    )
    clear_credentials = forms.BooleanField(
        label="Remove Adobe credentials",
        required=False,
        help_text="Remove the client ID, secret, org and tenant; the pasted token (if any) is "
                  "used again.",
    )

    # The model's help texts write <clientCode>, which the admin (rendering help as HTML) hides.
    base_url = forms.URLField(
        label="Base URL", required=False, assume_scheme="https",
        help_text="Leave empty for https://{clientCode}.tt.omtrdc.net. Set it for the local "
                  "emulator or a proxy, e.g. http://127.0.0.1:8765.")

    # Empty: Adobe's default again.
    ims_token_url = forms.URLField(
        label="IMS token endpoint", required=False, assume_scheme="https",
        help_text="Adobe IMS's token endpoint; change it only for tests or another region. "
                  "Empty: https://ims-na1.adobelogin.com/ims/token/v3.")
    ims_scopes = forms.CharField(
        label="IMS scopes", required=False, max_length=500,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="Comma-separated, as the Developer Console lists them for the credential. "
                  "Empty: Target's (openid, AdobeID, target_sdk, …).")
    admin_api_url = forms.URLField(
        label="Target Admin API", required=False, assume_scheme="https",
        help_text="Target's Admin API; change it only for tests or a proxy. Empty: "
                  "https://mc.adobe.io.")

    class Meta:
        model = TargetConnection
        fields = ["label", "client_code", "base_url", "quota_limit", "active", "verify_after_send",
                  "skip_unchanged", "drop_unchanged_attributes", "adobe_client_id",
                  "adobe_org_id", "target_tenant", "ims_token_url", "ims_scopes",
                  "admin_api_url", "retain_values_days", "retain_reads_days",
                  "retain_records_days", "send_route", "bulk_row_threshold", "pc_id_bulk"]
        labels = {
            "label": "Label",
            "client_code": "Client code",
            "base_url": "Base URL",
            "quota_limit": "Quota limit (rolling 24 h)",
            "active": "Active",
            "verify_after_send": "Verify after sending",
            "skip_unchanged": "Skip unchanged updates",
            "drop_unchanged_attributes": "Leave out unchanged attributes",
            "adobe_client_id": "Client ID",
            "adobe_org_id": "IMS org ID",
            "target_tenant": "Target tenant",
            "ims_token_url": "IMS token endpoint",
            "ims_scopes": "IMS scopes",
            "admin_api_url": "Target Admin API",
            "retain_values_days": "Keep values (days)",
            "retain_reads_days": "Keep profile reads and answers (days)",
            "retain_records_days": "Keep purged records (days)",
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

    def clean_ims_token_url(self) -> str:
        return self.cleaned_data["ims_token_url"] or _default("ims_token_url")

    def clean_admin_api_url(self) -> str:
        return self.cleaned_data["admin_api_url"] or _default("admin_api_url")

    def clean_ims_scopes(self) -> str:
        return self.cleaned_data["ims_scopes"] or _default("ims_scopes")

    def clean_new_client_secret(self) -> str:
        secret = self.cleaned_data["new_client_secret"]
        if secret:
            validate_bearer_token(secret)  # visible ASCII; the message never repeats it
        return secret

    def clean(self) -> dict:
        data = super().clean()
        if data.get("new_token") and data.get("clear_token"):
            raise ValidationError("Either enter a new token or clear the current one, not both.",
                                  code="token_conflict")
        if data.get("new_client_secret") and data.get("clear_credentials"):
            raise ValidationError("Either enter a new client secret or remove the credentials, "
                                  "not both.", code="credentials_conflict")
        return data

    def _post_clean(self) -> None:
        # The model's clean (credentials complete or absent) sees the secret as it will be.
        if self.cleaned_data.get("new_client_secret"):
            self.instance.adobe_client_secret = self.cleaned_data["new_client_secret"]
        if self.cleaned_data.get("clear_credentials"):
            for field in ("adobe_client_id", "adobe_client_secret", "adobe_org_id",
                          "target_tenant"):
                setattr(self.instance, field, "")
                self.cleaned_data[field] = ""
        super()._post_clean()

def _default(field: str) -> str:
    return TargetConnection._meta.get_field(field).default


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
    readonly_fields = ("token_status", "endpoint", "token_source", "token_expires",
                       "token_renewed", "renewal_failure", "created_at", "updated_at")
    fieldsets = [
        (None, {"fields": ["label", "client_code", "active"]}),
        ("Where requests go", {"fields": ["base_url", "endpoint", "quota_limit"]}),
        ("Adobe credentials (ProfileOps obtains and renews the token)", {
            "fields": ["adobe_client_id", "new_client_secret", "adobe_org_id", "target_tenant",
                       "ims_token_url", "ims_scopes", "admin_api_url", "clear_credentials"],
            "description": "An OAuth Server-to-Server credential from the Adobe Developer Console "
                           "with Target in its product profile. With it, nobody pastes or renews "
                           "a token: ProfileOps fetches Target's profile token, renews it before "
                           "it expires, and shares it with every worker. The secret is "
                           "write-only and encrypted at rest.",
        }),
        ("The profile token", {
            "fields": ["token_source", "token_expires", "token_renewed", "renewal_failure",
                       "token_status", "new_token", "clear_token"],
            "description": "Without Adobe credentials, the pasted token is sent. It is "
                           "write-only: stored encrypted, sent to Target, and never displayed, "
                           "exported or logged.",
        }),
        ("Closing the loop with Target", {
            "fields": ["verify_after_send", "skip_unchanged", "drop_unchanged_attributes"],
        }),
        ("Retention of customer data", {
            "fields": ["retain_values_days", "retain_reads_days", "retain_records_days"],
            "description": "After these many days the purge (every hour) replaces identities "
                           "and values with keyed hashes, then deletes the record. Empty: kept "
                           "for ever.",
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

    @admin.display(description="token comes from")
    def token_source(self, obj: TargetConnection | None) -> str:
        if obj is None or obj.pk is None:
            return "—"
        if not obj.has_adobe_credentials:
            return "the pasted token" if obj.has_token else "no token (sent without one)"
        state = selectors.credential_state(obj)
        if state is None or not state.profile_source:
            return "Adobe credentials (no token obtained yet: the first send or read fetches it)"
        return f"Adobe credentials: {state.get_profile_source_display().lower()}"

    @admin.display(description="token expires")
    def token_expires(self, obj: TargetConnection | None) -> str:
        return _credential_time(obj, "profile_expires_at")

    @admin.display(description="last renewed")
    def token_renewed(self, obj: TargetConnection | None) -> str:
        return _credential_time(obj, "renewed_at")

    @admin.display(description="renewal problem")
    def renewal_failure(self, obj: TargetConnection | None) -> str:
        state = selectors.credential_state(obj)
        if state is None or state.failing_since is None:
            return "none"
        since = formats.date_format(state.failing_since, "DATETIME_FORMAT")
        return f"failing since {since}: {state.failure}"

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
        # Through the service: permission checked there, audit row (never a secret) written.
        data = form.cleaned_data
        connection_save(connection=obj, by=request.user,
                        new_token=data.get("new_token", ""),
                        clear_token=bool(data.get("clear_token")),
                        new_client_secret=data.get("new_client_secret", ""),
                        clear_credentials=bool(data.get("clear_credentials")))
        if data.get("clear_token"):
            messages.info(request, f"The bearer token of {obj.label} was removed.")
        elif data.get("new_token"):
            messages.info(request, f"A new bearer token is stored for {obj.label}.")
        if data.get("clear_credentials"):
            messages.info(request, f"The Adobe credentials of {obj.label} were removed.")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        connection = self.get_object(request, object_id)
        extra = {"can_rotate_token": bool(connection and connection.has_adobe_credentials
                                          and self.has_change_permission(request, connection))}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def get_urls(self):
        own = [path("<path:object_id>/rotate-token/", self.admin_site.admin_view(self.rotate_view),
                    name="updates_targetconnection_rotate_token")]
        return own + super().get_urls()

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what a forced rotation breaks, and the button; POST: rotate now."""
        connection = get_object_or_404(TargetConnection, pk=parse_id(object_id) or -1)
        if not self.has_change_permission(request, connection):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:updates_targetconnection_change",
                                            args=[connection.pk]))
        if request.method != "POST":
            return page(request, f"Rotate the profile token of {connection.label}?",
                        "admin/updates/targetconnection/rotate_token.html",
                        {"connection": connection, "opts": self.model._meta,
                         "state": selectors.credential_state(connection)})
        try:
            credentials.profile_token_rotate(connection=connection, by=request.user)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return back
        messages.success(request, f"Target minted a new profile token for {connection.label}; "
                                  "ProfileOps uses it from now on.")
        return back


def _credential_time(connection: TargetConnection | None, field: str) -> str:
    """A time of the connection's shared profile token (CredentialState), or a dash."""
    state = selectors.credential_state(connection)
    at = None if state is None else getattr(state, field)
    return "—" if at is None else formats.date_format(at, "DATETIME_FORMAT")
