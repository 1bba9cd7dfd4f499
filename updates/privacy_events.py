"""The hook for Adobe I/O Events about privacy jobs: Adobe tells us, instead of us asking.

Register `https://<site>/privacy/adobe-events/<PROFILEOPS_PRIVACY_EVENTS_TOKEN>/` as the
webhook of an I/O Events registration for Privacy Service job events. Adobe first checks the
address with `GET ?challenge=<text>`, answered with the text; then it POSTs each event as JSON.
The hook takes the job ids from the event (any "jobId" in it) and reads those jobs' status from
the Privacy Service itself (privacy.privacy_requests_poll, within the daily cap): an event is
a prompt, never evidence, so a forged one can at most cause a read. Without the token setting
the hook answers 404; a wrong token answers 404 too.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import privacy, target
from .conf import setting

MAX_BODY_BYTES = 256 * 1024
MAX_JOB_IDS = 100


def job_ids_in(event: Any, *, found: list[str] | None = None, depth: int = 0) -> list[str]:
    """Every string under a "jobId" key, however deep (to ten levels), at most MAX_JOB_IDS."""
    found = [] if found is None else found
    if depth > 10 or len(found) >= MAX_JOB_IDS:
        return found
    if isinstance(event, dict):
        for key, value in event.items():
            if key == "jobId" and isinstance(value, str) and 0 < len(value) <= 100:
                found.append(value)
            else:
                job_ids_in(value, found=found, depth=depth + 1)
    elif isinstance(event, list):
        for value in event:
            job_ids_in(value, found=found, depth=depth + 1)
    return found


@csrf_exempt
def adobe_events_view(request: HttpRequest, token: str) -> HttpResponse:
    expected = setting("PRIVACY_EVENTS_TOKEN")
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        return HttpResponse(status=404)
    if request.method == "GET":
        challenge = request.GET.get("challenge", "")[:200]
        return HttpResponse(challenge, content_type="text/plain")
    if request.method != "POST":
        return HttpResponse(status=405)
    if len(request.body) > MAX_BODY_BYTES:
        return HttpResponse(status=413)
    event = target.json_from_outside(request.body) if request.body else None
    if request.body and event is None:  # not JSON, or nested past what the parser takes
        return HttpResponse(status=400)
    job_ids = job_ids_in(event)
    read = privacy.privacy_requests_poll(job_ids=job_ids) if job_ids else 0
    return JsonResponse({"job_ids": len(job_ids), "read": read})
