"""Who may open which admin page and run which bulk action — the table below is the specification.

Columns: anonymous, operator (group Operators), supervisor (group Supervisors), admin (superuser).
Cells:
    LOGIN   redirect to the admin login page (every page, for anonymous visitors)
    200     the page is shown (for a view-only user: read-only)
    403     refused (missing permission, or an action nobody may take such as deleting an update)
    404     the page does not exist for this user (an app of which they may see no model)
    405     the URL accepts POST only
    →X      a redirect to page X (named in REDIRECTS)

Every admin URL pattern must appear in the table (test_every_admin_url_is_in_the_matrix), so a
page added later without a line here fails the suite instead of going unchecked. The objects
the URLs point at come from tests/security/conftest.py: one of each registered model; the
update is pending and was staged by a fourth user; the import job belongs to the operator.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.urls import reverse

from tests.helpers import shown
from updates.models import AuditEvent, ProfileUpdate, UpdateStatus

from .conftest import ROLES, World, client_for, concrete_admin_urls

S = UpdateStatus
LOGIN = "LOGIN"
TO_INDEX, TO_STATUS = "→index", "→import status"
TO_STAGING = "→staging form"  # one active connection: the connection step is skipped

#  URL name (or app_list:<app>)                    anonymous operator supervisor admin
MATRIX: dict[str, tuple] = {
    # The admin itself
    "index":                                       (LOGIN, 200, 200, 200),
    "login":                                       (200, TO_INDEX, TO_INDEX, TO_INDEX),
    "logout":                                      (TO_INDEX, 405, 405, 405),  # POST only
    "password_change":                             (LOGIN, 200, 200, 200),
    "password_change_done":                        (LOGIN, 200, 200, 200),
    "jsi18n":                                      (LOGIN, 200, 200, 200),
    "autocomplete":                                (LOGIN, 403, 403, 403),  # no autocomplete fields
    "view_on_site":                                (LOGIN, 404, 404, 404),  # no model has a URL
    "app_list:updates":                            (LOGIN, 200, 200, 200),
    "app_list:auth":                               (LOGIN, 404, 404, 200),
    "app_list:django_q":                           (LOGIN, 404, 404, 200),
    # Users and groups: administrators only
    "auth_user_changelist":                        (LOGIN, 403, 403, 200),
    "auth_user_add":                               (LOGIN, 403, 403, 200),
    "auth_user_change":                            (LOGIN, 403, 403, 200),
    "auth_user_delete":                            (LOGIN, 403, 403, 200),
    "auth_user_history":                           (LOGIN, 403, 403, 200),
    "auth_user_password_change":                   (LOGIN, 403, 403, 200),
    "auth_group_changelist":                       (LOGIN, 403, 403, 200),
    "auth_group_add":                              (LOGIN, 403, 403, 200),
    "auth_group_change":                           (LOGIN, 403, 403, 200),
    "auth_group_delete":                           (LOGIN, 403, 403, 200),
    "auth_group_history":                          (LOGIN, 403, 403, 200),
    # The task queue (django-q2): administrators only; finished tasks cannot be added by hand
    "django_q_schedule_changelist":                (LOGIN, 403, 403, 200),
    "django_q_schedule_add":                       (LOGIN, 403, 403, 200),
    "django_q_schedule_change":                    (LOGIN, 403, 403, 200),
    "django_q_schedule_delete":                    (LOGIN, 403, 403, 200),
    "django_q_schedule_history":                   (LOGIN, 403, 403, 200),
    "django_q_success_changelist":                 (LOGIN, 403, 403, 200),
    "django_q_success_add":                        (LOGIN, 403, 403, 403),
    "django_q_success_change":                     (LOGIN, 403, 403, 200),
    "django_q_success_delete":                     (LOGIN, 403, 403, 200),
    "django_q_success_history":                    (LOGIN, 403, 403, 200),
    "django_q_failure_changelist":                 (LOGIN, 403, 403, 200),
    "django_q_failure_add":                        (LOGIN, 403, 403, 403),
    "django_q_failure_change":                     (LOGIN, 403, 403, 200),
    "django_q_failure_delete":                     (LOGIN, 403, 403, 200),
    "django_q_failure_history":                    (LOGIN, 403, 403, 200),
    "django_q_ormq_changelist":                    (LOGIN, 403, 403, 200),
    "django_q_ormq_add":                           (LOGIN, 403, 403, 403),
    "django_q_ormq_change":                        (LOGIN, 403, 403, 200),
    "django_q_ormq_delete":                        (LOGIN, 403, 403, 200),
    "django_q_ormq_history":                       (LOGIN, 403, 403, 200),
    # Target connections: administrators only, and never deleted (deactivated instead)
    "updates_targetconnection_changelist":         (LOGIN, 403, 403, 200),
    "updates_targetconnection_add":                (LOGIN, 403, 403, 200),
    "updates_targetconnection_change":             (LOGIN, 403, 403, 200),
    "updates_targetconnection_delete":             (LOGIN, 403, 403, 403),
    "updates_targetconnection_history":            (LOGIN, 403, 403, 200),
    "updates_targetconnection_rotate_token":       (LOGIN, 403, 403, 200),  # confirmation
    # Attribute mappings: operators define them, supervisors read them, nobody deletes them
    "updates_attributemapping_changelist":         (LOGIN, 200, 200, 200),
    "updates_attributemapping_add":                (LOGIN, 200, 403, 200),
    "updates_attributemapping_change":             (LOGIN, 200, 200, 200),
    "updates_attributemapping_delete":             (LOGIN, 403, 403, 403),
    "updates_attributemapping_history":            (LOGIN, 200, 200, 200),
    # Profile updates: operators stage and edit, supervisors read and decide, nobody deletes
    "updates_profileupdate_changelist":            (LOGIN, 200, 200, 200),
    "updates_profileupdate_add":                   (LOGIN, TO_STAGING, 403, TO_STAGING),
    "updates_profileupdate_add?connection":        (LOGIN, 200, 403, 200),
    "updates_profileupdate_change":                (LOGIN, 200, 200, 200),
    "updates_profileupdate_delete":                (LOGIN, 403, 403, 403),
    "updates_profileupdate_history":               (LOGIN, 200, 200, 200),
    "updates_profileupdate_workflow":              (LOGIN, 405, 405, 405),  # POST only
    # Imports: operators import; a job's page is for its uploader and those who may view jobs
    "updates_importjob_changelist":                (LOGIN, 200, 403, 200),
    "updates_importjob_add":                       (LOGIN, 403, 403, 403),  # upload instead
    "updates_importjob_change":                    (LOGIN, TO_STATUS, TO_STATUS, TO_STATUS),
    "updates_importjob_delete":                    (LOGIN, 403, 403, 403),
    "updates_importjob_history":                   (LOGIN, 200, 403, 200),
    "updates_importjob_import":                    (LOGIN, 200, 403, 200),
    "updates_importjob_status":                    (LOGIN, 200, 403, 200),
    "updates_importjob_start":                     (LOGIN, TO_STATUS, TO_STATUS, TO_STATUS),
    "updates_importjob_export":                    (LOGIN, 200, 200, 200),
    # An empty import file needs ?connection=<id> (404 without); the errors of the uploader's job
    "updates_importjob_template":                  (LOGIN, 404, 404, 404),
    "updates_importjob_errors":                    (LOGIN, 200, 403, 200),
    # Alert rules and the alerts they sent: administrators manage, supervisors read (migration
    # 0021); alerts are never added, changed or deleted by hand
    "updates_bulkjob_changelist":                  (LOGIN, 403, 200, 200),
    "updates_bulkjob_add":                         (LOGIN, 403, 403, 403),  # the sender writes them
    "updates_bulkjob_change":                      (LOGIN, 403, 200, 200),
    "updates_bulkjob_delete":                      (LOGIN, 403, 403, 403),
    "updates_bulkjob_history":                     (LOGIN, 403, 200, 200),
    "updates_bulkjob_requeue_single":              (LOGIN, 405, 405, 405),  # POST only
    "updates_alertrule_changelist":                (LOGIN, 403, 200, 200),
    "updates_alertrule_add":                       (LOGIN, 403, 403, 200),
    "updates_alertrule_change":                    (LOGIN, 403, 200, 200),
    "updates_alertrule_delete":                    (LOGIN, 403, 403, 200),
    "updates_alertrule_history":                   (LOGIN, 403, 200, 200),
    "updates_alertrule_test":                      (LOGIN, 405, 405, 405),  # POST only
    "updates_alertevent_changelist":               (LOGIN, 403, 200, 200),
    "updates_alertevent_add":                      (LOGIN, 403, 403, 403),
    "updates_alertevent_change":                   (LOGIN, 403, 200, 200),
    "updates_alertevent_delete":                   (LOGIN, 403, 403, 403),
    "updates_alertevent_history":                  (LOGIN, 403, 200, 200),
    # Forgetting visitors and its evidence: administrators (and data protection officers).
    "updates_privacyrequest_changelist":           (LOGIN, 403, 403, 200),
    "updates_privacyrequest_add":                  (LOGIN, 403, 403, 403),
    "updates_privacyrequest_change":               (LOGIN, 403, 403, 200),
    "updates_privacyrequest_delete":               (LOGIN, 403, 403, 403),
    "updates_privacyrequest_history":              (LOGIN, 403, 403, 200),
    "updates_privacyrequest_forget":               (LOGIN, 403, 403, 200),
    "updates_privacyrequest_report":               (LOGIN, 403, 403, 200),
    "updates_privacyrequest_monthly":              (LOGIN, 403, 403, 400),  # no month asked
    "updates_privacyrequest_file":                 (LOGIN, 405, 405, 405),  # POST only
    "updates_privacyrequest_lift":                 (LOGIN, 405, 405, 405),  # POST only
    "updates_retentionrun_changelist":             (LOGIN, 403, 403, 200),
    "updates_retentionrun_add":                    (LOGIN, 403, 403, 403),
    "updates_retentionrun_change":                 (LOGIN, 403, 403, 200),
    "updates_retentionrun_delete":                 (LOGIN, 403, 403, 403),
    "updates_retentionrun_history":                (LOGIN, 403, 403, 200),
    # Failed logins and lock-outs (django-axes): administrators only; the logs are an audit
    # trail (read-only), an access attempt may be deleted (that unlocks)
    "app_list:axes":                               (LOGIN, 404, 404, 200),
    "axes_accessattempt_changelist":               (LOGIN, 403, 403, 200),
    "axes_accessattempt_add":                      (LOGIN, 403, 403, 403),
    "axes_accessattempt_change":                   (LOGIN, 403, 403, 200),
    "axes_accessattempt_delete":                   (LOGIN, 403, 403, 200),
    "axes_accessattempt_history":                  (LOGIN, 403, 403, 200),
    "axes_accessfailurelog_changelist":            (LOGIN, 403, 403, 200),
    "axes_accessfailurelog_add":                   (LOGIN, 403, 403, 403),
    "axes_accessfailurelog_change":                (LOGIN, 403, 403, 200),
    "axes_accessfailurelog_delete":                (LOGIN, 403, 403, 403),
    "axes_accessfailurelog_history":               (LOGIN, 403, 403, 200),
    "axes_accesslog_changelist":                   (LOGIN, 403, 403, 200),
    "axes_accesslog_add":                          (LOGIN, 403, 403, 403),
    "axes_accesslog_change":                       (LOGIN, 403, 403, 200),
    "axes_accesslog_delete":                       (LOGIN, 403, 403, 403),
    "axes_accesslog_history":                      (LOGIN, 403, 403, 200),
    # The operations pages
    "updates_dashboard":                           (LOGIN, 200, 200, 200),
    "updates_queue":                               (LOGIN, 403, 200, 200),
    # The live diff (JSON; a failed read is still a 200 answer) and the revert button
    "updates_live_diff":                           (LOGIN, 200, 200, 200),
    "updates_revert":                              (LOGIN, 405, 405, 405),  # POST only
    "updates_queue_batch":                         (LOGIN, 403, 200, 200),
    # The batch page's estimate (JSON, from reads on record)
    "updates_queue_batch_estimate":                (LOGIN, 403, 200, 200),
    # The whole-batch read: started by POST, its progress as JSON
    "updates_queue_batch_read":                    (LOGIN, 405, 405, 405),  # POST only
    "updates_queue_batch_read_status":             (LOGIN, 403, 404, 404),
    # A batch decision in the background: its progress as JSON
    "updates_queue_batch_decision_status":         (LOGIN, 403, 404, 404),
}

def _redirect_target(world: World, name: str) -> str:
    if name == TO_STATUS:
        return reverse("admin:updates_importjob_status", args=[world.job.pk])
    if name == TO_STAGING:
        return reverse("admin:updates_profileupdate_add")  # with ?connection=<the only one>
    if name == TO_INDEX:
        return reverse("admin:index")
    raise KeyError(name)


def _urls(world: World) -> dict[str, str]:
    urls = {u.name: u.url for u in concrete_admin_urls(world)}
    urls["updates_profileupdate_add?connection"] = (
        urls["updates_profileupdate_add"] + f"?connection={world.connection.pk}")
    return urls


def test_every_admin_url_is_in_the_matrix(world):
    names = set(_urls(world))
    unnamed = {n for n in names if n.endswith("(unnamed)")}
    assert names - unnamed - set(MATRIX) == set(), "admin URLs without a line in MATRIX"
    assert set(MATRIX) - names == set(), "MATRIX lines for URLs that no longer exist"
    # The unnamed ones are Django's "<id>/" shortcuts to each change page.
    assert all(n.endswith("/<path:object_id>/ (unnamed)") for n in unnamed), unnamed


def _check(response, expected, world: World) -> None:
    if expected == LOGIN:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    elif isinstance(expected, str) and expected.startswith("→"):
        assert response.status_code == 302
        assert response["Location"].split("?")[0] == _redirect_target(world, expected)
    else:
        assert response.status_code == expected


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_the_pages_the_matrix_says(client, world, role):
    client = client_for(client, world, role)
    urls = _urls(world)
    wrong = []
    for name, expected_by_role in MATRIX.items():
        expected = expected_by_role[ROLES.index(role)]
        response = client.get(urls[name])
        try:
            _check(response, expected, world)
        except AssertionError:
            got = response.status_code
            if got == 302:
                got = f"302 → {response['Location']}"
            wrong.append(f"{name}: expected {expected}, got {got}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("role", ROLES)
def test_the_unnamed_object_shortcuts_lead_to_the_change_page_or_login(client, world, role):
    client = client_for(client, world, role)
    for name, url in _urls(world).items():
        if not name.endswith("(unnamed)"):
            continue
        response = client.get(url)
        assert response.status_code == 302, name  # a temporary redirect (RedirectView)
        location = response["Location"]
        if role == "anonymous":
            assert location.startswith(reverse("admin:login")), name
        else:
            assert location.rstrip("/").endswith("/change"), (name, location)


# --- bulk actions ----------------------------------------------------------------------------

# Offered in the action list of the model's changelist, per role (anonymous: never).
#  model label, action                            operator supervisor admin
ACTIONS_OFFERED: dict[tuple[str, str], tuple[bool, bool, bool]] = {
    ("updates.ProfileUpdate", "submit_selected"):   (True, False, True),
    ("updates.ProfileUpdate", "approve_selected"):  (False, True, True),
    ("updates.ProfileUpdate", "reject_selected"):   (False, True, True),
    ("updates.ProfileUpdate", "cancel_selected"):   (True, False, True),
    ("updates.ProfileUpdate", "requeue_selected"):  (True, True, True),
    ("updates.ProfileUpdate", "export_selected_csv"): (True, True, True),
    ("updates.ProfileUpdate", "export_selected_xlsx"): (True, True, True),
    # Django's and django-q2's own, on administrators' models
    ("auth.User", "delete_selected"):               (False, False, True),
    ("auth.Group", "delete_selected"):              (False, False, True),
    ("django_q.Schedule", "delete_selected"):       (False, False, True),
    ("updates.AlertRule", "delete_selected"):       (False, False, True),
    ("django_q.Success", "delete_selected"):        (False, False, True),
    ("django_q.Success", "resubmit_task"):          (False, False, True),
    ("django_q.Failure", "delete_selected"):        (False, False, True),
    ("django_q.Failure", "resubmit_task"):          (False, False, True),
    ("django_q.OrmQ", "delete_selected"):           (False, False, True),
    # django-axes: deleting access attempts unlocks; the logs cannot be deleted
    ("axes.AccessAttempt", "delete_selected"):      (False, False, True),
    ("axes.AccessAttempt", "cleanup_expired_attempts"): (False, False, True),
}


def _offered(model_admin, user) -> set[str]:
    """The actions in the dropdown of a changelist this user may open (none if they may not:
    the changelist, GET or POST, answers 403 — see MATRIX)."""
    request = RequestFactory().get("/")
    request.user = user or AnonymousUser()
    if not model_admin.has_view_or_change_permission(request):
        return set()
    return set(model_admin.get_actions(request))


def test_every_bulk_action_of_every_model_is_in_the_table(world):
    admin_user = world.users["admin"]
    present = {(model._meta.label, action) for model, model_admin in admin.site._registry.items()
               for action in _offered(model_admin, admin_user)}
    assert present == set(ACTIONS_OFFERED)


@pytest.mark.parametrize("role", ("operator", "supervisor", "admin"))
def test_each_role_is_offered_exactly_the_bulk_actions_the_table_says(world, role):
    user = world.users[role]
    for model, model_admin in admin.site._registry.items():
        offered = _offered(model_admin, user)
        for (label, action), by_role in ACTIONS_OFFERED.items():
            if label == model._meta.label:
                assert (action in offered) == by_role[ROLES.index(role) - 1], (label, action)


# What POSTing each profile-update action does when the role's user tries it anyway (a forged
# form): "done" — the action ran; "403"; "ignored" — Django answers "No action selected" and
# nothing changes. Each action starts from a state it applies to, on an update none of these
# users authored.
ACTION_EFFECT: dict[str, tuple[str, str, str]] = {
    #  action                  operator   supervisor  admin
    "submit_selected":        ("done",    "ignored",  "done"),
    "approve_selected":       ("403",     "done",     "done"),
    "reject_selected":        ("403",     "done",     "done"),
    "cancel_selected":        ("done",    "ignored",  "done"),
    "requeue_selected":       ("done",    "done",     "done"),
    "export_selected_csv":    ("done",    "done",     "done"),
    "export_selected_xlsx":   ("done",    "done",     "done"),
}
START_STATE = {"submit_selected": S.DRAFT, "approve_selected": S.PENDING,
               "reject_selected": S.PENDING, "cancel_selected": S.PENDING,
               "requeue_selected": S.FAILED}
END_STATE = {"submit_selected": S.PENDING, "approve_selected": S.APPROVED,
             "reject_selected": S.REJECTED, "cancel_selected": S.CANCELLED,
             "requeue_selected": S.APPROVED}


def test_the_effect_table_covers_every_profile_update_action():
    assert {a for (label, a) in ACTIONS_OFFERED if label == "updates.ProfileUpdate"} == set(
        ACTION_EFFECT)


@pytest.mark.parametrize("action", ACTION_EFFECT)
@pytest.mark.parametrize("role", ("operator", "supervisor", "admin"))
def test_a_bulk_action_posted_by_each_role_does_what_the_table_says(client, world, role, action):
    update = world.update  # pending, authored by someone else
    if action in START_STATE:
        # Put it where the action applies; an approved hash makes a re-queue keep the approval.
        ProfileUpdate.objects.filter(pk=update.pk).update(
            status=START_STATE[action], approved_hash=update.content_hash)
    client = client_for(client, world, role)
    events_before = AuditEvent.objects.filter(update=update).count()
    data = {"action": action, "_selected_action": [update.pk], "index": 0}
    if action == "reject_selected":
        data.update(apply="1", comment="not this one")
    if action in ("approve_selected", "reject_selected"):  # as the confirmation page posts
        data.update(apply="1", shown=shown(update))
    response = client.post(reverse("admin:updates_profileupdate_changelist"), data)
    expected = ACTION_EFFECT[action][ROLES.index(role) - 1]
    status = ProfileUpdate.objects.get(pk=update.pk).status
    events_after = AuditEvent.objects.filter(update=update).count()

    if expected == "403":
        assert response.status_code == 403
    elif expected == "ignored":
        assert response.status_code == 302  # back to the list: "No action selected."
    if action.startswith("export_"):
        exported = response.status_code == 200 and response.get("Content-Disposition", "")
        assert bool(exported and "attachment" in exported) == (expected == "done")
        return
    if expected == "done":
        assert status == END_STATE[action]
        assert events_after == events_before + 1
    else:
        assert status == START_STATE[action]
        assert events_after == events_before


# --- writes: what a POST by each role does ---------------------------------------------------

def _edit_update(world):
    from updates.forms import StagingForm

    fields = {StagingForm.field_name(m): "" for m in world.connection.mappings.all()}
    mapping = world.connection.mappings.get(target_name="loanStatus")
    fields[StagingForm.field_name(mapping)] = "declined"
    data = {"identity_type": "mbox3rdPartyId", "identity": "customer-1", "reason": "",
            "not_before_0": "", "not_before_1": "", **fields}
    return (reverse("admin:updates_profileupdate_change", args=[world.update.pk]), data,
            lambda: ProfileUpdate.objects.get(pk=world.update.pk).attributes
            == {"loanStatus": "declined"})


def _edit_mapping(world):
    m = world.mapping
    data = {"source_name": m.source_name, "target_name": m.target_name,
            "value_type": m.value_type, "trim": "on", "case_transform": m.case_transform,
            "max_length": m.max_length, "choices": m.choices, "pattern": "",
            "help_text": "changed by the test", "active": "on"}
    return (reverse("admin:updates_attributemapping_change", args=[m.pk]), data,
            lambda: type(m).objects.get(pk=m.pk).help_text == "changed by the test")


def _edit_connection(world):
    c = world.connection
    data = {"label": "Renamed", "client_code": c.client_code, "base_url": "",
            "quota_limit": c.quota_limit, "active": "on", "new_token": ""}
    return (reverse("admin:updates_targetconnection_change", args=[c.pk]), data,
            lambda: type(c).objects.get(pk=c.pk).label == "Renamed")


def _upload(world):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from updates.models import ImportJob

    before = ImportJob.objects.count()
    data = {"connection": world.connection.pk, "file": SimpleUploadedFile(
        "u.csv", b"identity_type,identity,loan_status\r\nmbox3rdPartyId,c-1,funded\r\n")}
    return (reverse("admin:updates_importjob_import"), data,
            lambda: ImportJob.objects.count() == before + 1)


def _start_import(world):
    from updates.models import ImportJob

    return (reverse("admin:updates_importjob_start", args=[world.job.pk]), {},
            lambda: ImportJob.objects.get(pk=world.job.pk).status == ImportJob.Status.DONE)


def _decided(world):
    return ProfileUpdate.objects.get(pk=world.update.pk).status == S.APPROVED


def _approve_in_queue(world):
    return (reverse("updates_queue"), {"approve_one": world.update.pk,
                                       "shown": shown(world.update)},
            lambda: _decided(world))


def _approve_on_page(world):
    return (reverse("admin:updates_profileupdate_workflow", args=[world.update.pk]),
            {"transition": "approve", "shown": shown(world.update)}, lambda: _decided(world))


def _delete_update(world):
    return (reverse("admin:updates_profileupdate_delete", args=[world.update.pk]),
            {"post": "yes"}, lambda: not ProfileUpdate.objects.filter(pk=world.update.pk).exists())


# Cells: "saved" — a redirect and the change happened; "refused" — 403, nothing changed;
# "nothing" — a redirect with a message, nothing changed (e.g. starting someone else's import).
#  write                                   anonymous  operator  supervisor  admin
WRITES = {
    "edit a pending update":   (_edit_update,      ("login", "saved",   "refused", "saved")),
    "edit a mapping":          (_edit_mapping,     ("login", "saved",   "refused", "saved")),
    "edit a connection":       (_edit_connection,  ("login", "refused", "refused", "saved")),
    "upload an import file":   (_upload,           ("login", "saved",   "refused", "saved")),
    "start the operator's import": (_start_import, ("login", "saved",   "nothing", "nothing")),
    "approve in the queue":    (_approve_in_queue, ("login", "refused", "saved",   "saved")),
    "approve on the update's page": (_approve_on_page, ("login", "refused", "saved", "saved")),
    "delete an update":        (_delete_update,    ("login", "refused", "refused", "refused")),
}


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("role", ROLES)
def test_a_write_posted_by_each_role_does_what_the_table_says(client, world, role, write):
    build, expected_by_role = WRITES[write]
    url, data, changed = build(world)
    response = client_for(client, world, role).post(url, data)
    expected = expected_by_role[ROLES.index(role)]
    if expected == "login":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    elif expected == "refused":
        assert response.status_code == 403
    else:
        assert response.status_code == 302, getattr(response, "context", None) and (
            response.context.get("errors") or response.context.get("form"))
    assert changed() == (expected == "saved")
