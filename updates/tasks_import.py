"""Old dotted paths of tasks now in tasks.py: import tasks queued (async_task) before the upgrade
still name this module. Nothing else imports it."""

from .tasks import check_import_job, run_import_job  # noqa: F401
