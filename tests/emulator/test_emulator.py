"""The local Target emulator speaks the Single Profile Update and read APIs over real HTTP.

Requests are built with updates.target.build_request — the real client-side builder — so these
tests also pin down that what ProfileOps sends is what the emulator (and Target) decodes.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command

from target_emulator import ACKNOWLEDGMENT, TargetEmulator
from target_emulator.server import _RollingQuota
from updates.target import Outcome, build_request, read_answer

BASE_DIR = Path(__file__).resolve().parents[2]
UPDATE_PATH = "/m2/acme/profile/update"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

TRICKY_ATTRIBUTES = {
    "loanStatus": "funded",
    "a&b=c": "x&y=z",
    "plus+name": "1+1=2",
    "Mixed Case": "MiXeD cAsE",
    "percent%": "100% %20 literally, not a space",
    "hash#?/": "#fragment?query/path",
    "naïve": "Ünïcödé – ß € 漢字",
    "emoji😀": "🎉👍🏽",
    "note": "line one\nline two\r\nline three",
    "spaces": "  leading and trailing  ",
    "empty": "",
}


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


def send(session, emulator, *, identity="customer-1", identity_type="mbox3rdPartyId",
         attributes=None, timeout=5.0, client_code="acme"):
    req = build_request(base_url=emulator.base_url, client_code=client_code,
                        identity_type=identity_type, identity=identity,
                        attributes=attributes if attributes is not None else {"loanStatus": "funded"})
    return session.request(req.method, req.url, data=req.body, headers=req.headers, timeout=timeout)


def get_update(emulator, query):
    """GET with the query exactly as written (requests would re-quote a malformed '%zz')."""
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    try:
        connection.request("GET", f"{UPDATE_PATH}?{query}")
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        connection.close()


# --- acknowledgment and decoding ------------------------------------------------------------


def test_an_update_is_acknowledged_with_exactly_the_documented_body(session, emulator):
    response = send(session, emulator, attributes={"loanStatus": "funded"}, identity="c-42")

    assert response.status_code == 200
    assert response.text == ACKNOWLEDGMENT
    assert response.headers["Content-Type"].startswith("text/plain")
    assert read_answer(response.status_code, response.text).outcome is Outcome.ACKNOWLEDGED
    [record] = emulator.received
    assert record["method"] == "GET" and record["client_code"] == "acme"
    assert (record["identity_type"], record["identity"]) == ("mbox3rdPartyId", "c-42")
    assert record["attributes"] == {"loanStatus": "funded"}
    assert record["status"] == 200 and record["outcome"] == "acknowledged" and record["applied"]
    assert record["bytes"] == len(build_request(
        base_url=emulator.base_url, client_code="acme", identity_type="mbox3rdPartyId",
        identity="c-42", attributes={"loanStatus": "funded"}).url)
    profile = emulator.profiles[("mbox3rdPartyId", "c-42")]
    assert profile["attributes"]["loanStatus"]["value"] == "funded"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_tricky_names_and_values_arrive_exactly_as_staged(session, emulator, method):
    attributes = dict(TRICKY_ATTRIBUTES)
    if method == "POST":  # make the URL too long for GET so the builder switches to a form body
        attributes["padding"] = "p" * 9000
    identity = "Kund/in 😀 #1 & co=ok"
    req = build_request(base_url=emulator.base_url, client_code="acme",
                        identity_type="mbox3rdPartyId", identity=identity, attributes=attributes)
    assert req.method == method

    response = session.request(req.method, req.url, data=req.body, headers=req.headers, timeout=5)

    assert response.text == ACKNOWLEDGMENT
    [record] = emulator.received
    assert record["method"] == method
    assert record["identity"] == identity
    assert record["attributes"] == attributes
    stored = emulator.profiles[("mbox3rdPartyId", identity)]["attributes"]
    assert {name: item["value"] for name, item in stored.items()} == attributes


def test_a_literal_plus_decodes_as_a_space_and_percent_2B_as_a_plus(session, emulator):
    status, text = get_update(emulator, "mboxPC=abc&profile.a=one+two&profile.b=one%2Btwo")

    assert (status, text) == (200, ACKNOWLEDGMENT)
    assert emulator.received[0]["attributes"] == {"a": "one two", "b": "one+two"}


def test_a_post_body_must_be_a_form(session, emulator):
    response = session.post(f"{emulator.base_url}{UPDATE_PATH}", data=b"mboxPC=abc&profile.a=b",
                            headers={"Content-Type": "text/plain"}, timeout=5)

    assert response.status_code == 415
    assert emulator.profiles == {}


def test_the_bearer_token_sent_by_the_client_is_recorded(session, emulator):
    req = build_request(base_url=emulator.base_url, client_code="acme", identity_type="mboxPC",
                        identity="abc", attributes={"a": "b"}, token="tok-123")
    session.request(req.method, req.url, data=req.body, headers=req.headers, timeout=5)

    assert emulator.received[0]["authorization"] == "Bearer tok-123"


# --- size limits ----------------------------------------------------------------------------


def _padded_get_url(emulator, length):
    prefix = f"{emulator.base_url}{UPDATE_PATH}?mbox3rdPartyId=c-1&profile.pad="
    return prefix + "a" * (length - len(prefix))


def test_a_get_url_of_exactly_8192_bytes_is_accepted(session, emulator):
    pad = _padded_get_url(emulator, 8192).rpartition("=")[2]
    req = build_request(base_url=emulator.base_url, client_code="acme",
                        identity_type="mbox3rdPartyId", identity="c-1", attributes={"pad": pad})
    assert req.method == "GET" and len(req.url) == 8192

    response = session.get(req.url, timeout=5)

    assert response.status_code == 200 and response.text == ACKNOWLEDGMENT
    assert emulator.received[0]["bytes"] == 8192


def test_a_get_url_over_8192_bytes_is_refused_with_414_and_not_applied(session, emulator):
    url = _padded_get_url(emulator, 8193)
    assert len(url) == 8193

    response = session.get(url, timeout=5)

    assert response.status_code == 414
    [record] = emulator.received
    assert record["status"] == 414 and record["bytes"] == 8193 and not record["applied"]
    assert emulator.profiles == {}


def _form_body(length):
    prefix = b"mbox3rdPartyId=c-1&profile.pad="
    return prefix + b"a" * (length - len(prefix))


def test_a_post_body_of_exactly_61440_bytes_is_accepted(session, emulator):
    pad = "a" * (61440 - len(b"mbox3rdPartyId=c-1&profile.pad="))
    req = build_request(base_url=emulator.base_url, client_code="acme",
                        identity_type="mbox3rdPartyId", identity="c-1", attributes={"pad": pad})
    assert req.method == "POST" and len(req.body) == 61440

    response = session.post(req.url, data=req.body, headers=req.headers, timeout=5)

    assert response.status_code == 200 and response.text == ACKNOWLEDGMENT
    assert emulator.received[0]["bytes"] == 61440
    assert emulator.received[0]["attributes"]["pad"] == pad


def test_a_post_body_over_61440_bytes_is_refused_with_413_and_the_connection_stays_usable(
        session, emulator):
    response = session.post(f"{emulator.base_url}{UPDATE_PATH}", data=_form_body(61441),
                            headers=FORM, timeout=5)

    assert response.status_code == 413
    assert emulator.received[0]["bytes"] == 61441 and not emulator.received[0]["applied"]
    assert send(session, emulator).text == ACKNOWLEDGMENT
    assert emulator.stats()["connections_accepted"] == 1


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("query, reason", [
    ("profile.a=b", "no identity"),
    ("mboxPC=abc&mbox3rdPartyId=c-1&profile.a=b", "not both"),
    ("mboxPC=abc&mboxPC=abc&profile.a=b", "more than once"),
    ("mbox3rdPartyId=c-1&mbox3rdPartyId=c-2&profile.a=b", "more than once"),
    ("mbox3rdPartyId=&profile.a=b", "empty identity"),
    ("mboxPC=abc&profile.a=%zz", "percent-encoding"),
    ("mboxPC=abc&profile.a=%FF%FE", "UTF-8"),
    ("mboxPC=abc&profile.a=1&profile.a=2", "more than once"),
])
def test_a_malformed_update_is_refused_with_400_and_not_applied(emulator, query, reason):
    status, text = get_update(emulator, query)

    assert status == 400
    assert reason in text and len(text) < 100
    [record] = emulator.received
    assert record["status"] == 400 and record["outcome"] == "refused" and not record["applied"]
    assert emulator.profiles == {}


def test_a_malformed_post_body_is_refused_too(session, emulator):
    response = session.post(f"{emulator.base_url}{UPDATE_PATH}", data=b"profile.a=b",
                            headers=FORM, timeout=5)

    assert response.status_code == 400 and "no identity" in response.text


# --- profile read API -----------------------------------------------------------------------


def test_the_read_api_returns_a_known_third_party_profile(session, emulator):
    send(session, emulator, identity="c 7/ü", attributes={"loanStatus": "funded", "tier": "gold"})

    response = session.get(f"{emulator.base_url}/rest/v1/profiles/thirdPartyId/c%207%2F%C3%BC",
                           params={"client": "acme"}, timeout=5)

    assert response.status_code == 200
    body = response.json()
    assert body["client"] == "acme" and body["visitorId"] == "c 7/ü"
    assert body["modifiedAt"].endswith("Z")
    assert {name: item["value"] for name, item in body["profileAttributes"].items()} == {
        "loanStatus": "funded", "tier": "gold"}
    assert all("T" in item["modifiedAt"] for item in body["profileAttributes"].values())


def test_the_read_api_returns_a_known_mboxpc_profile_with_the_latest_values(session, emulator):
    send(session, emulator, identity_type="mboxPC", identity="1368007744041-575948.01_00",
         attributes={"loanStatus": "applied", "tier": "gold"})
    send(session, emulator, identity_type="mboxPC", identity="1368007744041-575948.01_00",
         attributes={"loanStatus": "funded"})

    response = session.get(f"{emulator.base_url}/rest/v1/profiles/1368007744041-575948.01_00",
                           params={"client": "acme"}, timeout=5)

    attributes = response.json()["profileAttributes"]
    assert attributes["loanStatus"]["value"] == "funded" and attributes["tier"]["value"] == "gold"


@pytest.mark.parametrize("path, message", [
    ("/rest/v1/profiles/thirdPartyId/nobody", "No profile found for client acme with third party id=nobody"),
    ("/rest/v1/profiles/0000-nobody.01_00", "No profile found for client acme with mboxPC=0000-nobody.01_00"),
])
def test_the_read_api_answers_404_for_an_unknown_visitor(session, emulator, path, message):
    send(session, emulator, identity="someone-else")

    response = session.get(f"{emulator.base_url}{path}", params={"client": "acme"}, timeout=5)

    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": message}


def test_the_read_api_does_not_show_a_profile_to_another_client(session, emulator):
    send(session, emulator, identity="c-1", client_code="acme")

    response = session.get(f"{emulator.base_url}/rest/v1/profiles/thirdPartyId/c-1",
                           params={"client": "other"}, timeout=5)

    assert response.status_code == 404


# --- fault injection ------------------------------------------------------------------------


def test_latency_delays_every_answer_but_the_update_is_applied(session, emulator_factory):
    emulator = emulator_factory(latency=0.4)

    with pytest.raises(requests.ReadTimeout):
        send(session, emulator, identity="slow", timeout=(5, 0.05))
    assert send(session, emulator, identity="patient", timeout=10).text == ACKNOWLEDGMENT

    assert emulator.acknowledged_count_by_identity() == {"slow": 1, "patient": 1}


def test_error_rate_answers_503_with_retry_after_and_applies_nothing(session, emulator_factory):
    emulator = emulator_factory(error_rate=1.0)

    response = send(session, emulator)

    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    answer = read_answer(response.status_code, response.text, response.headers.get("Retry-After"))
    assert answer.outcome is Outcome.TRANSIENT and answer.retry_after_seconds == 1.0
    [record] = emulator.received
    assert record["outcome"] == "error" and record["status"] == 503 and not record["applied"]
    assert emulator.profiles == {}


def test_timeout_rate_hangs_after_applying_the_update(session, emulator_factory):
    emulator = emulator_factory(timeout_rate=1.0, hang_seconds=5)

    with pytest.raises(requests.ReadTimeout):
        send(session, emulator, identity="c-9", timeout=(5, 0.1))

    [record] = emulator.received
    assert record["outcome"] == "timeout" and record["applied"]
    assert ("mbox3rdPartyId", "c-9") in emulator.profiles
    assert emulator.acknowledged_count_by_identity() == {}  # it never answered in time


def test_drop_rate_closes_the_connection_without_an_answer_and_applies_nothing(
        session, emulator_factory):
    emulator = emulator_factory(drop_rate=1.0)

    with pytest.raises(requests.ConnectionError):
        send(session, emulator, identity="c-3")

    [record] = emulator.received
    assert record["outcome"] == "dropped" and record["status"] is None and not record["applied"]
    assert emulator.profiles == {}
    emulator.configure(drop_rate=0.0)
    assert send(session, emulator, identity="c-3").text == ACKNOWLEDGMENT  # the session recovers


def test_wrong_body_rate_answers_200_without_the_acknowledgment(session, emulator_factory):
    emulator = emulator_factory(wrong_body_rate=1.0)

    response = send(session, emulator)

    assert response.status_code == 200 and ACKNOWLEDGMENT not in response.text
    assert read_answer(response.status_code, response.text).outcome is Outcome.UNEXPECTED
    assert emulator.received[0]["outcome"] == "wrong_body" and emulator.profiles == {}


def test_fault_shares_are_drawn_from_the_seed(session, emulator_factory):
    def statuses(emulator):
        return [send(session, emulator, identity=f"c-{i}").status_code for i in range(60)]

    first = statuses(emulator_factory(error_rate=0.5, seed=7))
    second = statuses(emulator_factory(error_rate=0.5, seed=7))

    assert first == second
    assert set(first) == {200, 503}


def test_faults_can_be_changed_while_running_and_bad_options_are_refused(session, emulator):
    assert send(session, emulator).status_code == 200
    emulator.configure(error_rate=1.0)
    assert send(session, emulator).status_code == 503
    emulator.configure(error_rate=0.0)
    assert send(session, emulator).status_code == 200

    with pytest.raises(ValueError):
        emulator.configure(error_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError):
        emulator.configure(colour="blue")
    assert emulator.config["error_rate"] == 0.0


def test_over_quota_answers_429_with_retry_after_and_does_not_count_it(session, emulator_factory):
    emulator = emulator_factory(quota=2, quota_window_seconds=3600)

    statuses = [send(session, emulator, identity=f"c-{i}") for i in range(3)]

    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert 1 <= int(statuses[2].headers["Retry-After"]) <= 3600
    assert read_answer(429, statuses[2].text).outcome is Outcome.TRANSIENT
    assert emulator.received[2]["outcome"] == "over_quota" and not emulator.received[2]["applied"]
    assert emulator.stats()["quota_used"] == 2
    emulator.reset()
    assert send(session, emulator).status_code == 200


def test_the_quota_window_rolls():
    quota = _RollingQuota()
    window = 10.0

    assert quota.try_take(100.0, window, 2) is None
    assert quota.try_take(105.0, window, 2) is None
    wait = quota.try_take(109.0, window, 2)
    assert wait is not None and 1.0 <= wait <= 1.01  # the first one frees up at about 110
    assert quota.try_take(110.01, window, 2) is None
    assert quota.try_take(110.02, window, 2) is not None
    assert quota.used(200.0, window) == 0


# --- counters, inspection, life cycle -------------------------------------------------------


def test_acknowledgments_are_counted_per_identity(session, emulator):
    send(session, emulator, identity="twice")
    send(session, emulator, identity="twice")
    send(session, emulator, identity="once")
    get_update(emulator, "profile.a=b")  # refused: not acknowledged

    assert emulator.acknowledged_count_by_identity() == {"twice": 2, "once": 1}
    stats = emulator.stats()
    assert stats["requests"] == 4 and stats["acknowledged"] == 3
    assert stats["by_status"] == {"200": 3, "400": 1}
    assert stats["identities_acknowledged"] == 2
    assert stats["identities_acknowledged_more_than_once"] == 1
    assert stats["max_acknowledgments_per_identity"] == 2


def test_without_keep_received_only_counters_are_kept(session, emulator_factory):
    emulator = emulator_factory(keep_received=False)

    for i in range(5):
        send(session, emulator, identity=f"c-{i % 2}")

    assert emulator.received == [] and emulator.profiles == {}
    assert emulator.stats()["acknowledged"] == 5
    assert emulator.acknowledged_count_by_identity() == {"c-0": 3, "c-1": 2}


def test_a_pooled_session_reuses_one_connection(session, emulator):
    for i in range(20):
        send(session, emulator, identity=f"c-{i}")

    assert emulator.stats()["connections_accepted"] == 1


def test_inspection_endpoints_show_and_reset_what_was_received(session, emulator):
    for i in range(3):
        send(session, emulator, identity=f"c-{i}")
    base = f"{emulator.base_url}/_emulator"

    received = session.get(f"{base}/received", params={"since": 1}, timeout=5).json()
    profiles = session.get(f"{base}/profiles", timeout=5).json()
    stats = session.get(f"{base}/stats", timeout=5).json()
    home = session.get(f"{emulator.base_url}/", timeout=5)

    assert [r["identity"] for r in received] == ["c-1", "c-2"]
    assert {p["identity"] for p in profiles} == {"c-0", "c-1", "c-2"}
    assert stats["acknowledged"] == 3
    assert home.status_code == 200 and "Target emulator" in home.text
    assert session.post(f"{base}/reset", timeout=5).json() == {"reset": True}
    assert emulator.received == [] and emulator.profiles == {}
    assert emulator.stats()["requests"] == 0


def test_faults_can_be_configured_over_http(session, emulator):
    base = f"{emulator.base_url}/_emulator"

    config = session.post(f"{base}/config", data=json.dumps({"error_rate": 1}), timeout=5).json()
    refused = session.post(f"{base}/config", data=json.dumps({"error_rate": 2}), timeout=5)

    assert config["error_rate"] == 1 and send(session, emulator).status_code == 503
    assert refused.status_code == 400 and emulator.config["error_rate"] == 1


def test_a_client_that_leaves_mid_answer_does_not_disturb_the_server(session, emulator, capfd):
    emulator.configure(latency=0.3)
    with pytest.raises(requests.ReadTimeout):
        send(session, emulator, identity="secret-id",
             attributes={"loanStatus": "secret-value"}, timeout=(5, 0.05))
    emulator.configure(latency=0.0)
    assert get_update(emulator, "mboxPC=secret-pc&profile.a=%zz")[0] == 400

    with requests.Session() as fresh:
        assert send(fresh, emulator, identity="next").text == ACKNOWLEDGMENT
    emulator.stop()  # lets the abandoned answer hit the closed socket before we look at stderr
    out, err = capfd.readouterr()
    assert "secret" not in out + err and "Traceback" not in err


def test_stop_closes_idle_keep_alive_connections(session, emulator):
    send(session, emulator)

    emulator.stop()

    with pytest.raises(requests.ConnectionError):
        send(session, emulator)


def test_the_emulator_listens_on_loopback_only():
    with pytest.raises(ValueError):
        TargetEmulator(host="0.0.0.0")
    with pytest.raises(CommandError):
        call_command("target_emulator", "--host", "0.0.0.0", "--port", "0")


def test_the_command_serves_until_terminated_and_prints_one_line(session):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "target_emulator", "--port", "0",
         "--seed", "3"],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        prefix = "Target emulator listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line[len(prefix):].isdigit()
        base_url = line.removeprefix("Target emulator listening on ")

        response = session.get(f"{base_url}{UPDATE_PATH}?mbox3rdPartyId=c-1&profile.a=b", timeout=5)
        stats = session.get(f"{base_url}/_emulator/stats", timeout=5).json()

        assert response.text == ACKNOWLEDGMENT and stats["acknowledged"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0
    assert out == "" and err == ""  # the one line was already read; nothing else, no logs


def test_an_answer_leaves_in_one_write_on_a_socket_without_nagle(emulator):
    # Two writes per answer (head, then body) on a socket with Nagle's algorithm add a delayed-ACK
    # wait (~40 ms on Linux) to every keep-alive request: the benchmarks would measure the
    # emulator instead of the sender. One write arrives whole in the client's first read.
    import socket

    client = socket.create_connection(("127.0.0.1", emulator.port), timeout=5)
    try:
        for _ in range(3):  # keep-alive: the second and third answers are where Nagle bites
            client.sendall(f"GET /m2/acme/profile/update?mbox3rdPartyId=c-1&profile.a=b "
                           f"HTTP/1.1\r\nHost: 127.0.0.1:{emulator.port}\r\n\r\n".encode())
            first_read = client.recv(65536)
            assert first_read.startswith(b"HTTP/1.1 200 ")
            assert first_read.endswith(ACKNOWLEDGMENT.encode())
        [server_side] = list(emulator._server._connections)
        assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        client.close()
