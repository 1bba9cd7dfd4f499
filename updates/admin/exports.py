"""The admin's export page and its downloads: the updates (with the list's own filters, a date
range and a layout that re-imports), an empty import template per connection, and the problems
of a refused import as a file. exporting.py checks the export right and writes the files; this
module only asks and answers.
"""

from __future__ import annotations

import copy
import tempfile
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.widgets import AdminDateWidget
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from updates import exporting, permissions
from updates.models import ImportJob, ProfileUpdate, TargetConnection, UpdateStatus

from .base import parse_id

LIST_FILTERS = "_changelist_filters"  # the admin's own name for "the list's query string"


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        choices=[("csv", "CSV"), ("xlsx", "XLSX")], initial="csv",
        help_text="CSV (UTF-8) or an Excel workbook (XLSX: dates as date cells, frozen header).")
    layout = forms.ChoiceField(
        choices=[("all", "Everything: status, who and when, attempts, and the values"),
                 ("import", "To edit and import again: identity and values only")],
        initial="all", required=False,
        widget=forms.RadioSelect(attrs={"aria-describedby": "id_layout_helptext"}),
        help_text="The second holds exactly the import's columns (one connection): edit the "
                  "values and import the file to stage new updates.")
    connection = forms.ModelChoiceField(
        queryset=TargetConnection.objects.order_by("label"), required=False,
        empty_label="All connections", help_text="Only the updates sent to this connection.")
    status = forms.ChoiceField(
        choices=[("", "All states"), *UpdateStatus.choices], required=False,
        help_text="Only the updates in this state.")
    created_by = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_staff=True).order_by("username"),
        required=False, empty_label="Anyone", label="Created by",
        help_text="Only the updates this person staged.")
    # The admin's own date input (YYYY-MM-DD, a calendar and a "Today" shortcut), as on every
    # other page — not the browser's, whose mm/dd/yyyy differs by locale.
    created_from = forms.DateField(
        required=False, label="Created from", widget=AdminDateWidget,
        help_text="First day (UTC), inclusive.")
    created_to = forms.DateField(
        required=False, label="Created until", widget=AdminDateWidget,
        help_text="Last day (UTC), inclusive.")
    _changelist_filters = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The last day is before the first day.")
        return data


def _spooled(write) -> Any:
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    write(spool)
    spool.seek(0)
    return spool


def _list_queryset(request: HttpRequest, filters: str):
    """The updates the profile update list shows for `filters` (its query string): the same
    filters and search, through the list's own ModelAdmin, so nothing is re-implemented."""
    model_admin = admin.site._registry[ProfileUpdate]
    listing = copy.copy(request)
    listing.GET = QueryDict(filters)
    changelist = model_admin.get_changelist_instance(listing)
    return changelist.get_queryset(listing)


# Query parameters of the list that are not filters (order, page) or are said otherwise.
_NOT_FILTERS = {"o", "p", "q", "_changelist_filters"}
_EXTRA_WORDS = {"import_job": "import", "reason": "reason"}


def _day(value: str) -> str:
    return value[:10]  # "2026-12-07 00:00:00+00:00" → "2026-12-07"


def _parameter_words(key: str, values: list[str]) -> str:
    """A parameter the sidebar does not show (a filter with one choice, an import's link):
    the field's name and the values as the list would show them."""
    label = _EXTRA_WORDS.get(key) or key.replace("__exact", "").replace("__", " ") \
        .replace("_", " ")
    try:
        field = ProfileUpdate._meta.get_field(key.split("__")[0])
    except FieldDoesNotExist:
        return f"{label}: {', '.join(values)}"
    shown = values
    if field.is_relation and key.endswith(("__id__exact", "__exact")) or key == field.attname:
        ids = [v for v in values if v.isdigit()]
        found = {str(o.pk): str(o) for o in field.related_model._default_manager.filter(pk__in=ids)}
        shown = [found.get(v, v) for v in values]
        label = _EXTRA_WORDS.get(key) or str(field.verbose_name)
    elif field.choices and key in (field.name, f"{field.name}__exact"):
        shown = [str(dict(field.flatchoices).get(v, v)) for v in values]
        label = str(field.verbose_name)
    return f"{label}: {', '.join(shown)}"


def filter_words(request: HttpRequest, filters: str) -> list[str]:
    """The list's filters as people read them in the list's own sidebar — "status: Approved",
    "connection: Demo (demo)", "acknowledged at: Past 7 days (2026-11-30 to before
    2026-12-08)", 'search: "alpha*"' — never raw query parameters. Plain text: the template
    escapes it."""
    if not filters:
        return []
    given = QueryDict(filters)
    words: list[str] = []
    said: set[str] = set(_NOT_FILTERS)
    model_admin = admin.site._registry[ProfileUpdate]
    listing = copy.copy(request)
    listing.GET = given
    try:
        changelist = model_admin.get_changelist_instance(listing)
    except IncorrectLookupParameters:
        changelist = None
    for spec in changelist.filter_specs if changelist else []:
        expected = [p for p in spec.expected_parameters() if p in given]
        if not expected:
            continue
        chosen = [str(c["display"]) for c in spec.choices(changelist) if c["selected"]]
        if not chosen:
            continue  # no choice of the sidebar matches: said as the parameters below
        text = f"{spec.title}: {', '.join(chosen)}"
        since = next((given[p] for p in expected if p.endswith("__gte")), "")
        until = next((given[p] for p in expected if p.endswith("__lt")), "")
        if since and until:
            text += f" ({_day(since)} to before {_day(until)})"
        words.append(text)
        said.update(expected)
    for key, values in given.lists():
        if key not in said:
            words.append(_parameter_words(key, values))
    if given.get("q"):
        words.append(f'search: "{given["q"]}"')
    return words


def export_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(permissions.PERM_EXPORT):
        raise PermissionDenied
    bound = "format" in request.GET
    form = ExportForm(request.GET if bound else None,
                      initial={LIST_FILTERS: request.GET.get(LIST_FILTERS, "")})
    filters = request.GET.get(LIST_FILTERS, "")
    if bound and form.is_valid():
        data = form.cleaned_data
        try:
            queryset = _list_queryset(request, filters) if filters else None
            spool = _spooled(lambda out: exporting.updates_export(
                by=request.user, file_format=data["format"], out=out, queryset=queryset,
                connection=data["connection"], status=data["status"] or None,
                created_by=data["created_by"], created_from=data["created_from"],
                created_to=data["created_to"], layout=data["layout"] or "all"))
        except IncorrectLookupParameters:
            form.add_error(None, "The list's filters could not be applied; go back to the list "
                                 "and open the export from there again.")
        except ValidationError as error:
            form.add_error(None, error)
        else:
            stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
            return FileResponse(spool, as_attachment=True,
                                filename=f"profile-updates-{stamp}.{data['format']}",
                                content_type=exporting.FORMATS[data["format"]])
    connections = TargetConnection.objects.filter(active=True).order_by("label")
    return TemplateResponse(request, "admin/updates/import/export.html", {
        **model_admin.admin_site.each_context(request), "opts": ImportJob._meta,
        "title": "Export profile updates", "form": form,
        "list_filters": filter_words(request, filters),
        "media": model_admin.media + form.media,
        "list_url": reverse("admin:updates_profileupdate_changelist") + (
            f"?{filters}" if filters else ""),
        "templates": [(c, {f: reverse("admin:updates_importjob_template")
                           + f"?connection={c.pk}&format={f}" for f in exporting.FORMATS})
                      for c in connections],
    })


def _requested_format(request: HttpRequest) -> str:
    file_format = request.GET.get("format", "csv")
    if file_format not in exporting.FORMATS:
        raise Http404("Unknown format; use csv or xlsx.")
    return file_format


def template_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """?connection=<id>&format=csv|xlsx: an empty import file for one connection — its
    headers, from the active mappings."""
    if not (request.user.has_perm(permissions.PERM_IMPORT)
            or request.user.has_perm(permissions.PERM_EXPORT)):
        raise PermissionDenied
    pk = parse_id(request.GET.get("connection"))
    connection = get_object_or_404(TargetConnection, pk=pk if pk is not None else -1, active=True)
    file_format = _requested_format(request)
    spool = _spooled(lambda out: exporting.connection_template(
        by=request.user, connection=connection, file_format=file_format, out=out))
    name = slugify(connection.client_code) or f"connection-{connection.pk}"
    return FileResponse(spool, as_attachment=True, filename=f"import-template-{name}.{file_format}",
                        content_type=exporting.FORMATS[file_format])


def errors_view(model_admin: admin.ModelAdmin, request: HttpRequest, pk: int) -> HttpResponse:
    """?format=csv|xlsx: a refused import's problems as a file — row, column, what is wrong."""
    job = get_object_or_404(ImportJob.objects.defer("file_data"), pk=pk)
    if not (model_admin.has_view_permission(request, job) or job.created_by_id == request.user.pk):
        raise PermissionDenied
    file_format = _requested_format(request)
    spool = _spooled(lambda out: exporting.import_errors_file(
        by=request.user, job=job, file_format=file_format, out=out))
    return FileResponse(spool, as_attachment=True, filename=f"import-{job.pk}-errors.{file_format}",
                        content_type=exporting.FORMATS[file_format])


# --- the change list's export actions ------------------------------------------------------

def export_response(*, by, file_format: str, queryset=None, connection=None,
                    status: str | None = None) -> FileResponse:
    """The export as a download; the file is spooled to disk past a few MB, not kept in memory."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    exporting.updates_export(by=by, file_format=file_format, out=spool, queryset=queryset,
                             connection=connection, status=status)
    spool.seek(0)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return FileResponse(spool, as_attachment=True,
                        filename=f"profile-updates-{stamp}.{file_format}",
                        content_type=exporting.FORMATS[file_format])


def _export_action(file_format: str):
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset) -> Any:
        try:
            return export_response(by=request.user, file_format=file_format, queryset=queryset)
        except ValidationError as error:
            modeladmin.message_user(request, " ".join(error.messages), messages.ERROR)
            return None

    action.__name__ = f"export_selected_{file_format}"
    return admin.action(description=f"Export selected updates as {file_format.upper()}")(action)


# For ProfileUpdateAdmin.actions; the export service refuses those without the export right.
export_selected_csv = _export_action("csv")
export_selected_xlsx = _export_action("xlsx")
