"""No operator- or file-supplied text runs as HTML, on any admin page, for any role.

A script payload is stored in every free-text field an operator, an administrator, a file or
Target's answer can fill — connection label, client code and base URL; mapping source and
target names, choices, pattern and help text; an update's identity, attribute names and values,
reason, decision comment and last error; audit comments and recorded changes; attempts' answers
and errors; import file names and errors; a user name. Where a validator would refuse the
payload it is stored through the ORM, so rendering is tested whatever the checks upstream let
through. Then every admin page that can show it is rendered as operator, supervisor and
superuser, and the raw markup must never appear: only its escaped form.

Each field gets its own tag in the payload (`alert("lbl")`), so a failure names the field.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from tests.conftest import ensure_roles, make_user
from updates import importing
from updates.models import (
    AttributeMapping, AuditEvent, ImportJob, ProfileUpdate, SendAttempt, SendRun,
    TargetConnection,
)

# What must never reach a page unescaped. The admin's own pages carry <script src=…> tags, but
# never these.
RAW_MARKERS = ("<script>alert(", "<img src=x onerror=")
ESCAPED_MARKERS = ("&lt;script&gt;alert(", "&lt;img src=x onerror=")


def payload(tag: str) -> str:
    """A script element and an attribute break-out, tagged with the field it is stored in."""
    return f'<script>alert("{tag}")</script>"><img src=x onerror=alert("{tag}")>'


ROLES = ("operator", "supervisor", "admin")


@pytest.fixture
def hostile(db):
    """One object of every operator-writable model, every free-text field holding a payload."""
    ensure_roles()
    operator = make_user("operator", "Operators")
    supervisor = make_user("supervisor", "Supervisors")
    admin_user = make_user("admin", superuser=True)
    # A user name an administrator could type (Django's validator refuses it; the ORM does not).
    author = User.objects.create_user(username=payload("usr"), password="pw", is_staff=True)
    author.groups.add(Group.objects.get(name="Operators"))

    conn = TargetConnection.objects.create(
        label=payload("lbl"), client_code=payload("cc"),
        base_url='http://127.0.0.1:9/"><img src=x onerror=alert("url")>')
    choice = AttributeMapping.objects.create(
        connection=conn, source_name=payload("src"), target_name=payload("tgt"),
        value_type="choice", choices=f"plain\n{payload('chc')}", help_text=payload("hlp"),
        pattern=payload("pat"))
    note = AttributeMapping.objects.create(
        connection=conn, source_name="note", target_name="callNote", max_length=1000,
        help_text=payload("hl2"), pattern="(?s).*")
    now = timezone.now()
    common = dict(connection=conn, identity_type="mbox3rdPartyId", created_by=author,
                  last_edited_by=author, created_at=now, last_edited_at=now)
    pending = ProfileUpdate.objects.create(
        identity=payload("idn"), attributes={payload("anm"): payload("avl"), "callNote": "x"},
        reason=payload("rsn"), status="pending", submitted_at=now, **common)
    failed = ProfileUpdate.objects.create(
        identity=payload("id2"), attributes={"callNote": payload("av2")}, reason=payload("rs2"),
        status="failed", decision_comment=payload("dcm"), decided_by=supervisor, decided_at=now,
        last_error=payload("err"), **common)
    # Sent, with what Target held before (the revert block) — Target's answer is outside text too.
    sent = ProfileUpdate.objects.create(
        identity=payload("id3"), attributes={"callNote": payload("av3")}, reason=payload("rs3"),
        status="sent", prior_values={"callNote": {"value": payload("prv")}}, prior_read_at=now,
        verification_state="not_applied", **common)
    AuditEvent.objects.create(
        at=now, actor=None, action="verification_check", update=sent, connection=conn,
        comment=payload("vcm"), changes={"at_target": payload("vat")})
    for update in (pending, failed):
        AuditEvent.objects.create(
            at=now, actor=author, action="edited", update=update, connection=conn,
            from_status="draft", to_status=update.status, comment=payload("cmt"),
            changes={payload("chk"): {"before": payload("bef"), "after": payload("aft")},
                     "attempt": payload("plv")})
    AuditEvent.objects.create(
        at=now, actor=author, action="mapping_changed", mapping=choice, connection=conn,
        changes={"help_text": {"before": payload("mbf"), "after": payload("maf")}})
    SendAttempt.objects.create(
        update=failed, connection=conn, number=1, started_at=now, method="GET",
        request_bytes=10, http_status=400, response_body=payload("bdy"), outcome="permanent",
        error=payload("aer"), worker=payload("wrk"))
    SendRun.objects.create(started_at=now - dt.timedelta(minutes=1), finished_at=now,
                           worker=payload("rwk"), error=payload("rer"))
    # A file through the real import: its name and its cells are the payloads.
    csv = ("identity_type,identity,note\r\n"
           f'mbox3rdPartyId,"{payload("fid").replace(chr(34), chr(34) * 2)}",'
           f'"{payload("fnv").replace(chr(34), chr(34) * 2)}"\r\n').encode()
    queued = importing.import_job_create(connection=conn, file_name=payload("fnm"),
                                         file_data=csv, by=operator)
    invalid = ImportJob.objects.create(
        connection=conn, created_by=operator, file_name=payload("fn2"), file_format="csv",
        file_data=b"", status="invalid", error_count=1,
        errors=[{"row": 2, "column": payload("ecl"), "message": payload("emg")}])
    return {"users": {"operator": operator, "supervisor": supervisor, "admin": admin_user},
            "connection": conn, "choice": choice, "note": note, "pending": pending,
            "failed": failed, "sent": sent, "queued": queued, "invalid": invalid}


def pages(h) -> list[str]:
    """Every admin page that can show one of the stored payloads."""
    u, m, c = "/admin/updates/profileupdate/", "/admin/updates/attributemapping/", \
        "/admin/updates/targetconnection/"
    j = "/admin/updates/importjob/"
    conn = h["connection"].pk
    return [
        "/admin/", "/admin/updates/",
        u, f"{u}?q=%3Cscript%3Ealert(1)%3C/script%3E", f"{u}?status__exact=pending",
        f"{u}?reason={payload('qry')}", f"{u}?connection__id__exact={conn}",
        f"{u}{h['pending'].pk}/change/", f"{u}{h['failed'].pk}/change/",
        f"{u}{h['sent'].pk}/change/", f"{u}?verification_state__exact=not_applied",
        f"{u}{h['pending'].pk}/history/", f"{u}add/", f"{u}add/?connection={conn}",
        m, f"{m}?q={payload('mq')}", f"{m}{h['choice'].pk}/change/",
        f"{m}{h['note'].pk}/change/", f"{m}add/",
        c, f"{c}{conn}/change/",
        j, f"{j}{h['queued'].pk}/status/", f"{j}{h['invalid'].pk}/status/", f"{j}import/",
        f"{j}export/",
        "/admin/queue/", f"/admin/queue/?connection={conn}", "/admin/dashboard/",
    ]


def assert_no_raw_payload(html: str, where: str) -> None:
    for marker in RAW_MARKERS:
        at = html.find(marker)
        assert at < 0, f"{where}: unescaped {html[max(0, at - 120):at + 80]!r}"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_no_admin_page_renders_a_stored_payload_as_html(client, hostile, role):
    client.force_login(hostile["users"][role])
    shown = 0
    for url in pages(hostile):
        response = client.get(url, follow=True)
        assert response.status_code in (200, 403, 404), (url, response.status_code)
        html = response.content.decode()
        assert_no_raw_payload(html, f"{role} {url}")
        shown += any(marker in html for marker in ESCAPED_MARKERS)
    # The payloads did reach the pages (escaped): the test is not looking at empty pages.
    assert shown >= {"operator": 15, "supervisor": 8, "admin": 20}[role], shown


@pytest.mark.django_db
def test_the_values_target_held_and_verification_events_are_escaped_on_the_update_page(
        client, hostile):
    client.force_login(hostile["users"]["operator"])
    html = client.get(f"/admin/updates/profileupdate/{hostile['sent'].pk}/change/").content.decode()
    assert_no_raw_payload(html, "sent update page")
    for tag in ("prv", "vcm", "vat", "av3"):
        assert f"&lt;script&gt;alert(&quot;{tag}&quot;)" in html, tag


@pytest.mark.django_db
def test_the_live_diff_answers_json_a_browser_will_not_run_as_a_page(client, hostile):
    """The script fills the diff in with textContent only; the answer itself is never HTML."""
    client.force_login(hostile["users"]["operator"])
    response = client.get(f"/admin/updates/profileupdate/{hostile['pending'].pk}/live-diff/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert_no_raw_payload(response.content.decode(), "live diff JSON")


@pytest.mark.django_db
def test_the_staging_form_escapes_the_mappings_help_pattern_names_and_choices(client, hostile):
    client.force_login(hostile["users"]["operator"])
    conn = hostile["connection"].pk
    html = client.get(f"/admin/updates/profileupdate/add/?connection={conn}").content.decode()
    assert_no_raw_payload(html, "staging form")
    for tag in ("hlp", "pat", "tgt", "src", "chc", "hl2"):
        assert f'&lt;script&gt;alert(&quot;{tag}&quot;)' in html, tag


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["operator", "admin"])
def test_refusals_that_quote_a_value_escape_it(client, hostile, role):
    """The staging form re-shown with errors that repeat the hostile value typed."""
    client.force_login(hostile["users"][role])
    conn = hostile["connection"]
    field = f"attr_{hostile['choice'].pk}"
    response = client.post(f"/admin/updates/profileupdate/add/?connection={conn.pk}", {
        "identity_type": "mbox3rdPartyId", "identity": payload("fid"), "reason": payload("frs"),
        field: payload("typ"), f"attr_{hostile['note'].pk}": payload("fnt"),
        "not_before_0": "", "not_before_1": ""})
    assert response.status_code == 200
    html = response.content.decode()
    assert_no_raw_payload(html, "staging form with errors")
    assert "errorlist" in html


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["supervisor", "admin"])
def test_messages_and_confirmation_pages_escape_what_they_quote(client, hostile, role):
    client.force_login(hostile["users"][role])
    pending = hostile["pending"]
    # The reject confirmation lists the selected updates' identities.
    confirm = client.post("/admin/updates/profileupdate/", {
        "action": "reject_selected", "_selected_action": [pending.pk]})
    assert confirm.status_code == 200
    assert_no_raw_payload(confirm.content.decode(), "reject confirmation")
    # A decision from the queue: its outcome messages name the update; its comment is kept.
    decided = client.post("/admin/queue/", {"decision": "reject", "update": [pending.pk],
                                            "shown": confirm.context["shown"],
                                            "comment": payload("rjc")}, follow=True)
    assert_no_raw_payload(decided.content.decode(), "queue after a decision")
    page = client.get(f"/admin/updates/profileupdate/{pending.pk}/change/").content.decode()
    assert_no_raw_payload(page, "update page after a rejection")
    assert "&lt;script&gt;alert(&quot;rjc&quot;)" in page


@pytest.mark.django_db
def test_a_bad_file_name_and_its_row_errors_are_escaped_on_the_status_page(client, hostile):
    """A file whose rows fail: the errors quote the hostile cells."""
    operator = hostile["users"]["operator"]
    conn = hostile["connection"]
    cell = payload("bad").replace('"', '""')
    csv = (f'identity_type,identity,{hostile["choice"].source_name.replace(chr(34), "")}\r\n'
           f'mbox3rdPartyId,"{cell}/x","{cell}"\r\n').encode()
    job = importing.import_job_create(connection=conn, file_name=payload("bfn"), file_data=csv,
                                      by=operator)
    assert job.status == "invalid" and job.errors
    client.force_login(operator)
    html = client.get(f"/admin/updates/importjob/{job.pk}/status/").content.decode()
    assert_no_raw_payload(html, "invalid import")
    assert "&lt;script&gt;alert(&quot;bfn&quot;)" in html


def test_the_form_help_text_is_escaped_at_its_source():
    """The root of the staging form's hole: Django renders form help text as HTML."""
    from updates.forms import MappingField

    field = MappingField(AttributeMapping(source_name="s", target_name="t",
                                          help_text=payload("hlp"), pattern="<b>"))
    assert "<script>" not in field.help_text and "<b>" not in field.help_text
    assert "&lt;script&gt;" in field.help_text and "&lt;b&gt;" in field.help_text
