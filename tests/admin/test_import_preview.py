"""The import page says everything at once (issue 24, item 5): the empty template is linked where
people import, an unknown column is shown with the rows' problems, and a valid file's preview
states the quota it will cost against the connection's headroom."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from tests.helpers import logged_in
from updates.models import ImportJob, QuotaMinute

pytestmark = pytest.mark.django_db

IMPORT = "admin:updates_importjob_import"


def squash(html: str) -> str:
    return re.sub(r"\s+", " ", html)


def upload(client, connection, text: str):
    return client.post(reverse(IMPORT), {
        "connection": connection.pk,
        "file": SimpleUploadedFile("u.csv", text.encode(), content_type="text/csv")}, follow=True)


def test_the_import_page_links_each_connections_empty_template(client, operator, connection):
    client = logged_in(client, operator)
    content = client.get(reverse(IMPORT)).content.decode()
    template = reverse("admin:updates_importjob_template")
    csv_link = f"{template}?connection={connection.pk}&amp;format=csv"
    assert csv_link in content
    assert f"{template}?connection={connection.pk}&amp;format=xlsx" in content
    download = client.get(csv_link.replace("&amp;", "&"))
    assert download.status_code == 200
    assert b"".join(download.streaming_content).decode().lstrip("\ufeff").startswith(
        "identity_type,identity")


def test_the_preview_shows_an_unknown_column_and_the_rows_problems_together(
        client, operator, connection):
    page = upload(logged_in(client, operator), connection,
                  "identity_type,identity,loan_status,colour\n"
                  "mbox3rdPartyId,c-1,paid,blue\nnope,c-2,funded,red\n")
    content = squash(page.content.decode())
    assert "3 problems in this file" in content
    assert "Unknown column" in content and "colour" in content
    rows = re.findall(r'<td class="row">(\w+)</td><td>([^<]*)</td>', content)
    assert [r for r, _ in rows] == ["1", "2", "3"]


def test_the_preview_states_the_quota_the_file_costs_against_the_headroom(
        client, operator, connection):
    connection.quota_limit = 1000
    connection.save(update_fields=["quota_limit"])
    QuotaMinute.objects.create(connection=connection, requests=998,
                               minute=timezone.now().replace(second=0, microsecond=0))
    page = upload(logged_in(client, operator), connection,
                  "identity_type,identity,loan_status\n"
                  "mbox3rdPartyId,c-1,funded\nmbox3rdPartyId,c-2,funded\n"
                  "mbox3rdPartyId,c-3,funded\n")
    assert ImportJob.objects.get().status == "queued"
    quota = squash(re.search(r'<p class="import-quota".*?</p>', page.content.decode(),
                             re.S).group(0))
    assert "cost <strong>3 requests</strong>" in quota
    assert "has 2 of 1,000 left in the rolling 24 hours (998 used)" in quota
    assert "More than is left" in quota and " UTC" in quota


def test_a_preview_that_fits_the_headroom_does_not_warn(client, operator, connection):
    page = upload(logged_in(client, operator), connection,
                  "identity_type,identity,loan_status\nmbox3rdPartyId,c-1,funded\n")
    content = squash(page.content.decode())
    assert "cost <strong>1 request</strong>" in content
    assert "More than is left" not in content
