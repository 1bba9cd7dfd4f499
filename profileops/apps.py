"""The Django admin, with its registrations loaded by the URLconf instead of at start-up.

Django's default AdminConfig imports every app's admin module when the app registry is ready, so
every process — `send_updates`, each qcluster worker, `migrate` — paid for the admin classes and
for the import, export and dashboard code they import. Here the registrations are made by
`admin.autodiscover()` in profileops/urls.py, which only processes that route requests load.
"""

from django.contrib import admin
from django.contrib.admin.apps import SimpleAdminConfig


class AdminConfig(SimpleAdminConfig):
    default_site = "profileops.apps.AdminSite"


class AdminSite(admin.AdminSite):
    def check(self, app_configs):
        # The admin's system checks validate every registration; a process that has not loaded
        # the URLconf (`manage.py check` checks the admin before the URLs or after, in no set
        # order) loads them first, so the checks never pass on an empty registry.
        admin.autodiscover()
        return super().check(app_configs)
