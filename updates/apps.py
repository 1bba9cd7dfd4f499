from django.apps import AppConfig


class UpdatesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "updates"
    verbose_name = "Profile updates"

    def ready(self) -> None:
        from django.core import checks

        from .checks import check_profileops_settings, check_retention_on

        # Tagged so that a command running only some checks (send_updates) can name these.
        checks.register(check_profileops_settings, "profileops")
        # Reads the connections: only where asked for (check --deploy, and check itself).
        checks.register(check_retention_on, "profileops", deploy=True)
