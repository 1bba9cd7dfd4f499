"""The emulator's Bulk Profile Update twin (target_emulator/bulk.py), over real HTTP."""

from __future__ import annotations

import re

import pytest
import requests

from target_emulator import bulk
from tests.helpers import http


def _upload(emulator, body: bytes, *, version: str = "v2", client: str = "acme") -> requests.Response:
    path = f"/m2/{client}/v2/profile/batchUpdate" if version == "v2" else \
        f"/m2/{client}/profile/batchUpdate"
    return http("POST", emulator.base_url + path, data=body, timeout=5)


def _status_url(answer: requests.Response) -> str:
    return re.search(r"<batchStatus>(.*?)</batchStatus>", answer.text).group(1).replace("&amp;", "&")


def test_a_v2_file_is_accepted_answers_an_edge_url_and_completes_after_the_delay(emulator_factory):
    emulator = emulator_factory(bulk={"delay": 30})
    emulator.seed_profile(identity="c-1", attributes={"tier": "bronze"})
    answer = _upload(emulator, b"batch=thirdPartyId,tier,city\nc-1,gold,Z%C3%BCrich\nc-2,silver,\n")
    assert answer.status_code == 200
    assert "<success>true</success>" in answer.text
    url = _status_url(answer)
    assert f":{emulator.edge_port}/m2/acme/profile/batchStatus?batchId=" in url
    assert str(emulator.port) not in url.split("/")[2]  # another listener than the upload's
    # The upload host does not serve batchStatus: a rebuilt URL fails.
    rebuilt = emulator.base_url + "/" + url.split("/", 3)[3]
    assert http("GET", rebuilt, timeout=5).status_code == 404

    assert "<status>incomplete</status>" in http("GET", url, timeout=5).text
    emulator.advance(31)
    details = http("GET", url + "&showDetails=true", timeout=5).text
    assert "<status>complete</status>" in details
    assert "<batchSize>2</batchSize>" in details
    assert "<consumedCount>2</consumedCount><successfulUpdates>2</successfulUpdates>" in details
    profiles = emulator.profiles
    assert profiles[("mbox3rdPartyId", "c-1")]["attributes"]["city"]["value"] == "Zürich"
    # v2 creates an unknown thirdPartyId's profile; the empty city is not written.
    assert set(profiles[("mbox3rdPartyId", "c-2")]["attributes"]) == {"tier"}


def test_v1_creates_no_profile_and_empty_values_never_clear(emulator_factory):
    emulator = emulator_factory(bulk={"delay": 0})
    emulator.seed_profile(identity="c-1", attributes={"tier": "bronze", "city": "Bern"})
    answer = _upload(emulator, b"batch=thirdPartyId,tier,city\nc-1,gold,\nc-9,gold,Basel\n,x,y\n",
                     version="v1")
    details = http("GET", _status_url(answer) + "&showDetails=true", timeout=5).text
    assert ("<consumedCount>3</consumedCount><successfulUpdates>1</successfulUpdates>"
            "<profilesNotFound>1</profilesNotFound><failedUpdates>1</failedUpdates>") in details
    held = emulator.profiles[("mbox3rdPartyId", "c-1")]["attributes"]
    assert held["tier"]["value"] == "gold" and held["city"]["value"] == "Bern"
    assert ("mbox3rdPartyId", "c-9") not in emulator.profiles


@pytest.mark.parametrize("body", [
    b"thirdPartyId,tier\nc-1,gold\n",  # no batch=
    b"batch=email,tier\nc-1,gold\n",  # unknown id column
    b"batch=thirdPartyId\nc-1\n",  # no attribute
    b"batch=thirdPartyId,tier,tier\nc-1,a,b\n",  # a name twice
    b"batch=thirdPartyId,tier\nc-1,\xff\n",  # not UTF-8
])
def test_malformed_files_are_refused_whole(emulator, body):
    answer = _upload(emulator, body)
    assert answer.status_code == 400
    assert "<success>false</success>" in answer.text
    assert emulator.bulk.batches == {}


def test_row_and_size_limits(emulator_factory):
    emulator = emulator_factory(bulk={"max_rows": 3, "max_file_bytes": 200})
    assert _upload(emulator, b"batch=thirdPartyId,a\n" + b"x,1\n" * 3).status_code == 200
    assert _upload(emulator, b"batch=thirdPartyId,a\n" + b"x,1\n" * 4).status_code == 400
    assert _upload(emulator, b"batch=thirdPartyId,a\nx," + b"1" * 200 + b"\n").status_code == 400


def test_fifty_calls_a_minute_then_503_shared_with_status_calls(emulator_factory):
    emulator = emulator_factory(bulk={"calls_per_minute": 3, "delay": 0})
    first = _upload(emulator, b"batch=thirdPartyId,a\nx,1\n")
    assert http("GET", _status_url(first), timeout=5).status_code == 200
    assert _upload(emulator, b"batch=thirdPartyId,a\nx,1\n").status_code == 200
    refused = _upload(emulator, b"batch=thirdPartyId,a\nx,1\n")
    assert refused.status_code == 503
    assert http("GET", _status_url(first), timeout=5).status_code == 503
    assert emulator.bulk.refused_by_rate == 2


def test_lost_rows_are_counted_successful_and_not_applied(emulator_factory):
    emulator = emulator_factory(bulk={"delay": 0, "loss_rate": 0.5}, seed=7)
    rows = b"".join(b"c-%d,v\n" % n for n in range(200))
    answer = _upload(emulator, b"batch=thirdPartyId,a\n" + rows)
    assert "<successfulUpdates>200</successfulUpdates>" in http("GET", 
        _status_url(answer) + "&showDetails=true", timeout=5).text
    lost = emulator.bulk.summary()[0]["lost"]
    assert 50 < len(lost) < 150
    assert all(("mbox3rdPartyId", identity) not in emulator.profiles for identity in lost)


def test_a_stuck_batch_applies_nothing(emulator_factory):
    emulator = emulator_factory(bulk={"delay": 0, "stuck": True})
    answer = _upload(emulator, b"batch=pcId,a\np-1,v\n")
    assert "<status>stuck</status>" in http("GET", _status_url(answer), timeout=5).text
    assert emulator.profiles == {}


def test_the_edge_can_be_another_loopback_address_and_takes_no_uploads(emulator_factory):
    emulator = emulator_factory(edge_host="127.0.0.2", bulk={"delay": 0})
    answer = _upload(emulator, b"batch=pcId,a\np-1,v\n")
    assert _status_url(answer).startswith(f"http://127.0.0.2:{emulator.edge_port}/")
    edge_upload = http("POST", f"http://127.0.0.2:{emulator.edge_port}/m2/acme/v2/profile/"
                                "batchUpdate", data=b"batch=pcId,a\np-1,v\n", timeout=5)
    assert edge_upload.status_code == 404


def test_the_bearer_token_is_required_when_set(emulator_factory):
    emulator = emulator_factory(token="s3cret")
    assert _upload(emulator, b"batch=pcId,a\np-1,v\n").status_code == 401
    ok = http("POST", emulator.base_url + "/m2/acme/v2/profile/batchUpdate",
                       data=b"batch=pcId,a\np-1,v\n", timeout=5,
                       headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_parse_file_rules():
    kind, names, rows, failed = bulk.parse_file(
        b"batch=thirdPartyId,a%2Cb,c\r\nid%2B1,x%20y,+\n\nid2,1\n")
    assert (kind, names, failed) == ("thirdPartyId", ["a,b", "c"], 1)
    assert rows == [["id+1", "x y", "+"]]
