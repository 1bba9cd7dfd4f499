"""After a visitor whose update went out through the bulk route is forgotten, no stored bulk file
holds it any more — looked for inside compressed bytes, which the raw scan of
test_forget_leaves_no_trace.py cannot see into: every BinaryField of every installed model is
decompressed (zlib, gzip, zip), found by introspection rather than a kept list. Identities and
values are looked for as they are and percent-encoded, as a bulk file holds them. Real HTTP to the
emulator's bulk twin (tests/fixtures_bulk.py); SQLite, and PostgreSQL with DATABASE_URL.

The guarantee in docs/reference/security.md ("Forgetting a visitor leaves no trace of it").
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
import zlib

import pytest
from django.apps import apps
from django.db import models
from django.utils import timezone

from tests.conftest import FORGOTTEN_IDENTITY, make_user
from tests.security.test_forget_leaves_no_trace import dump, raw_scan
from updates import bulk_polling, bulk_sending, errors, forgetting, verification
from updates.models import BulkFile, PrivacyRequest, ProfileUpdate
from updates.target import encode_component

VALUES = {"loyaltyTier": "platinum-X9Q", "callNote": "called about the mortgage, 7Q2 & co"}
NEEDLES = {text for value in (FORGOTTEN_IDENTITY, *VALUES.values())
           for text in (value, encode_component(value))}
KEPT_IDENTITY = "c-7"


def _opened(data: bytes) -> bytes:
    """`data` decompressed when it is zlib, gzip or a zip archive; else as it is."""
    try:
        return zlib.decompressobj(wbits=47).decompress(data)  # 47: zlib or gzip, by header
    except zlib.error:
        pass
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return b"".join(archive.read(name) for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return data


def binary_scan() -> str:
    """Every BinaryField of every installed model, decompressed, as text."""
    found = []
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.concrete_fields:
            if isinstance(field, models.BinaryField):
                for value in model._base_manager.values_list(field.attname, flat=True):
                    found.append(_opened(bytes(value or b"")).decode("utf-8", "replace"))
    return "\n".join(found)


def _rows() -> list[dict]:
    rows = [{"identity_type": "mbox3rdPartyId", "identity": f"c-{i}",
             "attributes": {"loyaltyTier": f"gold-{i}", "callNote": f"note {i}"}}
            for i in range(120)]
    rows[60] = {"identity_type": "mbox3rdPartyId", "identity": FORGOTTEN_IDENTITY,
                "attributes": dict(VALUES)}
    return rows


@pytest.fixture
def sent_in_bulk(decide, bulk_connection, bulk_target):
    """The forgotten visitor's update and 119 others sent in one bulk file, processed by the
    emulator, polled and read back."""
    decide(_rows())
    now = timezone.now()
    assert bulk_sending.bulk_send_due(now=now).accepted == 1
    bulk_target.advance(31)
    assert bulk_polling.bulk_poll_due(now=now + dt.timedelta(seconds=31)) == 1
    verification.updates_verify_due(now=now + dt.timedelta(seconds=32))
    return BulkFile.objects.get()


def test_the_bulk_file_really_holds_the_visitor_before_it_is_forgotten(sent_in_bulk):
    # Without this, the test below could pass on a scan that never looked inside the body.
    scanned = binary_scan()
    for needle in NEEDLES:
        if needle != VALUES["callNote"]:  # the body holds it percent-encoded only
            assert needle in scanned, needle
    assert encode_component(VALUES["callNote"]) not in raw_scan()  # the raw scan cannot see it


def test_forgetting_a_bulk_sent_visitor_leaves_no_trace_in_any_binary_field(
        sent_in_bulk, bulk_connection):
    sha256, size = sent_in_bulk.sha256, sent_in_bulk.size_bytes
    dpo = make_user("dpo", "Data protection officers")
    request = forgetting.visitor_forget(connection=bulk_connection, identity_type="mbox3rdPartyId",
                                        identity=FORGOTTEN_IDENTITY, regulation="gdpr", by=dpo)

    scanned, raw, dumped = binary_scan(), raw_scan(), dump()
    for needle in NEEDLES:
        assert needle not in scanned, needle
        assert needle not in raw, needle
        assert needle not in dumped, needle
    assert f"\n{KEPT_IDENTITY},note%207,gold-7\n" in scanned  # the others' lines are all there
    file = BulkFile.objects.get()
    assert (file.sha256, file.size_bytes) == (sha256, size)  # the proof of what was sent
    assert zlib.decompress(bytes(file.body)).count(b"\n") == 1 + 119
    assert file.purges == [{"at": request.requested_at.isoformat(), "lines": 1,
                            "privacy_request": request.pk}]
    assert file.purge_note == (f"1 line(s) removed on {request.requested_at:%Y-%m-%d} by "
                               f"privacy request #{request.pk}")
    stored = PrivacyRequest.objects.get(pk=request.pk)
    assert (stored.purge_counts["bulk files"], stored.purge_counts["bulk file lines"]) == (1, 1)


def test_forgetting_is_refused_while_the_visitor_is_in_a_file_not_yet_accepted(
        decide, bulk_connection):
    decide(_rows())
    job = bulk_sending.bulk_job_start(connection=bulk_connection, owner="test-run",
                                      now=timezone.now())
    assert job.files.get().state == BulkFile.State.PENDING
    dpo = make_user("dpo", "Data protection officers")
    with pytest.raises(errors.Refused) as refused:
        forgetting.visitor_forget(connection=bulk_connection, identity_type="mbox3rdPartyId",
                                  identity=FORGOTTEN_IDENTITY, regulation="gdpr", by=dpo)
    assert refused.value.code == errors.IN_FLIGHT
    assert FORGOTTEN_IDENTITY.encode() in zlib.decompress(bytes(job.files.get().body))
    assert not PrivacyRequest.objects.exists()
    assert ProfileUpdate.objects.filter(identity=FORGOTTEN_IDENTITY).exists()
