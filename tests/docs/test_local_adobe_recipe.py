"""The user guide's "Trying it locally" (docs/user-guide/connecting-to-target.md) works as
written: the emulator command it gives, the connection values of its table entered through the
service the admin form calls, and a profile token then obtained with nothing pasted."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from target_emulator.__main__ import build_parser, emulator_from_options
from tests.conftest import make_user
from updates import connections, credentials
from updates.models import TargetConnection

PAGE = Path(__file__).resolve().parents[2] / "docs" / "user-guide" / "connecting-to-target.md"
FIELDS = {"Label": "label", "Client code": "client_code", "Base URL": "base_url",
          "Client ID": "adobe_client_id", "Target tenant": "target_tenant",
          "IMS token endpoint": "ims_token_url", "Target Admin API": "admin_api_url"}


def local_section() -> str:
    text = PAGE.read_text(encoding="utf-8")
    return text[text.index("## Trying it locally"):]


@pytest.mark.django_db
def test_the_local_recipe_gives_a_connection_that_obtains_its_token():
    section = local_section()
    command = re.search(r"^\.venv/bin/python manage\.py target_emulator (.+)$", section, re.M)
    assert command, "the page gives the emulator's command line"
    args = shlex.split(command.group(1))
    documented_port = args[args.index("--port") + 1]
    args[args.index("--port") + 1] = "0"  # a free port here
    emulator = emulator_from_options(vars(build_parser().parse_args(args))).start()
    try:
        rows = dict(re.findall(r"^\| ([^|]+?) \| `([^`]+)` \|$", section, re.M))
        values = {field: rows[name].replace(f":{documented_port}", f":{emulator.port}")
                  for name, field in FIELDS.items()}
        admin = make_user("admin-recipe", superuser=True)
        connection = connections.connection_save(
            connection=TargetConnection(**values), by=admin,
            new_client_secret=rows["Client secret"])
        token = credentials.profile_token(connection)
        assert token and token == emulator.adobe.current_profile_token()
    finally:
        emulator.stop()
