"""Old dotted path of a task now in tasks.py: a check_alerts task queued by the schedule before
migration 0014 renamed its func still names this module. Nothing else imports it."""

from .tasks import check_alerts  # noqa: F401
