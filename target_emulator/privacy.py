"""The emulator's twin of Adobe Privacy Service's jobs API, for Target's part of an erasure.

    POST /data/core/privacy/jobs          create delete jobs (one per user); 201 {"jobs": [...]}
    GET  /data/core/privacy/jobs/<jobId>  a job's status, with Target's productResponses

Both want `Authorization: Bearer …`, `x-api-key` and `x-gw-ims-org-id` (401 without); an
emulator with Adobe IMS (`adobe=AdobeAdmin()`) wants one of its IMS tokens and its client ID.
A job is "submitted" when created, "processing" until `processing_seconds` of emulator time
(TargetEmulator.advance) have passed since, then "complete": only then are the user's profiles
deleted from the emulator's store, so a profile read afterwards answers 404. An id the emulator
holds no profile for is answered as Target does: "Not applicable – user context not found".
`fail=True` makes every job end in "error" (Adobe does not retry those) and deletes nothing.
The emulator's `latency` delays these answers too (a job is created on arrival, before the
answer's delay: a client that gives up waiting has filed all the same); `drip_seconds` drips
them and `echo_headers` puts the request's headers in Target's message of a job's status.

Configure with `emulator.privacy.configure(processing_seconds=…, fail=…)` or
`POST /_emulator/privacy/config`; `GET /_emulator/privacy/jobs` lists the jobs.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

JOBS_PATH = "/data/core/privacy/jobs"
NOT_FOUND_MESSAGE = "Not applicable – user context not found"
# Privacy Service namespaces → the emulator's identity types.
NAMESPACES = {"THIRDPARTYID": "mbox3rdPartyId", "TNTID": "mboxPC"}
MAX_USERS, MAX_IDS = 1000, 9


class PrivacyJobs:
    """The jobs of one emulator, kept in memory."""

    def __init__(self, emulator: Any) -> None:
        self._emulator = emulator  # the TargetEmulator (server.py) whose profiles it deletes
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._numbers = itertools.count(1)
        self.processing_seconds = 0.0
        self.fail = False

    def configure(self, *, processing_seconds: float | None = None,
                  fail: bool | None = None) -> dict[str, Any]:
        if processing_seconds is not None:
            if processing_seconds < 0:
                raise ValueError("processing_seconds must not be negative")
            self.processing_seconds = float(processing_seconds)
        if fail is not None:
            self.fail = bool(fail)
        return {"processing_seconds": self.processing_seconds, "fail": self.fail}

    def reset(self) -> None:
        with self._lock:
            self._jobs.clear()

    def jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._status(job) for job in self._jobs.values()]

    # --- the API ------------------------------------------------------------------------------

    def create(self, body: Any) -> tuple[int, dict[str, Any]]:
        problem = _problem(body)
        if problem:
            return 400, {"error_code": "400", "message": problem}
        created = []
        with self._lock:
            for user in body["users"]:
                job_id = f"emulator-job-{next(self._numbers):06d}"
                self._jobs[job_id] = {
                    "jobId": job_id, "userKey": user["key"], "regulation": body["regulation"],
                    "ids": [(i["namespace"], i["value"]) for i in user["userIDs"]],
                    "created": self._emulator._now(), "outcome": None,
                }
                created.append({"jobId": job_id, "customer": {"user": {"key": user["key"]}}})
        return 201, {"jobs": created, "requestStatus": 1, "totalRecords": len(created)}

    def get(self, job_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return 404, {"error_code": "404", "message": f"Job {job_id} not found"}
            if job["outcome"] is None and (self._emulator._now() - job["created"]
                                           >= self.processing_seconds):
                job["outcome"] = self._finish(job)
            job["polled"] = True
            return 200, self._status(job)

    # --- inside -------------------------------------------------------------------------------

    def _finish(self, job: dict[str, Any]) -> dict[str, str]:
        """Target's part: delete what it holds for the ids (caller holds self._lock)."""
        if self.fail:
            return {"status": "error", "message": "Target failed to process the request",
                    "responseMsgCode": "PRIVACY-ERROR-500"}
        emulator, deleted = self._emulator, 0
        with emulator._lock:
            emulator._apply_due()
            for namespace, value in job["ids"]:
                key = (NAMESPACES.get(namespace, ""), value)
                if emulator._profiles.pop(key, None) is not None:
                    deleted += 1
        if not deleted:
            return {"status": "complete", "message": NOT_FOUND_MESSAGE,
                    "responseMsgCode": "PRIVACY-NOTFOUND-404"}
        return {"status": "complete", "message": "Deleted", "responseMsgCode": "PRIVACY-DONE-200"}

    def _status(self, job: dict[str, Any]) -> dict[str, Any]:
        outcome = job["outcome"]
        if outcome is None:
            status = "processing" if job.get("polled") else "submitted"
            product = {"status": status, "message": "", "responseMsgCode": ""}
        else:
            status, product = outcome["status"], outcome
        return {"jobId": job["jobId"], "userKey": job["userKey"], "action": "delete",
                "regulation": job["regulation"], "status": status,
                "productResponses": [{"product": "Target", "retryCount": 0,
                                      "productStatusResponse": dict(product)}]}


def _problem(body: Any) -> str:
    """What is wrong with a create body, as Adobe would refuse it ("" when nothing)."""
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    contexts = body.get("companyContexts")
    if not (isinstance(contexts, list) and any(
            isinstance(c, dict) and c.get("namespace") == "imsOrgID" and c.get("value")
            for c in contexts)):
        return "companyContexts must name the imsOrgID."
    if not isinstance(body.get("regulation"), str) or not body["regulation"]:
        return "regulation is required."
    if not isinstance(body.get("include"), list) or "target" not in [
            str(p).lower() for p in body["include"]]:
        return "include must name target."
    users = body.get("users")
    if not isinstance(users, list) or not 1 <= len(users) <= MAX_USERS:
        return f"users must hold 1 to {MAX_USERS} users."
    for user in users:
        ids = user.get("userIDs") if isinstance(user, dict) else None
        if not isinstance(user.get("key") if isinstance(user, dict) else None, str) or \
                not isinstance(ids, list) or not 1 <= len(ids) <= MAX_IDS or \
                user.get("action") != ["delete"] and user.get("action") != ["access", "delete"]:
            return f"each user needs a key, action [\"delete\"] and 1 to {MAX_IDS} userIDs."
        if not all(isinstance(i, dict) and isinstance(i.get("namespace"), str)
                   and isinstance(i.get("value"), str) and i["value"] for i in ids):
            return "each userID needs a namespace and a value."
    return ""


def handle(handler: Any, method: str, path: str) -> None:
    """Answer one request under JOBS_PATH (called by server._Handler._route)."""
    jobs: PrivacyJobs = handler.server.emulator.privacy
    body = handler._read_body(64 * 1024)[0]
    if body is None:
        handler._send_json(413, {"error_code": "413", "message": "body too large"})
        return
    adobe = handler.server.emulator.adobe  # with IMS (adobe_admin.py): its tokens only
    if not (handler.headers.get("Authorization", "").startswith("Bearer ")
            and handler.headers.get("x-api-key") and handler.headers.get("x-gw-ims-org-id")) or (
            adobe is not None and not adobe._admin_authorized(handler.headers)):
        handler._send_json(401, {"error_code": "401013", "message": "Oauth token is not valid"})
        return
    rest = path[len(JOBS_PATH):].strip("/")
    if method == "POST" and not rest:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            payload = None
        answer = jobs.create(payload)  # the job exists now, whenever the answer arrives
        handler._wait(handler.server.emulator._config.latency)
        handler._send_json(*answer)
    elif method == "GET" and rest and "/" not in rest:
        handler._wait(handler.server.emulator._config.latency)
        status, payload = jobs.get(rest)
        if status == 200 and handler.server.emulator._config.echo_headers:
            # A hostile answer: Target's message quotes the request's headers, token included.
            payload["productResponses"][0]["productStatusResponse"]["message"] = \
                handler._echoed_headers()
        handler._send_json(status, payload)
    else:
        handler._send_json(405 if not rest else 404, {"error_code": "404", "message": "Not Found"})
