"""The emulator's faithful mode: Target as Adobe documents it, over real HTTP."""

from __future__ import annotations

import json

import pytest
import requests

from target_emulator import TargetEmulator
from target_emulator.__main__ import build_parser, emulator_from_options


def update(emulator: TargetEmulator, identity: str, headers=None, **attributes) -> requests.Response:
    params = {"mbox3rdPartyId": identity, **{f"profile.{k}": v for k, v in attributes.items()}}
    return requests.get(f"{emulator.base_url}/m2/acme/profile/update", params=params,
                        headers=headers or {}, timeout=5)


def read(emulator: TargetEmulator, identity: str, headers=None) -> requests.Response:
    return requests.get(f"{emulator.base_url}/rest/v1/profiles/thirdPartyId/{identity}",
                        params={"client": "acme"}, headers=headers or {}, timeout=5)


def test_an_update_for_an_unknown_visitor_is_acknowledged_and_creates_no_profile(faithful_emulator):
    answer = update(faithful_emulator, "nobody", tier="gold")
    faithful_emulator.advance(3600)

    assert answer.status_code == 200 and answer.text == "trueRequest successfully submitted"
    missing = read(faithful_emulator, "nobody")
    assert missing.status_code == 404
    assert missing.json() == {"status": 404, "message":
                              "No profile found for client acme with third party id=nobody"}
    assert faithful_emulator.profiles == {}


def test_an_update_for_a_known_visitor_shows_only_after_the_apply_delay(faithful_emulator):
    faithful_emulator.seed_profile(identity="c-1", attributes={"tier": "silver", "city": "Ghent"},
                                   modified_at="2026-01-01T00:00:00.000Z")
    update(faithful_emulator, "c-1", tier="gold")

    before = read(faithful_emulator, "c-1").json()
    faithful_emulator.advance(61)
    after = read(faithful_emulator, "c-1").json()

    assert before["profileAttributes"]["tier"] == {"value": "silver",
                                                   "modifiedAt": "2026-01-01T00:00:00.000Z"}
    assert after["profileAttributes"]["tier"]["value"] == "gold"
    assert after["profileAttributes"]["tier"]["modifiedAt"] > "2026-01-01T00:00:00.000Z"
    assert after["profileAttributes"]["city"]["modifiedAt"] == "2026-01-01T00:00:00.000Z"
    assert faithful_emulator.pending_count() == 0


def test_the_default_mode_still_creates_profiles_at_once(emulator):
    update(emulator, "new-visitor", tier="gold")
    assert read(emulator, "new-visitor").json()["profileAttributes"]["tier"]["value"] == "gold"


def test_a_configured_token_is_required_for_updates_and_reads(emulator_factory):
    emulator = emulator_factory(faithful=True, token="s3cret",
                                profiles=[{"identity": "c-1", "attributes": {"tier": "a"}}])
    good = {"Authorization": "Bearer s3cret"}

    assert update(emulator, "c-1", tier="b").status_code == 401
    assert read(emulator, "c-1").status_code == 401
    assert read(emulator, "c-1", {"Authorization": "Bearer wrong"}).status_code == 401
    assert update(emulator, "c-1", good, tier="b").status_code == 200
    assert read(emulator, "c-1", good).status_code == 200


def test_profiles_are_seeded_over_http_and_bad_seeds_are_refused(faithful_emulator):
    base = f"{faithful_emulator.base_url}/_emulator"
    seeded = requests.post(f"{base}/profiles", timeout=5, data=json.dumps(
        [{"identity": "1368007744041-575948.01_00", "identity_type": "mboxPC",
          "attributes": {"tier": "gold"}}]))
    refused = requests.post(f"{base}/profiles", timeout=5,
                            data=json.dumps({"identity": "x", "attributes": {"n": 3}}))

    assert seeded.json() == {"seeded": 1}
    by_pc = requests.get(f"{faithful_emulator.base_url}/rest/v1/profiles/"
                         "1368007744041-575948.01_00", params={"client": "acme"}, timeout=5)
    assert by_pc.json()["profileAttributes"]["tier"]["value"] == "gold"
    assert refused.status_code == 400 and "string values" in refused.json()["message"]


def test_the_command_line_seeds_from_a_file_and_names_a_bad_one(tmp_path):
    good = tmp_path / "profiles.json"
    good.write_text(json.dumps([{"identity": "c-9", "attributes": {"tier": "gold"}}]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"identity": "c-9", "colour": "blue", "attributes": {}}]))
    parser = build_parser()

    emulator = emulator_from_options(vars(parser.parse_args(
        ["--faithful", "--apply-delay", "5", "--profiles", str(good)])))
    assert emulator.faithful and emulator.apply_delay == 5.0
    assert set(emulator.profiles) == {("mbox3rdPartyId", "c-9")}
    with pytest.raises(ValueError, match="seed profile 1"):
        emulator_from_options(vars(parser.parse_args(["--profiles", str(bad)])))
