"""django-q2 entry points for background imports (checking an upload, running a confirmed
import): nothing but calls into importing.py."""

from __future__ import annotations

from .importing import import_job_check, import_job_run
from .models import ImportJob


def run_import_job(job_id: int) -> str:
    """Run one confirmed import; a job already claimed by another worker is left alone."""
    job = import_job_run(job=ImportJob.objects.get(pk=job_id))
    return f"import #{job.pk}: {job.status}, {job.created_updates} updates created"


def check_import_job(job_id: int) -> str:
    """Check one uploaded file in the background (the preview of a large file)."""
    job = import_job_check(job=ImportJob.objects.get(pk=job_id))
    return f"import #{job.pk}: {job.status}, {job.total_rows} rows, {job.error_count} problems"
