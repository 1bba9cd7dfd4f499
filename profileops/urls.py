"""URLs: the Django admin, plus the operations dashboard and approval queue beside it, and the
probes for load balancers and Prometheus (answered early by updates.health.ProbeMiddleware; listed
here too so that they can be reversed and work without the middleware)."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from updates import health, privacy_events

# The admin's registrations are made here, where the URLconf loads, not at start-up
# (profileops/apps.py): processes that never route a request (send_updates, qcluster) skip them.
admin.autodiscover()

from updates.admin import urls as admin_pages  # noqa: E402  (after autodiscover)

urlpatterns = [
    # Before admin.site.urls, under the same prefix, so they read as part of the admin.
    path("admin/", include(admin_pages.urlpatterns)),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.PROBES["/metrics"], name="metrics"),
    path("privacy/adobe-events/<str:token>/", privacy_events.adobe_events_view,
         name="privacy_adobe_events"),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
]
