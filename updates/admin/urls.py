"""The URLs of the admin's own pages (included under admin/ by profileops/urls.py, before the
model admins). Each is wrapped in `admin.site.admin_view`, so it shares the admin's login, staff
check, CSRF protection and never-cache headers; the pages check the model permissions they need.
"""

from django.contrib import admin
from django.urls import path

from . import batch, dashboard, live_diff, queue

urlpatterns = [
    path("dashboard/", admin.site.admin_view(dashboard.dashboard_view), name="updates_dashboard"),
    path("queue/", admin.site.admin_view(queue.queue_view), name="updates_queue"),
    # Under the update's own admin URL (matched before the admin's <path:object_id>/ routes).
    path("updates/profileupdate/<int:pk>/live-diff/",
         admin.site.admin_view(live_diff.live_diff_view), name="updates_live_diff"),
    path("updates/profileupdate/<int:pk>/revert/", admin.site.admin_view(live_diff.revert_view),
         name="updates_revert"),
    path("queue/batch/", batch.batch_urlpattern_view, name="updates_queue_batch"),
    path("queue/batch/estimate/", batch.estimate_urlpattern_view,
         name="updates_queue_batch_estimate"),
    path("queue/batch/read/", batch.read_start_urlpattern_view, name="updates_queue_batch_read"),
    path("queue/batch/read/status/", batch.read_status_urlpattern_view,
         name="updates_queue_batch_read_status"),
    path("queue/batch/decision/status/", batch.decision_status_urlpattern_view,
         name="updates_queue_batch_decision_status"),
]
