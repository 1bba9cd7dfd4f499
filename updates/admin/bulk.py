"""Bulk jobs (updates/bulk_sending.py): read-only records of what the bulk route sent, with
Target's counts beside ProfileOps' own per-row outcome (bulk_reconcile.py) and one button that
re-queues the job's not-applied rows on the single route (requeue permission)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from updates import bulk_reconcile, permissions
from updates.models import BulkCall, BulkFile, BulkJob

from .base import OfferedLookupsAdmin, parse_id


class BulkFileInline(admin.TabularInline):
    model = BulkFile
    fields = ("number", "version", "id_column", "attribute_names", "rows", "size_bytes",
              "state", "attempts", "accepted_at", "status_url", "target_status", "counts",
              "polls", "next_poll_at", "finished_at", "answer", "purge_note")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False


class BulkCallInline(admin.TabularInline):
    model = BulkCall
    fk_name = "file"
    fields = ("at", "kind", "http_status", "target_status", "counts", "error")
    readonly_fields = fields
    extra = max_num = 0
    can_delete = False


@admin.register(BulkJob)
class BulkJobAdmin(OfferedLookupsAdmin):
    list_display = ("__str__", "connection", "state", "rows", "created_at", "finished_at")
    list_filter = ("state", "connection")
    list_select_related = ("connection",)
    readonly_fields = ("connection", "created_at", "worker", "state", "rows", "finished_at")
    inlines = [BulkFileInline]
    change_form_template = "admin/updates/bulkjob/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # written by the bulk sender only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        job = BulkJob.objects.filter(pk=parse_id(object_id) or -1).first()
        extra: dict[str, Any] = {}
        if job is not None and self.has_view_permission(request, job):
            report = bulk_reconcile.job_reconciliation(job)
            extra = {"reconciliation": report,
                     "target_counts": list(report.target.items()),
                     "row_outcomes": list(report.rows.items()),
                     "calls": BulkCall.objects.filter(file__job=job).order_by("at", "id")[:200],
                     "can_requeue": request.user.has_perm(permissions.PERM_REQUEUE)
                     and report.rows["not_applied"] > 0}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def get_urls(self):
        own = [path("<path:object_id>/requeue-single/",
                    self.admin_site.admin_view(self.requeue_view),
                    name="updates_bulkjob_requeue_single")]
        return own + super().get_urls()

    def requeue_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: re-queue the job's not-applied rows on the single route (the service checks
        the permission and writes the audit rows)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = get_object_or_404(BulkJob, pk=parse_id(object_id) or -1)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:updates_bulkjob_change", args=[job.pk]))
        try:
            done = bulk_reconcile.bulk_requeue_not_applied(job=job, by=request.user)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return back
        messages.success(request, f"{done.requeued:,} not-applied updates re-queued on the "
                                  "single route.")
        if done.skipped:
            messages.warning(request, f"{len(done.skipped):,} left as they are: "
                                      + "; ".join(f"#{pk}: {why}" for pk, why in done.skipped[:10]))
        return back

    class Media:
        css = {"all": ["updates/admin.css"]}
