"""Forgetting visitors and the evidence of it (updates/forgetting.py, privacy.py,
lifecycle_reports.py), for administrators and data protection officers.

- Privacy requests: a read-only list and page (state, who, when, regulation, counts per table,
  Adobe's job id and answers), a plain-text report per request, a monthly report per
  connection, and on a request's page: file Adobe's part (again) with the identity, and lift
  the suppression (with a reason). No page ever shows an identity: only its type.
- "Forget a visitor": a form (connection, identity type, identity, regulation) that calls
  forgetting.visitor_forget and shows the new request with its counts.
- Retention runs: read-only, counts per table.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from updates import forgetting, lifecycle_reports, privacy
from updates.models import IdentityType, PrivacyRequest, RetentionRun, TargetConnection
from updates.permissions import PERM_FORGET, PERM_LIFT_SUPPRESSION, refusal

from .base import OfferedLookupsAdmin
from .pages import forbidden, page


class ForgetForm(forms.Form):
    connection = forms.ModelChoiceField(queryset=TargetConnection.objects.order_by("label"))
    identity_type = forms.ChoiceField(choices=IdentityType.choices)
    identity = forms.CharField(max_length=256, strip=False, widget=forms.TextInput(
        attrs={"autocomplete": "off", "size": 50}),
        help_text="Exactly as staged. It is not stored: only its keyed hash is kept.")
    regulation = forms.ChoiceField(choices=PrivacyRequest.Regulation.choices)
    confirm = forms.BooleanField(
        label="I understand this cannot be undone",
        help_text="Every stored value of this visitor is erased here, and Target is asked to "
                  "delete everything it holds for the identity.")


class IdentityForm(forms.Form):
    identity = forms.CharField(max_length=256, strip=False, widget=forms.TextInput(
        attrs={"autocomplete": "off", "size": 50}),
        help_text="The forgotten identity again (checked against its kept hash, not stored).")


class LiftForm(forms.Form):
    comment = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}),
                              help_text="Why this visitor may be staged again.")


def _counts_html(counts: dict) -> str:
    if not counts:
        return "nothing stored"
    return format_html_join(", ", "{} {}", ((n, table) for table, n in sorted(counts.items())))


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(OfferedLookupsAdmin):
    list_display = ["__str__", "connection", "identity_type", "regulation", "state",
                    "requested_by", "requested_at", "purged", "adobe_job_id", "suppression"]
    list_filter = ["state", "regulation", "connection"]
    ordering = ["-requested_at", "-id"]
    change_form_template = "admin/updates/privacyrequest/change_form.html"
    change_list_template = "admin/updates/privacyrequest/change_list.html"
    fields = ["connection", "identity_type", "regulation", "state", "note", "requested_by",
              "requested_at", "cancelled_updates", "purged", "filed_at", "filed_by",
              "filing_started_at",
              "adobe_job_id", "answers", "polls", "next_poll_at", "poll_started_at", "finished_at",
              "suppression"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a request is made by forgetting a visitor

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # evidence

    @admin.display(description="Purged here")
    def purged(self, obj: PrivacyRequest) -> str:
        return _counts_html(obj.purge_counts)

    @admin.display(description="Adobe's answers")
    def answers(self, obj: PrivacyRequest) -> str:
        rows = [(a.get("at", "")[:19].replace("T", " "), a.get("kind", ""),
                 a.get("http_status") or "—", a.get("status", ""), a.get("message", ""))
                for a in obj.adobe_answers or []]
        if not rows:
            return "none yet"
        return format_html("<ul>{}</ul>", format_html_join(
            "", "<li>{} {}: HTTP {} {} {}</li>", rows))

    @admin.display(description="Suppression")
    def suppression(self, obj: PrivacyRequest) -> str:
        if obj.suppressing:
            return "active"
        return f"lifted {obj.suppression_lifted_at:%Y-%m-%d}"

    def get_urls(self):
        own = [
            path("forget/", self.admin_site.admin_view(self.forget_view),
                 name="updates_privacyrequest_forget"),
            path("monthly/", self.admin_site.admin_view(self.monthly_view),
                 name="updates_privacyrequest_monthly"),
            path("<int:pk>/report/", self.admin_site.admin_view(self.report_view),
                 name="updates_privacyrequest_report"),
            path("<int:pk>/file/", self.admin_site.admin_view(self.file_view),
                 name="updates_privacyrequest_file"),
            path("<int:pk>/lift/", self.admin_site.admin_view(self.lift_view),
                 name="updates_privacyrequest_lift"),
        ]
        return own + super().get_urls()

    def changeform_view(self, request: HttpRequest, object_id=None, form_url="",
                        extra_context=None):
        obj = self.get_object(request, object_id) if object_id else None
        extra = {"may_forget": request.user.has_perm(PERM_FORGET),
                 "may_lift": request.user.has_perm(PERM_LIFT_SUPPRESSION),
                 "filable": obj is not None and obj.state in privacy.FILABLE,
                 "identity_form": IdentityForm(), "lift_form": LiftForm()}
        return super().changeform_view(request, object_id, form_url,
                                       {**(extra_context or {}), **extra})

    def forget_view(self, request: HttpRequest) -> HttpResponse:
        title = "Forget a visitor"
        if not request.user.has_perm(PERM_FORGET):
            return forbidden(request, title, refusal(PERM_FORGET))
        form = ForgetForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                done = forgetting.visitor_forget(
                    connection=data["connection"], identity_type=data["identity_type"],
                    identity=data["identity"], regulation=data["regulation"], by=request.user)
            except ValidationError as error:
                for message in error.messages:
                    form.add_error(None, message)
            else:
                self.message_user(request, format_html(
                    "Privacy request #{}: {}. Cancelled {} open updates; purged {}.", done.pk,
                    done.get_state_display(), done.cancelled_updates,
                    _counts_html(done.purge_counts)), messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:updates_privacyrequest_change", args=[done.pk]))
        return page(request, title, "admin/updates/privacyrequest/forget.html",
                    {"form": form, "opts": self.model._meta})

    def file_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        def file(obj: PrivacyRequest, data: dict) -> str:
            obj = privacy.privacy_request_file(request=obj, by=request.user,
                                               identity=data["identity"])
            return f"{obj}: {obj.note}"

        return self._act(request, pk, IdentityForm, file)

    def lift_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        def lift(obj: PrivacyRequest, data: dict) -> str:
            forgetting.suppression_lift(request=obj, by=request.user, comment=data["comment"])
            return "The suppression is lifted: this visitor may be staged again."

        return self._act(request, pk, LiftForm, lift)

    def _act(self, request: HttpRequest, pk: int, form_class, act) -> HttpResponse:
        """A POST-only button of a request's page: the form, the service (which checks the
        right), its message, back to the page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = get_object_or_404(PrivacyRequest, pk=pk)
        form = form_class(request.POST)
        if form.is_valid():
            try:
                self.message_user(request, act(obj, form.cleaned_data), messages.INFO)
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:updates_privacyrequest_change", args=[pk]))

    def report_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            return forbidden(request, "Privacy request report", "You may not see privacy "
                                                                "requests.")
        obj = get_object_or_404(PrivacyRequest, pk=pk)
        return _text(lifecycle_reports.request_report(obj), f"privacy-request-{obj.pk}.txt")

    def monthly_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return forbidden(request, "Monthly erasure report", "You may not see privacy "
                                                                "requests.")
        matched = re.fullmatch(r"(\d{4})-(\d{2})", request.GET.get("month", ""))
        connection = TargetConnection.objects.filter(
            pk=request.GET.get("connection") if str(request.GET.get("connection", "")).isdigit()
            else None).first()
        if not matched or connection is None or not 1 <= int(matched[2]) <= 12:
            return HttpResponse("Choose a connection and a month (YYYY-MM).", status=400,
                                content_type="text/plain; charset=utf-8")
        text = lifecycle_reports.monthly_report(connection, year=int(matched[1]),
                                                month=int(matched[2]))
        return _text(text, f"erasures-{connection.client_code}-{matched[0]}.txt")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        extra = {"may_forget": request.user.has_perm(PERM_FORGET),
                 "connections": TargetConnection.objects.order_by("label")}
        return super().changelist_view(request, {**(extra_context or {}), **extra})


def _text(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


@admin.register(RetentionRun)
class RetentionRunAdmin(OfferedLookupsAdmin):
    list_display = ["__str__", "connection", "started_at", "finished_at", "chunks", "purged",
                    "complete"]
    list_filter = ["connection", "complete"]
    readonly_fields = ["connection", "started_at", "finished_at", "chunks", "purged", "complete"]
    fields = readonly_fields

    @admin.display(description="Purged")
    def purged(self, obj: RetentionRun) -> str:
        return _counts_html(obj.counts)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
