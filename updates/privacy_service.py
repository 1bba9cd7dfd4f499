"""Adobe Privacy Service's jobs API, as far as ProfileOps uses it: pure, no Django, no database.

(Reference: ../shared/reference/target-profile-api.md §5; Adobe's docs under
experience-platform `help/privacy-service/`.)

    POST <base>/jobs        headers Authorization: Bearer <IMS token>, x-api-key, x-gw-ims-org-id
        {"companyContexts": [{"namespace": "imsOrgID", "value": "<org>@AdobeOrg"}],
         "users": [{"key": "<ours>", "action": ["delete"], "userIDs": [<id>]}],
         "include": ["target"], "regulation": "gdpr"}
        → {"jobs": [{"jobId": "...", ...}], ...}
    GET  <base>/jobs/<jobId>
        → {"jobId", "status": submitted|processing|complete|error,
           "productResponses": [{"product": "Target", "productStatusResponse":
                                 {"status", "message", "responseMsgCode"}}]}

Target's ids: a customer id (mbox3rdPartyId) is {"namespace": "THIRDPARTYID", "type": "target"};
Target's own visitor id (mboxPC) is namespace TNTID (id 9, type "standard"). Target answers
"Not applicable – user context not found" for an id it does not hold. Errors are not retried by
Adobe; a job is never re-filed here without a person deciding to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JOBS_PATH = "/jobs"
NOT_FOUND_WORDS = "user context not found"

# Adobe's status categories → PrivacyRequest states (models.PrivacyRequest.State values).
SUBMITTED, PROCESSING, COMPLETE, ERROR, NOT_FOUND = (
    "filed", "processing", "complete", "error", "not_found")
_CATEGORIES = {"submitted": SUBMITTED, "processing": PROCESSING, "complete": COMPLETE,
               "error": ERROR}


def user_id(identity_type: str, identity: str) -> dict[str, str]:
    """The Privacy Service id of a Target identity."""
    if identity_type == "mbox3rdPartyId":
        return {"namespace": "THIRDPARTYID", "type": "target", "value": identity}
    if identity_type == "mboxPC":
        return {"namespace": "TNTID", "type": "standard", "value": identity}
    raise ValueError(f"no Privacy Service namespace for identity type {identity_type!r}")


def job_body(*, org_id: str, key: str, identity_type: str, identity: str,
             regulation: str) -> dict[str, Any]:
    """A delete job for one user; `key` is ours and names no person ("profileops-<request id>")."""
    return {
        "companyContexts": [{"namespace": "imsOrgID", "value": org_id}],
        "users": [{"key": key, "action": ["delete"],
                   "userIDs": [user_id(identity_type, identity)]}],
        "include": ["target"],
        "regulation": regulation,
    }


def created_job_id(answer: Any) -> str:
    """The job id of a create answer, or "" when there is none."""
    jobs = answer.get("jobs") if isinstance(answer, dict) else None
    if isinstance(jobs, list) and jobs and isinstance(jobs[0], dict):
        job_id = jobs[0].get("jobId")
        if isinstance(job_id, str) and 0 < len(job_id) <= 100:
            return job_id
    return ""


@dataclass(frozen=True)
class JobStatus:
    state: str  # one of SUBMITTED, PROCESSING, COMPLETE, ERROR, NOT_FOUND
    status: str  # Adobe's words, as answered (capped)
    message: str
    code: str


def _text(value: Any, limit: int = 300) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _target_response(answer: dict[str, Any]) -> dict[str, Any]:
    for product in answer.get("productResponses") or []:
        if isinstance(product, dict) and str(product.get("product", "")).lower() == "target":
            response = product.get("productStatusResponse")
            return response if isinstance(response, dict) else {}
    return {}


def job_status(answer: Any) -> JobStatus:
    """What a status answer says: Target's own answer where it gave one, the job's otherwise.
    An answer we cannot read is an error (a person looks; nothing is retried blindly)."""
    if not isinstance(answer, dict):
        return JobStatus(ERROR, "", "Adobe's answer was not a JSON object.", "")
    target = _target_response(answer)
    status = _text(target.get("status")) or _text(answer.get("status"))
    message, code = _text(target.get("message")), _text(target.get("responseMsgCode"), 64)
    if NOT_FOUND_WORDS in message.lower():
        return JobStatus(NOT_FOUND, status, message, code)
    state = _CATEGORIES.get(status.lower())
    if state is None:
        return JobStatus(ERROR, status, message or f"Unknown job status {status!r}.", code)
    return JobStatus(state, status, message, code)
