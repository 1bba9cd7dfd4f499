"""The admin's import pages and the read-only list of import jobs (exports.py holds the export).

Import: upload (connection, file, "submit for approval at once") → the file is kept as an
ImportJob and checked (in the request when small, in django-q2 when large: the page shows the
rows read so far and refreshes itself) → its page previews every bad row (row, column, reason) or summarises
what will be created → the uploader starts it. Files of more than
importing.background_threshold() rows run in django-q2; their page shows progress and refreshes
itself until the result is there.

Thin: importing.py checks permissions and does the work; these views only ask and show.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from updates import exporting, importing, permissions
from updates.forms import supersede_field
from updates.models import ImportJob, TargetConnection

from . import exports
from .base import OfferedLookupsAdmin, parse_id

REFRESH_SECONDS = 2


class ImportUploadForm(forms.Form):
    connection = forms.ModelChoiceField(
        queryset=TargetConnection.objects.filter(active=True).order_by("label"),
        empty_label=None, label="Target connection",
        help_text="Its active attribute mappings define the columns the file may have.")
    file = forms.FileField(
        label="File (CSV or XLSX)",
        help_text="First row: identity_type, identity, then mapping source names. One row per "
                  "visitor. CSV as UTF-8 (with or without BOM); XLSX: the first sheet.")
    submit = forms.BooleanField(
        required=False, label="Submit for approval at once",
        help_text="Otherwise the updates are created as drafts for you to review and submit.")
    supersede = supersede_field(
        "A row for a visitor with an open update setting one of the same attributes is refused "
        "unless this is ticked; then that update is cancelled (audited as superseded by the "
        "row's update) when the import saves. Never a sending one.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > importing.MAX_FILE_BYTES:
            raise ValidationError(f"The file is larger than "
                                  f"{importing.MAX_FILE_BYTES // (1024 * 1024)} MB; split it.")
        return upload


@admin.register(ImportJob)
class ImportJobAdmin(OfferedLookupsAdmin):
    list_display = ("job_link", "file_name", "connection", "created_by", "created_at",
                    "status", "progress", "updates_created", "problems")
    list_filter = ("status", "connection")
    list_select_related = ("connection", "created_by")
    ordering = ("-created_at", "-id")
    change_list_template = "admin/updates/import/importjob_change_list.html"

    class Media:
        css = {"all": ["updates/admin.css"]}  # long file names wrap instead of being clipped
    # The stored file is never listed or loaded for the list.
    list_per_page = 50

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).defer("file_data")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are created by uploading a file on the import page

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Import", ordering="id")
    def job_link(self, job: ImportJob) -> str:
        return format_html('<a href="{}">#{}</a>', reverse("admin:updates_importjob_status",
                                                            args=[job.pk]), job.pk)

    @admin.display(description="Created updates", ordering="created_updates")
    def updates_created(self, job: ImportJob) -> str:
        return f"{job.created_updates:,}"

    @admin.display(description="Problems", ordering="error_count")
    def problems(self, job: ImportJob) -> str:
        return f"{job.error_count:,}"

    @admin.display(description="Rows")
    def progress(self, job: ImportJob) -> str:
        if job.status == ImportJob.Status.CHECKING:  # the total is known once the file is read
            return f"{job.processed_rows:,} checked so far"
        return f"{job.processed_rows:,} / {job.total_rows:,}"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="updates_importjob_import"),
            # The export pages (exports.py) live under the import jobs' URL, beside the import.
            path("export/", view(lambda request: exports.export_view(self, request)),
                 name="updates_importjob_export"),
            path("template/", view(lambda request: exports.template_view(self, request)),
                 name="updates_importjob_template"),
            path("<int:pk>/errors/", view(lambda request, pk: exports.errors_view(self, request, pk)),
                 name="updates_importjob_errors"),
            path("<int:pk>/status/", view(self.status_view), name="updates_importjob_status"),
            path("<int:pk>/start/", view(self.start_view), name="updates_importjob_start"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        if (pk := parse_id(object_id)) is not None:
            return HttpResponseRedirect(reverse("admin:updates_importjob_status", args=[pk]))
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra = {"can_import": request.user.has_perm(permissions.PERM_IMPORT),
                 "can_export": request.user.has_perm(permissions.PERM_EXPORT)}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def _context(self, request: HttpRequest, title: str, **kwargs: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.model._meta,
                "title": title, **kwargs}

    # --- import ------------------------------------------------------------------------------

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(permissions.PERM_IMPORT):
            raise PermissionDenied
        form = ImportUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                job = importing.import_job_create(
                    connection=form.cleaned_data["connection"], file_name=upload.name,
                    file_data=upload.read(), by=request.user, submit=form.cleaned_data["submit"],
                    supersede=form.cleaned_data["supersede"])
            except ValidationError as error:
                form.add_error("file", error)
            else:
                return HttpResponseRedirect(reverse("admin:updates_importjob_status",
                                                    args=[job.pk]))
        return TemplateResponse(request, "admin/updates/import/upload.html", self._context(
            request, "Import profile updates", form=form,
            threshold=importing.background_threshold(),
            mappings_url=reverse("admin:updates_attributemapping_changelist"),
            templates=_template_links()))

    def status_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        # The stored file is read only for the preview's first rows, not on every refresh.
        job = get_object_or_404(ImportJob.objects.select_related("connection", "created_by")
                                .defer("file_data"), pk=pk)
        if not (self.has_view_permission(request, job) or job.created_by_id == request.user.pk):
            raise PermissionDenied
        started = request.GET.get("started") == "1"
        waiting = job.status in (ImportJob.Status.CHECKING, ImportJob.Status.RUNNING) or (
            job.status == ImportJob.Status.QUEUED and started)
        is_owner = job.created_by_id == request.user.pk
        context = self._context(
            request, f"Import #{job.pk}: {job.file_name}", job=job, started=started,
            refresh=REFRESH_SECONDS if waiting else None,
            can_start=(job.status == ImportJob.Status.QUEUED and is_owner and not started),
            background=job.total_rows > importing.background_threshold(),
            sample=(importing.job_sample(job)
                    if job.status == ImportJob.Status.QUEUED and not started else []),
            quota_cost=(importing.job_quota_cost(job)
                        if job.status == ImportJob.Status.QUEUED and not started else None),
            percent=_percent(job.processed_rows, job.total_rows),
            saving=(job.status == ImportJob.Status.RUNNING and job.total_rows
                    and job.processed_rows >= job.total_rows),
            errors_omitted=max(0, job.error_count - len(job.errors)),
            updates_url=_updates_url(job),
            import_url=reverse("admin:updates_importjob_import"),
            jobs_url=reverse("admin:updates_importjob_changelist"),
            created_as=("pending approval" if job.submit_after_import else "drafts"),
            n_total=f"{job.total_rows:,}", n_processed=f"{job.processed_rows:,}",
            n_created=f"{job.created_updates:,}", n_errors=f"{job.error_count:,}")
        return TemplateResponse(request, "admin/updates/import/status.html", context)

    def start_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=pk)
        url = reverse("admin:updates_importjob_status", args=[job.pk])
        if request.method != "POST":
            return HttpResponseRedirect(url)
        try:
            queued = importing.import_job_start(job=job, by=request.user)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return HttpResponseRedirect(url)
        if queued:
            self.message_user(request, f"Import #{job.pk} runs in the background; this page "
                                       "shows its progress.", messages.INFO)
            return HttpResponseRedirect(url + "?started=1")
        return HttpResponseRedirect(url)


def _template_links() -> list[tuple[TargetConnection, dict[str, str]]]:
    """Per active connection, its empty import file (exports.template_view) in each format."""
    return [(c, {f: reverse("admin:updates_importjob_template")
                 + f"?connection={c.pk}&format={f}" for f in exporting.FORMATS})
            for c in TargetConnection.objects.filter(active=True).order_by("label")]


def _percent(done: int, total: int) -> int:
    return min(100, int(done * 100 / total)) if total else 0


def _updates_url(job: ImportJob) -> str:
    return (reverse("admin:updates_profileupdate_changelist") + "?"
            + urlencode({"import_job": job.pk}))  # its updates, not every one with its reason
