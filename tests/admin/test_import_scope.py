"""Import scope is the import (issue 21, item 2): wherever an import is used as a filter — the
queue's "Decide this import" batch, the import page's "See the imported updates" link and the
export made from that list, the notebook — its updates are selected by `import_job`. A
hand-staged update that carries the same reason text ("import #<id>: <file>") never joins."""

from __future__ import annotations

import csv
import io
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from tests.helpers import logged_in
from updates import importing, workflow
from updates.models import ProfileUpdate, UpdateStatus

S = UpdateStatus


@pytest.fixture
def job_and_lookalike(connection, operator, stage):
    rows = "".join(f"mbox3rdPartyId,imp-{i},funded\n" for i in range(3))
    job = importing.import_job_create(connection=connection, file_name="imp.csv",
                                      file_data=f"identity_type,identity,loan_status\n{rows}"
                                      .encode(), by=operator, submit=True)
    importing.import_job_start(job=job, by=operator)
    job.refresh_from_db()
    lookalike = workflow.update_submit(
        update=stage(identity="by-hand", reason=importing.import_reason(job),
                     attributes={"loanStatus": "funded", "loyaltyTier": "EVIL"}), by=operator)
    return job, lookalike


def test_the_imports_batch_is_its_updates_not_its_reason_text(client, supervisor,
                                                              job_and_lookalike):
    job, lookalike = job_and_lookalike
    client = logged_in(client, supervisor)
    page = client.get(reverse("updates_queue_batch"), {"import": job.pk, "sample": 50})
    assert page.context["count"] == 3
    assert lookalike.pk not in {r["update"].pk for r in page.context["sample"]}
    client.post(reverse("updates_queue_batch"), {"import": job.pk, "decision": "approve",
                                                 "shown": page.context["shown"]})
    assert ProfileUpdate.objects.filter(import_job=job, status=S.APPROVED).count() == 3
    assert ProfileUpdate.objects.get(pk=lookalike.pk).status == S.PENDING


def test_see_the_imported_updates_and_its_export_select_by_the_import(client, operator,
                                                                      job_and_lookalike):
    job, lookalike = job_and_lookalike
    client = logged_in(client, operator)  # the uploader
    status_page = client.get(reverse("admin:updates_importjob_status", args=[job.pk]))
    html = status_page.content.decode()
    link = html[html.index('href="', html.index("See the imported updates") - 200) + 6:]
    link = link[:link.index('"')].replace("&amp;", "&")
    assert parse_qs(urlsplit(link).query) == {"import_job": [str(job.pk)]}
    listing = client.get(link)
    assert listing.status_code == 200
    assert "by-hand" not in listing.content.decode()
    assert all(f"imp-{i}" in listing.content.decode() for i in range(3))
    response = client.get(reverse("admin:updates_importjob_export"), {
        "format": "csv", "layout": "all", "_changelist_filters": urlsplit(link).query})
    exported = list(csv.DictReader(io.StringIO(
        b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert sorted(r["identity"] for r in exported) == ["imp-0", "imp-1", "imp-2"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_notebook_selects_an_import_by_its_job(connection, operator, supervisor):
    pytest.importorskip("pandas")
    import pandas as pd

    from profileops import notebook

    try:
        nb = notebook.as_user(operator.username)
        result = nb.stage(pd.DataFrame({"identity_type": ["mbox3rdPartyId"] * 2,
                                        "identity": ["nb-1", "nb-2"],
                                        "loan_status": ["funded"] * 2}),
                          connection=connection, submit=True)
        assert result.import_job is not None
        lookalike = workflow.update_stage(
            connection=connection, identity_type="mbox3rdPartyId", identity="by-hand",
            attributes={"loanStatus": "funded"}, by=operator, reason=notebook.DEFAULT_REASON)
        workflow.update_submit(update=lookalike, by=operator)
        boss = notebook.as_user(supervisor.username)
        listed = boss.updates(import_job=result)
        assert sorted(listed["identity"]) == ["nb-1", "nb-2"]
        assert set(boss.preview(import_job=result.import_job).table["update_id"]) == set(
            result.ids)
        assert sorted(boss.approve(import_job=result).ids) == sorted(result.ids)
        assert ProfileUpdate.objects.get(pk=lookalike.pk).status == S.PENDING
    finally:
        notebook.close()
