"""The emulator's IMS and Target Admin API twins (target_emulator/adobe_admin.py), over real
HTTP: client credentials for an IMS token, the profile token fetched or minted, a mint replacing
the previous token at once, tokens that really expire, the profile APIs refusing any other
token with 401, the attribute list."""

from __future__ import annotations

import time

import pytest
import requests

from target_emulator import AdobeAdmin
from target_emulator.__main__ import build_parser, emulator_from_options
from tests.helpers import http

MEDIA = "application/vnd.adobe.target.v1+json"
TOKEN_PATH = "/acme/target/authentication/token?authorizationScope=profile_api"


@pytest.fixture
def adobe(emulator_factory):
    return emulator_factory(adobe=AdobeAdmin(profile_token_lifetime=0.6, ims_lifetime=0.8))


def ims(adobe, secret: str = "profileops-secret") -> requests.Response:
    return http("POST", adobe.base_url + "/ims/token/v3", data={
        "grant_type": "client_credentials", "client_id": "profileops-client",
        "client_secret": secret, "scope": "openid,AdobeID,target_sdk"}, timeout=5)


def admin(adobe, method: str, path: str = TOKEN_PATH, ims_token: str | None = None
          ) -> requests.Response:
    ims_token = ims_token or ims(adobe).json()["access_token"]
    return http(method, adobe.base_url + path, timeout=5, headers={
        "Authorization": f"Bearer {ims_token}", "x-api-key": "profileops-client",
        "Accept": MEDIA})


def update_with(adobe, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http("GET", adobe.base_url + "/m2/acme/profile/update?mbox3rdPartyId=c-1"
                        "&profile.tier=gold", headers=headers, timeout=5).status_code


def test_ims_gives_a_token_for_the_right_secret_only(adobe):
    answer = ims(adobe).json()
    assert answer["token_type"] == "bearer" and answer["expires_in"] == 0.8
    refused = ims(adobe, secret="wrong")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_the_admin_api_needs_a_current_ims_token_and_the_api_key(adobe):
    token = ims(adobe).json()["access_token"]
    assert admin(adobe, "GET", ims_token=token).status_code == 404  # no profile token yet
    assert admin(adobe, "GET", ims_token="made-up").status_code == 401
    time.sleep(0.9)  # the IMS token's lifetime
    assert admin(adobe, "GET", ims_token=token).status_code == 401


def test_a_minted_token_is_fetched_replaced_by_the_next_mint_and_expires(adobe):
    minted = admin(adobe, "POST")
    assert minted.status_code == 201
    first = minted.json()["accessToken"]
    assert minted.json()["scope"] == "profile_api" and 0 < minted.json()["expiresIn"] <= 0.6
    assert admin(adobe, "GET").json()["accessToken"] == first
    assert update_with(adobe, first) == 200
    assert adobe.adobe.counts.posts_while_valid == 0
    second = admin(adobe, "POST").json()["accessToken"]
    assert adobe.adobe.counts.posts_while_valid == 1  # it replaced a valid token
    assert update_with(adobe, first) == 401 and update_with(adobe, second) == 200
    time.sleep(0.7)  # the profile token's lifetime
    assert update_with(adobe, second) == 401 and update_with(adobe, None) == 401
    assert admin(adobe, "GET").status_code == 404


def test_the_attribute_list(adobe):
    answer = admin(adobe, "GET", "/acme/target/profileattributes/mbox")
    assert answer.json() == {"mboxProfileAttributes": ["loanStatus", "loyaltyTier"]}
    assert admin(adobe, "GET", "/other/target/profileattributes/mbox").status_code == 404


def test_the_command_line_serves_the_twins_with_adobe():
    parser = build_parser()
    plain = emulator_from_options(vars(parser.parse_args(["--port", "0"])))
    twins = emulator_from_options(vars(parser.parse_args(
        ["--port", "0", "--adobe", "--profile-token-lifetime", "60"])))
    assert plain.adobe is None
    assert twins.adobe.profile_token_lifetime == 60 and twins.adobe.tenant == "acme"
