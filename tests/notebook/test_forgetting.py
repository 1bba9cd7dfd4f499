"""Forgetting a visitor from the notebook (updates/notebook/forgetting.py): the service the admin
and the command run, as the session's person; purged values read as the purge note in
`updates()`; no table names the identity."""

from __future__ import annotations

import pandas as pd
import pytest
from django.core.exceptions import ValidationError

from profileops import notebook
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)
IDENTITY = "notebook-forget-me-77"


def test_a_dpo_forgets_a_visitor_and_the_updates_show_the_purge_note(connection, operator):
    make_user("dpo", "Data protection officers")
    staged = notebook.as_user("operator").stage(pd.DataFrame({
        "identity_type": ["mbox3rdPartyId", "mbox3rdPartyId"],
        "identity": [IDENTITY, "someone-else-1"], "tier": ["gold-N7", "silver-N8"]}),
        connection="acme")
    assert staged.ok

    result = notebook.as_user("dpo").forget_visitor(
        connection="acme", identity_type="mbox3rdPartyId", identity=IDENTITY,
        regulation="gdpr", file_at_target=False)

    [row] = result.table.to_dict("records")
    assert row["state"] == "local_done" and row["cancelled_updates"] == 1
    assert row["purged"]["profile updates"] == 1
    assert IDENTITY not in repr(result.table.to_dict()) and IDENTITY not in result._repr_html_()

    make_user("admin_nb", superuser=True)
    table = notebook.as_user("admin_nb").updates()
    purged = table[table["purged"] != ""]
    assert len(purged) == 1
    note = purged.iloc[0]["purged"]
    assert note.endswith("the visitor was forgotten")
    assert purged.iloc[0]["identity"] == note and purged.iloc[0]["attributes"] == note
    assert "gold-N7" not in repr(table.to_dict()) and IDENTITY not in repr(table.to_dict())
    kept = table[table["purged"] == ""].iloc[0]
    assert kept["identity"] == "someone-else-1" and kept["attributes"] == {"loyaltyTier": "silver-N8"}

    requests = notebook.as_user("dpo").privacy_requests().table
    assert list(requests["id"]) == [row["id"]]


def test_an_operator_cannot_forget_from_the_notebook(connection, operator):
    with pytest.raises(ValidationError) as refused:
        notebook.as_user("operator").forget_visitor(
            connection="acme", identity_type="mbox3rdPartyId", identity=IDENTITY)
    assert refused.value.code == "permission_denied"
    with pytest.raises(ValidationError):
        notebook.as_user("operator").privacy_requests()
