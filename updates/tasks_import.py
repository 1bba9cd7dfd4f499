"""django-q2 entry point for confirmed background imports: nothing but a call into importing.py."""

from __future__ import annotations

from .importing import import_job_run
from .models import ImportJob


def run_import_job(job_id: int) -> str:
    """Run one confirmed import; a job already claimed by another worker is left alone."""
    job = import_job_run(job=ImportJob.objects.get(pk=job_id))
    return f"import #{job.pk}: {job.status}, {job.created_updates} updates created"
