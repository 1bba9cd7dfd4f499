"""The emulator's Privacy Service jobs API (target_emulator/privacy.py), over real HTTP: create,
get, the statuses, "user context not found", errors — and the profile really goes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

JOBS = "/data/core/privacy/jobs"
HEADERS = {"Authorization": "Bearer ims-token", "x-api-key": "client-id",
           "x-gw-ims-org-id": "ORG@AdobeOrg", "Content-Type": "application/json"}


def body(*ids, regulation="gdpr"):
    return {"companyContexts": [{"namespace": "imsOrgID", "value": "ORG@AdobeOrg"}],
            "users": [{"key": "profileops-1", "action": ["delete"], "userIDs": list(ids)}],
            "include": ["target"], "regulation": regulation}


def call(emulator, path, payload=None, headers=HEADERS):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(emulator.base_url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def third_party(value):
    return {"namespace": "THIRDPARTYID", "type": "target", "value": value}


def read(emulator, identity):
    url = f"{emulator.base_url}/rest/v1/profiles/thirdPartyId/{identity}?client=acme"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_a_job_deletes_the_profile_so_a_read_is_404(emulator):
    emulator.seed_profile(identity="c-1", attributes={"tier": "gold"}, client="acme")
    assert read(emulator, "c-1") == 200
    status, created = call(emulator, JOBS, body(third_party("c-1")))
    assert status == 201
    job_id = created["jobs"][0]["jobId"]

    status, job = call(emulator, f"{JOBS}/{job_id}")

    assert status == 200 and job["status"] == "complete"
    target = job["productResponses"][0]
    assert target["product"] == "Target"
    assert target["productStatusResponse"]["message"] == "Deleted"
    assert read(emulator, "c-1") == 404


def test_a_job_goes_submitted_processing_complete_on_the_emulator_clock(emulator):
    emulator.privacy.configure(processing_seconds=3600)
    emulator.seed_profile(identity="c-2", attributes={"tier": "gold"})
    job_id = call(emulator, JOBS, body(third_party("c-2")))[1]["jobs"][0]["jobId"]
    assert emulator.privacy.jobs()[0]["status"] == "submitted"
    assert call(emulator, f"{JOBS}/{job_id}")[1]["status"] == "processing"
    assert read(emulator, "c-2") == 200  # not yet
    emulator.advance(3600)
    assert call(emulator, f"{JOBS}/{job_id}")[1]["status"] == "complete"
    assert read(emulator, "c-2") == 404


def test_an_id_target_does_not_hold_is_user_context_not_found(emulator):
    job_id = call(emulator, JOBS, body(third_party("nobody")))[1]["jobs"][0]["jobId"]
    answer = call(emulator, f"{JOBS}/{job_id}")[1]["productResponses"][0]["productStatusResponse"]
    assert answer["status"] == "complete"
    assert "user context not found" in answer["message"]


def test_target_visitor_ids_are_the_tntid_namespace(emulator):
    emulator.seed_profile(identity="pc-1", identity_type="mboxPC", attributes={"a": "b"})
    job_id = call(emulator, JOBS, body({"namespace": "TNTID", "type": "standard",
                                        "value": "pc-1"}))[1]["jobs"][0]["jobId"]
    call(emulator, f"{JOBS}/{job_id}")
    assert emulator.profiles == {}


def test_a_failing_target_ends_the_job_in_error_and_deletes_nothing(emulator):
    emulator.privacy.configure(fail=True)
    emulator.seed_profile(identity="c-3", attributes={"a": "b"})
    job_id = call(emulator, JOBS, body(third_party("c-3")))[1]["jobs"][0]["jobId"]
    assert call(emulator, f"{JOBS}/{job_id}")[1]["status"] == "error"
    assert read(emulator, "c-3") == 200


@pytest.mark.parametrize("broken", [
    {}, {**body(third_party("x")), "include": ["analytics"]},
    {**body(third_party("x")), "companyContexts": []},
    body(*[third_party(str(n)) for n in range(10)]),  # more than 9 ids for one user
    {**body(third_party("x")), "users": []},
])
def test_a_malformed_job_is_refused_with_400(emulator, broken):
    assert call(emulator, JOBS, broken)[0] == 400
    assert emulator.privacy.jobs() == []


def test_without_credentials_the_jobs_api_answers_401(emulator):
    status, _ = call(emulator, JOBS, body(third_party("x")),
                     headers={"Content-Type": "application/json"})
    assert status == 401


def test_an_unknown_job_is_404(emulator):
    assert call(emulator, f"{JOBS}/no-such-job")[0] == 404
