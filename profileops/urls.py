"""URLs: the Django admin, plus the operations dashboard and approval queue beside it."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from updates.admin import dashboard

urlpatterns = [
    # Before admin.site.urls, under the same prefix, so they read as part of the admin.
    path("admin/", include(dashboard.urlpatterns)),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
]
