"""The profile update admin: a list that stays fast with a million rows, bulk workflow actions,
a staging form built from the connection's mappings, and a change page that shows exactly what
will be sent and everything that happened to the update.

Thin by design: every write goes through workflow.py, which checks permissions itself; hiding
an action or a button here is convenience, not control.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Callable, Iterable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.widgets import AdminDateWidget, AdminSplitDateTime
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import BooleanField, QuerySet, Value
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from updates import (attention, decisions, open_changes, permissions, selectors, sending,
                     verification, workflow)
from updates.errors import OPEN_CONFLICT
from updates.forms import StagingForm, staging_form_class

from . import timeline
from .base import OfferedLookupsAdmin, parse_id
from .exports import export_selected_csv, export_selected_xlsx
from updates.models import ProfileUpdate, TargetConnection, UpdateStatus

S = UpdateStatus
# One bulk action or queue decision handles at most this many updates: each is its own
# transaction, and a request must finish in reasonable time even with "select all" over 1M rows.
BULK_LIMIT = 1000
# Refusals listed one by one; beyond this, the rest are summarised by id.
REFUSALS_LISTED = 50
COUNT_CAP = 10_000


# --- a paginator that never counts the whole table --------------------------------------------

class CappedPaginator(Paginator):
    """Counts at most `cap` + 1 rows (a LIMITed subquery), so a page of a million-row list costs
    the same as a page of a small one. Pages beyond the cap are not offered: deep paging through
    a million rows is what filters and search are for."""

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        if not isinstance(self.object_list, QuerySet):
            return len(self.object_list)
        n, self.capped = selectors.capped_count(self.object_list, cap=self.cap)
        return n

    capped = False


# --- reporting what a bulk operation did -----------------------------------------------------

def _ids(updates: Iterable[ProfileUpdate], limit: int = 20) -> str:
    ids = [f"#{u.pk}" for u in updates]
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _refusal_text(update: ProfileUpdate, message: str) -> str:
    # Service messages usually name the update already; make sure every line does.
    return message if f"#{update.pk}" in message else f"Update #{update.pk}: {message}"


def report_outcome(request: HttpRequest, outcome: workflow.BulkOutcome, *, verb: str) -> None:
    """One success line, then every refused update and why (the first REFUSALS_LISTED of them,
    then the rest by id)."""
    if outcome.done:
        n = len(outcome.done)
        messages.success(request, f"{verb.capitalize()} {n} update{'s' if n != 1 else ''}: "
                                  f"{_ids(outcome.done)}.")
    if outcome.refused:
        n = len(outcome.refused)
        messages.error(request, f"{n} update{'s were' if n != 1 else ' was'} not {verb}:")
        for update, message in outcome.refused[:REFUSALS_LISTED]:
            messages.error(request, _refusal_text(update, message))
        rest = outcome.refused[REFUSALS_LISTED:]
        if rest:
            messages.error(request, f"…and {len(rest)} more refused: "
                                    f"{_ids((u for u, _ in rest), limit=200)}.")
    if not outcome.done and not outcome.refused:
        messages.warning(request, f"Nothing was {verb}: no updates were selected.")


def report_refusal(request: HttpRequest, error: ValidationError) -> None:
    """A decision refused as a whole: why, and for a stale one (errors.StaleBatch) the
    first updates that differ from what was shown."""
    messages.warning(request, " ".join(error.messages))
    for detail in getattr(error, "details", [])[:10]:
        messages.warning(request, detail)


def bounded(request: HttpRequest, updates: QuerySet[ProfileUpdate]) -> list[ProfileUpdate] | None:
    """The selected updates in id order, or None (with a message) when there are too many."""
    chosen = list(updates.select_related("connection").order_by("id")[: BULK_LIMIT + 1])
    if len(chosen) > BULK_LIMIT:
        messages.error(request, f"More than {BULK_LIMIT:,} updates are selected; act on at most "
                                f"{BULK_LIMIT:,} at a time (narrow the list with filters). "
                                "Nothing was changed.")
        return None
    return chosen


# --- forms ---------------------------------------------------------------------------------

class RejectForm(forms.Form):
    comment = forms.CharField(
        label="Reason for rejecting",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Required. The operator sees it on each update's timeline.",
        max_length=2000,
        error_messages={"required": "A rejection needs a comment saying why."},
    )

    def clean_comment(self) -> str:
        comment = self.cleaned_data["comment"].strip()
        if not comment:
            raise ValidationError("A rejection needs a comment saying why.",
                                  code="comment_required")
        return comment


class ChooseConnectionForm(forms.Form):
    connection = forms.ModelChoiceField(
        queryset=TargetConnection.objects.filter(active=True).order_by("label"),
        label="Target connection",
        help_text="The Adobe Target account the update goes to; its attribute mappings decide "
                  "which fields the next step shows.",
        empty_label=None,
    )


class LabelledSplitDateTime(AdminSplitDateTime):
    """The admin's date + time inputs, accessible: Django prints their "Date:" / "Time:" captions
    as plain text and ties neither the field's label nor its help text to them. Here the captions
    are <label>s, the field's label names the date input, and both inputs point at the help."""

    def id_for_label(self, id_: str) -> str:
        return f"{id_}_0" if id_ else ""  # also the admin's help text id: "<this>_helptext"

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        help_id = f"{self.id_for_label((attrs or {}).get('id', ''))}_helptext"
        for key, sub in zip(("date_label", "time_label"), context["widget"]["subwidgets"]):
            if sub["attrs"].get("id"):
                sub["attrs"].setdefault("aria-describedby", help_id)
                context[key] = format_html('<label for="{}">{}</label>', sub["attrs"]["id"],
                                           context[key])
        return context


class MappingSplitDateTime(LabelledSplitDateTime):
    """The same date + time inputs for a datetime mapping, so every date and time on the update
    form looks and works alike. A mapping's value is text, not a datetime: the two inputs are
    joined as YYYY-MM-DDTHH:MM:SS (UTC, what the mapping parses), and a single posted value (a
    script posting the field's own name) is taken as it is."""

    def decompress(self, value: Any) -> list[Any]:
        if isinstance(value, str):
            date, _, time = value.replace(" ", "T", 1).partition("T")
            return [date, time.removesuffix("Z")]
        return super().decompress(value)

    def value_from_datadict(self, data: Any, files: Any, name: str) -> str:
        if name in data:
            return data.get(name)
        date, time = ((part or "").strip()
                      for part in super().value_from_datadict(data, files, name))
        return f"{date}T{time}" if date or time else ""


# The admin's date widgets for mapping fields (updates.forms gives other callers native inputs).
ADMIN_MAPPING_WIDGETS = {"date": AdminDateWidget, "datetime": MappingSplitDateTime}


class AdminStagingForm(StagingForm):
    """Stage or edit an update in the admin: the one staging form (updates.forms) with the
    admin's date widgets. Validating it calls workflow.update_stage / update_edit, so every rule
    the services apply — and every refusal — lands on this form as an error, never a 500."""

    user: Any = None  # set per request by ProfileUpdateAdmin.get_form
    # Set per request when the posted form must be shown again, not saved (a workflow button
    # pressed with unsaved changes): validation then fails with this message and saves nothing.
    refuse_with: str = ""

    class Meta(StagingForm.Meta):
        widgets = {"not_before": LabelledSplitDateTime}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.previous_status = self.instance.status if self.instance.pk else None
        for name, mapping in self.mapping_fields.items():
            widget_class = ADMIN_MAPPING_WIDGETS.get(mapping.value_type)
            if widget_class is not None and name in self.fields:
                self.fields[name].widget = widget_class()
                self.fields[name].widget.is_required = self.fields[name].required
        if self.instance.pk is None:
            self.instance.connection = self.connection  # shown read-only on the add page
        else:
            for name, value in self.initial_for(self.instance).items():
                if name in self.mapping_fields:
                    self.initial.setdefault(name, value)

    def _post_clean(self) -> None:
        # Model validation is the services' job; call them once every field and the shared
        # content checks (updates.forms) are fine.
        if self.refuse_with:
            self.add_error(None, self.refuse_with)
        if self._errors:
            return
        values = self.service_kwargs()
        try:
            if self.instance.pk is None:
                self.instance = workflow.update_stage(connection=self.connection, by=self.user,
                                                      **values)
            else:
                workflow.update_edit(update=self.instance, by=self.user, **values)
        except ValidationError as error:
            self._absorb(error)

    def _absorb(self, error: ValidationError) -> None:
        if not hasattr(error, "error_dict"):
            for message in error.messages:
                self.add_error(None, message)
            return
        prefixes = {f"{m.source_name}:": name for name, m in self.mapping_fields.items()}
        for key, errors in error.error_dict.items():
            for message in ValidationError(errors).messages:
                target_field = key if key in self.fields else None
                if key == "attributes":
                    target_field = next((n for p, n in prefixes.items() if message.startswith(p)),
                                        None)
                self.add_error(target_field, message)


def _utc_display(field: str, description: str) -> Callable[[Any, ProfileUpdate], str]:
    """A read-only field of the update page showing a moment in the timeline's one format."""
    @admin.display(description=description)
    def show(self, obj: ProfileUpdate) -> str:
        return timeline.utc_text(getattr(obj, field))

    return show


def update_form_class(connection: TargetConnection, user: Any,
                      update: ProfileUpdate | None = None) -> type[forms.ModelForm]:
    form_class = staging_form_class(connection, base=AdminStagingForm, update=update)
    form_class.user = user
    return form_class


# --- list filters --------------------------------------------------------------------------

class CreatorFilter(admin.SimpleListFilter):
    title = "creator"
    parameter_name = "created_by"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        # Staff users only (people who can stage); never a DISTINCT over the updates table.
        users = get_user_model().objects.filter(is_staff=True).order_by("username")[:200]
        return [(str(u.pk), u.get_username()) for u in users]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value:
            user_id = parse_id(value)
            return queryset.filter(created_by_id=user_id) if user_id else queryset.none()
        return queryset


class WaitingFilter(admin.SimpleListFilter):
    """Approved updates that wait for something: a scheduled retry, or room in the quota
    window. The dashboard's tiles count through the same functions (attention.WAITING)."""

    title = "waiting"
    parameter_name = "waiting"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(key, label) for key, label in attention.WAITING.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value not in attention.WAITING:
            return queryset.none() if value else queryset
        chosen = attention.waiting(queryset, value)
        if value == "deferred":  # each row of this list is marked in its status cell
            chosen = chosen.annotate(waiting_for_quota=Value(True, output_field=BooleanField()))
        return chosen


def _waiting_word(obj: ProfileUpdate) -> str:
    """" · retrying" / " · deferred" after an approved update's status where the phone shows it."""
    if obj.status != S.APPROVED:
        return ""
    if obj.next_attempt_at is not None:
        return " · retrying"
    return " · deferred" if getattr(obj, "waiting_for_quota", False) else ""


# Characters of the last error shown in a failed or retrying row (the change page has it all).
REASON_CHARS = 140


# --- the admin -----------------------------------------------------------------------------

@admin.register(ProfileUpdate)
class ProfileUpdateAdmin(OfferedLookupsAdmin):
    list_display = ("id", "identity_cell", "connection_label", "status_badge", "at_target_cell",
                    "attribute_names", "created", "sent_at", "next_attempt")
    list_display_links = ("id", "identity_cell")
    list_filter = ("status", WaitingFilter, "verification_state", "connection", "identity_type",
                   CreatorFilter,
                   ("created_at", admin.DateFieldListFilter),
                   ("acknowledged_at", admin.DateFieldListFilter))
    list_select_related = ("connection", "created_by")
    search_fields = ("identity",)  # the lookup itself is selectors.search_identity
    # An import's result page links to ?import_job=<id>: its updates, whatever their reason
    # (a hand-staged update may carry the same reason text). ?reason=… stays for links by hand.
    changelist_extra_params = ("reason", "import_job")
    search_help_text = ("Identity, exactly (case matters). End with * to match the beginning, "
                        "e.g. customer-12*; #123 finds update 123.")
    ordering = ("-id",)
    sortable_by = ("id", "created")
    list_per_page = 100
    list_max_show_all = 200
    paginator = CappedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ("submit_selected", "approve_selected", "reject_selected", "cancel_selected",
               "requeue_selected", export_selected_csv, export_selected_xlsx)
    readonly_fields = ("connection_display", "status", "created_by", "created_at_utc",
                       "last_edited_by", "last_edited_at_utc", "submitted_at_utc", "decided_by",
                       "decided_at_utc", "decision_comment", "acknowledged_at_utc",
                       "attempts_total", "next_attempt_at_utc", "last_error")
    change_list_template = "admin/updates/profileupdate/change_list.html"

    class Media:
        css = {"all": ["updates/admin.css"]}

    # --- permissions (the services check again) -----------------------------------------

    def _editable(self, obj: ProfileUpdate | None) -> bool:
        return obj is None or obj.status not in workflow.READ_ONLY_STATES

    def has_change_permission(self, request: HttpRequest, obj: ProfileUpdate | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._editable(obj)

    def has_delete_permission(self, request: HttpRequest, obj: ProfileUpdate | None = None) -> bool:
        return False  # an update's history is kept: cancel it instead

    def has_submit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.PERM_SUBMIT)

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.PERM_APPROVE)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.PERM_CANCEL)

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.PERM_REQUEUE)

    # --- list ----------------------------------------------------------------------------

    @admin.display(description="identity")
    def identity_cell(self, obj: ProfileUpdate) -> str:
        # The type as the parameter name itself: short, and what Target receives. The status is
        # repeated here for phones, where the status column is out of sight (admin.css).
        return format_html('<span class="po-value">{}</span><br><span class="po-muted">{}</span>'
                           ' <span class="po-status po-status-{} po-phone-status">{}{}</span>',
                           obj.identity, obj.identity_type, obj.status, obj.get_status_display(),
                           _waiting_word(obj))

    @admin.display(description="connection", ordering="connection__label")
    def connection_label(self, obj: ProfileUpdate) -> str:
        return obj.connection.label

    @admin.display(description="status")
    def status_badge(self, obj: ProfileUpdate) -> str:
        """The status, and for what waits or failed, why: a retry's attempt and time, a quota
        deferral (in the "deferred by quota" list), a failure's reason — all from the row."""
        badge = format_html('<span class="po-status po-status-{}">{}</span>', obj.status,
                            obj.get_status_display())
        notes = []
        if obj.status == S.APPROVED and obj.next_attempt_at is not None:
            notes.append(format_html(
                '<span class="po-waiting po-waiting-retrying">· retrying (attempt {}, next '
                '<span class="po-nowrap">{} UTC</span>)</span>', obj.attempt_count + 1,
                obj.next_attempt_at.strftime("%Y-%m-%d %H:%M")))
        if obj.status == S.APPROVED and getattr(obj, "waiting_for_quota", False):
            notes.append(mark_safe('<span class="po-waiting po-waiting-deferred">· deferred '
                                   'by quota (the window is full)</span>'))
        if obj.status in (S.FAILED, S.APPROVED) and obj.last_error:
            short = Truncator(" ".join(obj.last_error.split())).chars(REASON_CHARS)
            notes.append(format_html('<span class="po-reason po-muted" title="{}">{}</span>',
                                     obj.last_error, short))
        return format_html("{}{}", badge, format_html_join("", "<br>{}", ((n,) for n in notes)))

    @admin.display(description="at Target")
    def at_target_cell(self, obj: ProfileUpdate) -> str:
        key = verification.at_target(obj.status, obj.verification_state)
        if not key:
            return "—"
        return format_html('<span class="po-at-target po-at-target-{}">{}</span>', key,
                           verification.AT_TARGET[key])

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: ProfileUpdate) -> str:
        return format_html(
            '<span class="po-nowrap">{}</span><br><span class="po-muted">{} by {}</span>',
            obj.created_at.strftime("%Y-%m-%d"), obj.created_at.strftime("%H:%M"),
            obj.created_by.get_username())

    @admin.display(description="sent at", ordering="acknowledged_at")
    def sent_at(self, obj: ProfileUpdate) -> str:
        if obj.acknowledged_at is None:
            return "—"
        return format_html('<span class="po-nowrap">{}</span><br><span class="po-muted">{} UTC</span>',
                           obj.acknowledged_at.strftime("%Y-%m-%d"),
                           obj.acknowledged_at.strftime("%H:%M"))

    @admin.display(description="next attempt")
    def next_attempt(self, obj: ProfileUpdate) -> str:
        if obj.next_attempt_at is None or obj.status != S.APPROVED:
            return "—"
        return format_html('<span class="po-nowrap">{}</span><br><span class="po-muted">{} UTC, '
                           'attempt {}</span>', obj.next_attempt_at.strftime("%Y-%m-%d"),
                           obj.next_attempt_at.strftime("%H:%M:%S"), obj.attempt_count + 1)

    @admin.display(description="attributes")
    def attribute_names(self, obj: ProfileUpdate) -> str:
        names = sorted(obj.attributes) if isinstance(obj.attributes, dict) else []
        shown = ", ".join(names[:3])
        return shown + (f" +{len(names) - 3}" if len(names) > 3 else "")

    def get_ordering(self, request: HttpRequest):
        # Newest first either way; with a created-date filter, ordering by created_at lets the
        # database walk the created_at index inside the range instead of sorting the whole range
        # (SQLite took seconds on "this year" of a million rows ordered by id).
        if any(key.startswith("created_at__") for key in request.GET):
            return ("-created_at", "-id")
        # The same with a sent-date filter (the dashboard's "at Target" tiles link to one): the
        # range of the upd_acknowledged index, which also holds the verification state.
        if any(key.startswith("acknowledged_at__") for key in request.GET):
            return ("-acknowledged_at", "-id")
        return self.ordering

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        return selectors.search_identity(queryset, search_term), False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        # The dropdown hides decisions from non-approvers; a forged POST is refused outright.
        if request.method == "POST" and not self.has_approve_permission(request):
            if {"approve_selected", "reject_selected"} & set(request.POST.getlist("action")):
                raise PermissionDenied("Approving and rejecting needs the approve permission.")
        extra_context = {**(extra_context or {}), "count_cap": COUNT_CAP}
        return super().changelist_view(request, extra_context)

    # --- bulk actions ------------------------------------------------------------------

    def _bulk(self, request: HttpRequest, queryset: QuerySet, service: Callable[..., Any], *,
              verb: str, **kwargs: Any) -> None:
        chosen = bounded(request, queryset)
        if chosen is not None:
            report_outcome(request, workflow.apply_to_each(service, chosen, by=request.user,
                                                           **kwargs), verb=verb)

    def _queueing_bulk(self, request: HttpRequest, queryset: QuerySet,
                       service: Callable[..., Any], *, verb: str) -> None:
        """Submit or re-queue the selection, never superseding: a list shows no values, and
        cancelling another person's update is a choice made on one update's page. Updates
        refused for an open conflict are then linked to their page, where the person may
        choose "Cancel the open update(s) and replace them"."""
        chosen = bounded(request, queryset)
        if chosen is None:
            return
        conflicted: list[ProfileUpdate] = []

        def queue(*, update: ProfileUpdate, by: Any) -> ProfileUpdate:
            try:
                return service(update=update, by=by)
            except ValidationError as error:
                if getattr(error, "code", None) == OPEN_CONFLICT:
                    conflicted.append(update)
                raise

        report_outcome(request, workflow.apply_to_each(queue, chosen, by=request.user), verb=verb)
        if conflicted:
            links = format_html_join(", ", '<a href="{}">#{}</a>', (
                (self._change_url(u), u.pk) for u in conflicted[:REFUSALS_LISTED]))
            more = len(conflicted) - REFUSALS_LISTED
            messages.info(request, format_html(
                "A list action never cancels other updates. To replace the open update(s), "
                "open the update refused for it — {}{} — and choose “Cancel the open update(s) "
                "and replace them” there.", links, f" and {more} more" if more > 0 else ""))

    @admin.action(description="Submit selected updates for approval", permissions=["submit"])
    def submit_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._queueing_bulk(request, queryset, workflow.update_submit, verb="submitted")

    # The list shows attribute names, not values: approving or rejecting a selection goes
    # through a page that lists each update's content, and the decision covers exactly that
    # content (decisions.updates_decide_shown: all or nothing, refused as `stale`).

    @admin.action(description="Approve selected updates (shows their content first)",
                  permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet):
        return self._decide_selected(request, queryset, "approve")

    @admin.action(description="Reject selected updates (asks for a reason)",
                  permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet):
        return self._decide_selected(request, queryset, "reject")

    def _decide_selected(self, request: HttpRequest, queryset: QuerySet, decision: str):
        chosen = bounded(request, queryset)
        if chosen is None:
            return None
        applying = "apply" in request.POST
        form = RejectForm(request.POST if applying else None) if decision == "reject" else None
        if applying and (form is None or form.is_valid()):
            shown = decisions.read_token(request.POST.get("shown"))
            verb = "approved" if decision == "approve" else "rejected"
            try:
                outcome = decisions.updates_decide_shown(
                    shown={u.pk: shown.get(u.pk, "") for u in chosen}, decision=decision,
                    by=request.user, comment=form.cleaned_data["comment"] if form else "")
            except ValidationError as error:
                report_refusal(request, error)
                return None
            report_outcome(request, outcome, verb=verb)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{decision.capitalize()} profile updates",
            "opts": self.opts,
            "decision": decision,
            "updates": chosen,
            "rows": [(u, selectors.attribute_rows(u)) for u in chosen],
            # Only what may be decided is named: a row shown in another state stays refused.
            "shown": decisions.shown_token(u for u in chosen if u.status == S.PENDING),
            "form": form,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/updates/profileupdate/decide_confirmation.html",
                                context)

    @admin.action(description="Cancel selected updates", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, workflow.update_cancel, verb="cancelled")

    @admin.action(description="Re-queue selected failed updates", permissions=["requeue"])
    def requeue_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._queueing_bulk(request, queryset, workflow.update_requeue, verb="re-queued")

    # --- add: choose the connection, then one field per active mapping ----------------

    def _chosen_connection(self, request: HttpRequest) -> TargetConnection | None:
        pk = parse_id(request.GET.get("connection"))
        if pk is None:
            return None
        return TargetConnection.objects.filter(pk=pk, active=True).first()

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        connection = self._chosen_connection(request)
        if connection is None and "connection" not in request.GET:
            # One active connection: nothing to choose, go straight to the update's fields.
            only = list(TargetConnection.objects.filter(active=True).values_list("pk", flat=True)[:2])
            if len(only) == 1:
                query = request.GET.copy()
                query["connection"] = str(only[0])
                return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        if connection is None:
            return self._choose_connection_view(request)
        extra_context = {**(extra_context or {}), "staging_connection": connection}
        return super().add_view(request, form_url, extra_context)

    def _choose_connection_view(self, request: HttpRequest):
        form = ChooseConnectionForm(request.GET if "connection" in request.GET else None)
        if form.is_bound:
            form.is_valid()  # only reached with an invalid or inactive choice: show why
        context = {
            **self.admin_site.each_context(request),
            "title": "Stage a profile update — choose the connection",
            "opts": self.opts,
            "form": form,
            "has_connections": form.fields["connection"].queryset.exists(),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/updates/profileupdate/choose_connection.html",
                                context)

    def get_fieldsets(self, request: HttpRequest, obj: ProfileUpdate | None = None):
        life = ("Life", {"classes": ["collapse"], "fields": [
            "created_by", "created_at_utc", "last_edited_by", "last_edited_at_utc",
            "submitted_at_utc", "decided_by", "decided_at_utc", "decision_comment",
            "acknowledged_at_utc", "attempts_total", "next_attempt_at_utc", "last_error"]})
        if obj is not None and not self.has_change_permission(request, obj):
            return [
                (None, {"fields": ["connection_display", "status", "identity_type", "identity",
                                   "reason", "not_before"]}),
                life,
            ]
        form_class = self._staging_form(request, obj)
        head = ["connection_display"] + (["status"] if obj is not None else []) + [
            "identity_type", "identity"]
        fieldsets = [
            (None, {"fields": head}),
            ("What to send", {
                "fields": list(form_class.mapping_fields),
                "description": "One field per active attribute mapping of this connection. "
                               "Values are normalised as each mapping says (see the help under "
                               "each field); the stored update holds the normalised values."}),
            ("Why and when", {"fields": ["reason", "not_before", "supersede"]}),
        ]
        return fieldsets + ([life] if obj is not None else [])

    def _staging_form(self, request: HttpRequest,
                      obj: ProfileUpdate | None) -> type[forms.ModelForm]:
        connection = obj.connection if obj is not None else self._chosen_connection(request)
        if connection is None:
            raise PermissionDenied("Choose an active connection first.")
        # Built once per request (fieldsets and the form both need it).
        cache = request.__dict__.setdefault("_update_forms", {})
        key = (connection.pk, obj.pk if obj is not None else None)
        if key not in cache:
            cache[key] = update_form_class(connection, request.user, obj)
        return cache[key]

    def get_form(self, request: HttpRequest, obj: ProfileUpdate | None = None, change: bool = False,
                 **kwargs: Any):
        if obj is None or self.has_change_permission(request, obj):
            kwargs["form"] = self._staging_form(request, obj)
        return super().get_form(request, obj, change, **kwargs)

    # The Life section's times in the timeline's one format (timeline.utc_text).
    created_at_utc = _utc_display("created_at", "Created at")
    last_edited_at_utc = _utc_display("last_edited_at", "Last edited at")
    submitted_at_utc = _utc_display("submitted_at", "Submitted at")
    decided_at_utc = _utc_display("decided_at", "Decided at")
    acknowledged_at_utc = _utc_display("acknowledged_at", "Acknowledged at")
    next_attempt_at_utc = _utc_display("next_attempt_at", "Next attempt at")

    @admin.display(description="Target connection")
    def connection_display(self, obj: ProfileUpdate | None) -> str:
        if obj is None or not obj.connection_id:
            return ""
        return str(obj.connection)

    def save_model(self, request: HttpRequest, obj: ProfileUpdate, form: AdminStagingForm,
                   change: bool) -> None:
        # Already saved by the service in AdminStagingForm._post_clean; only tell what happened —
        # in place of the admin's own "changed successfully" line (see message_user).
        if not change:
            request._po_saved_message = (messages.SUCCESS, (
                f"Update #{obj.pk} is staged as a draft. Submit it for approval when it is ready "
                "(Submit button on its page, or the list's action)."))
        elif form.previous_status not in (None, S.DRAFT) and obj.status == S.DRAFT:
            request._po_saved_message = (messages.WARNING, (
                f"Update #{obj.pk}: its identity or attributes changed, so it is back in draft "
                "and its approval is cleared. Submit it again for approval."))

    def message_user(self, request: HttpRequest, message: str, level: int = messages.INFO,
                     extra_tags: str = "", fail_silently: bool = False) -> None:
        # One message per save: what save_model has to say replaces the admin's success line.
        replacement = request.__dict__.pop("_po_saved_message", None)
        if replacement is not None and level == messages.SUCCESS:
            level, message = replacement
        super().message_user(request, message, level, extra_tags, fail_silently)

    def response_add(self, request: HttpRequest, obj: ProfileUpdate, post_url_continue=None):
        response = super().response_add(request, obj, post_url_continue)
        if "_addanother" in request.POST and isinstance(response, HttpResponseRedirect):
            # Another update for the same connection: skip the connection step.
            separator = "&" if "?" in response["Location"] else "?"
            response["Location"] += f"{separator}connection={obj.connection_id}"
        return response

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets, change: bool):
        pass  # no relations edited here

    # --- the change page: what will be sent, the next step, the timeline --------------

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None):
        obj = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if obj is not None and self.has_view_or_change_permission(request, obj):
            user = request.user
            extra.update(
                attribute_rows=selectors.attribute_rows(obj),
                request_preview=sending.planned(obj),
                timeline_lines=timeline.timeline_lines(selectors.update_timeline(update=obj)),
                # Nothing left to edit: what happened matters more than the read-only form.
                timeline_first=obj.status in workflow.READ_ONLY_STATES,
                transitions=self._transitions(request, obj),
                own_update=workflow.is_content_author(user, obj),
                workflow_url=reverse("admin:updates_profileupdate_workflow", args=[obj.pk]),
                # What this page shows, for a decision to name (decisions.shown_token).
                shown=decisions.shown_token([obj]),
                reject_form=RejectForm(),
                edit_returns_to_draft=(obj.status in workflow.EDITABLE_STATES
                                       and obj.status != S.DRAFT),
            )
            extra.update(unsaved_note=unsaved_note(extra["transitions"]),
                         reverts_update_id=verification.reverted_update_id(obj),
                         supersede_offer=self._supersede_offer(request, obj,
                                                               extra["transitions"]))
        return super().change_view(request, object_id, form_url, extra)

    def _transitions(self, request: HttpRequest, obj: ProfileUpdate) -> list[tuple[str, str]]:
        """(name, button label) of the moves this user may make now — the workflow's answer,
        four eyes included (an author of the content is offered no Approve/Reject)."""
        return [(t.name, t.label) for t in workflow.available_transitions(obj, request.user)]

    def _supersede_offer(self, request: HttpRequest, obj: ProfileUpdate,
                         transitions: list[tuple[str, str]]) -> dict[str, Any] | None:
        """When this page offers Submit or Re-queue and another open update of the visitor sets
        one of the same attributes (open_changes.py), which the move would be refused for: that
        conflict, named, and the moves that may supersede it (posted with supersede=1; the
        service checks the cancel permission again, and refuses a sending one as in flight)."""
        queueing = [(name, label) for name, label in transitions if name in QUEUEING]
        if not queueing:
            return None
        found = open_changes.conflicts(
            connection_id=obj.connection_id, identity_type=obj.identity_type,
            identity=obj.identity, attributes=obj.attributes or {}, exclude_pk=obj.pk)
        if not found:
            return None
        return {
            "message": open_changes.conflict_message(obj.identity_type, obj.identity, found),
            "transitions": queueing,
            "in_flight": [u.pk for u, _shared in found if u.status == S.SENDING],
            "may_supersede": self.has_cancel_permission(request),
        }

    def get_urls(self):
        urls = super().get_urls()
        own = [path("<path:object_id>/workflow/", self.admin_site.admin_view(self.workflow_view),
                    name="updates_profileupdate_workflow")]
        return own + urls

    TRANSITIONS = {
        "submit": (workflow.update_submit, "submitted"),
        "approve": (workflow.update_approve, "approved"),
        "reject": (workflow.update_reject, "rejected"),
        "cancel": (workflow.update_cancel, "cancelled"),
        "requeue": (workflow.update_requeue, "re-queued"),
        "requeue_for_approval": (workflow.update_requeue, "re-queued"),
    }

    def workflow_view(self, request: HttpRequest, object_id: str):
        """POST one transition for one update, from its change page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        update = get_object_or_404(ProfileUpdate.objects.select_related("connection"),
                                   pk=parse_id(object_id) or -1)
        if not self.has_view_or_change_permission(request, update):
            raise PermissionDenied
        name = request.POST.get("transition", "")
        if name not in self.TRANSITIONS:
            messages.error(request, "Unknown action; nothing was changed.")
            return HttpResponseRedirect(self._change_url(update))
        if name in ("approve", "reject") and not self.has_approve_permission(request):
            raise PermissionDenied("Approving and rejecting needs the approve permission.")
        service, verb = self.TRANSITIONS[name]
        kwargs = {"comment": request.POST.get("comment", "").strip()}
        if name in ("approve", "reject"):
            # A decision covers the content this page showed, not whatever is stored now.
            kwargs["shown"] = decisions.read_token(request.POST.get("shown")).get(update.pk, "")
        if name in QUEUEING:
            kwargs["supersede"] = wants_supersede(request)
        edits = self._posted_edits(request, update)
        if edits is not None and edits.has_changed():
            if "shown" in kwargs:
                try:  # the fields differ because the stored content changed: say so
                    workflow.check_shown(update, workflow.T[name], kwargs["shown"])
                except ValidationError as error:
                    messages.warning(request, " ".join(error.messages))
                    return HttpResponseRedirect(self._change_url(update))
            return self._act_on_edited(request, update, edits, name, object_id)
        if name == "reject":
            form = RejectForm(request.POST)
            if not form.is_valid():
                messages.error(request, f"Update #{update.pk} was not rejected: a rejection "
                                        "needs a comment saying why.")
                return HttpResponseRedirect(self._change_url(update))
            kwargs["comment"] = form.cleaned_data["comment"]
        outcome = workflow.apply_to_each(service, [update], by=request.user, **kwargs)
        report_outcome(request, outcome, verb=verb)
        return HttpResponseRedirect(self._change_url(update))

    # --- workflow buttons and unsaved edits ---------------------------------------------
    # The change page's workflow buttons submit the page's own form (to workflow_view), so the
    # server sees what is in the fields and never drops an unsaved edit: submit and re-queue
    # save it first, in one step; the other moves refuse, since a decision is about what is
    # stored.

    SAVE_THEN_ACT = {"submit", "requeue"}

    def _posted_edits(self, request: HttpRequest, update: ProfileUpdate) -> forms.ModelForm | None:
        """The change form bound to what was posted, or None when no fields came with the
        request (a button from elsewhere) or this user may not edit the update."""
        if "identity" not in request.POST or not self.has_change_permission(request, update):
            return None
        if update.status in workflow.READ_ONLY_STATES:
            return None
        form_class = self.get_form(request, update, change=True)
        return form_class(request.POST, request.FILES, instance=update)

    def _act_on_edited(self, request: HttpRequest, update: ProfileUpdate,
                       edits: forms.ModelForm, name: str, object_id: str):
        service, verb = self.TRANSITIONS[name]
        if name not in self.SAVE_THEN_ACT:
            # Shown again with the edits in place, as a form error; nothing saved or decided.
            self._staging_form(request, update).refuse_with = (
                f"You have unsaved changes: update #{update.pk} was not {verb}. Save them "
                "first, or reload the page to drop them.")
            return self.change_view(request, object_id, form_url=self._change_url(update))
        if not edits.is_valid():  # validating saves (AdminStagingForm._post_clean)
            messages.error(request, f"Update #{update.pk} was not {verb}: your changes have "
                                    "errors (below). Nothing was saved.")
            return self.change_view(request, object_id, form_url=self._change_url(update))
        update.refresh_from_db()
        extra = {"supersede": wants_supersede(request)} if name in QUEUEING else {}
        outcome = workflow.apply_to_each(service, [update], by=request.user, **extra)
        if outcome.done:
            messages.success(request, f"Saved your changes to update #{update.pk} and {verb} it.")
        else:
            reason = _refusal_text(update, outcome.refused[0][1])
            messages.warning(request, f"Saved your changes to update #{update.pk}, but it was not "
                                      f"{verb}: {reason}")
        return HttpResponseRedirect(self._change_url(update))

    def _change_url(self, update: ProfileUpdate) -> str:
        return reverse("admin:updates_profileupdate_change", args=[update.pk])


# Moves that put an update in the queue: refused (`open_conflict`) while another open update of
# the visitor sets one of the same attributes, unless the person supersedes it — on the update
# page, with "Cancel the open update(s) and replace them" (ProfileUpdateAdmin._supersede_offer)
# or the form's checkbox of that name. The list's actions never supersede (_queueing_bulk).
QUEUEING = {"submit", "requeue", "requeue_for_approval"}


def wants_supersede(request: HttpRequest) -> bool:
    """Whether the person chose to supersede: the update form's checkbox (posted "on"), a
    script's supersede=1, or the page's confirm button (its formaction carries ?supersede=1)."""
    return (request.POST.get("supersede") in ("1", "on")
            or request.GET.get("supersede") == "1")


# Buttons that save the page's unsaved edits before they act (ProfileUpdateAdmin.workflow_view).
_SAVING_TRANSITIONS = {"submit", "requeue", "requeue_for_approval"}


def unsaved_note(transitions: list[tuple[str, str]]) -> str:
    """The update page's unsaved-changes note, naming only the buttons the page shows."""
    def names(labels: list[str]) -> str:
        quoted = [f"“{label}”" for label in labels]
        return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]

    saving = [label for name, label in transitions if name in _SAVING_TRANSITIONS]
    others = [label for name, label in transitions if name not in _SAVING_TRANSITIONS]
    parts = []
    if saving:
        parts.append(f"{names(saving)} {'saves' if len(saving) == 1 else 'save'} them first")
    if others:
        parts.append(f"{names(others)} {'needs' if len(others) == 1 else 'need'} them saved "
                     "(Save below) or the page reloaded")
    if not parts:
        return "You have unsaved changes: save them with the buttons below."
    return "You have unsaved changes: " + "; ".join(parts) + "."
