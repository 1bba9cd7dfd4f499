"""The live diff's JSON endpoint (the queue and the update page fill it in with a few lines of
script) and the revert button's view. Thin: the services are reading.py and verification.py."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse

from updates import permissions, reading, verification
from updates.models import ProfileUpdate


def live_diff_view(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    if not request.user.has_perm(permissions.PERM_VIEW):
        raise PermissionDenied
    update = get_object_or_404(ProfileUpdate.objects.select_related("connection"), pk=pk)
    diff = reading.update_live_diff(update=update, by=request.user)
    # admin_view adds never-cache headers: customer values stay out of browser caches.
    return JsonResponse(diff.as_json())


def revert_view(request: HttpRequest, pk: int) -> HttpResponse:
    """POST: stage a revert of a sent update, then open the new draft."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    update = get_object_or_404(ProfileUpdate.objects.select_related("connection"), pk=pk)
    back = HttpResponseRedirect(reverse("admin:updates_profileupdate_change", args=[update.pk]))
    try:
        revert, plan = verification.update_revert(update=update, by=request.user,
                                                  comment=request.POST.get("comment", ""),
                                                  supersede=request.POST.get("supersede") == "1")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return back
    messages.success(request, f"Revert of update #{update.pk} staged as draft #{revert.pk}; "
                              "submit it for approval (someone else must approve it).")
    for name, why in plan.not_revertible.items():
        messages.warning(request, f"profile.{name} is not reverted: it {why}.")
    return HttpResponseRedirect(reverse("admin:updates_profileupdate_change", args=[revert.pk]))
