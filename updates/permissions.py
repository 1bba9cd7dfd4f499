"""Who may do what: the permission codenames every service and face checks, in one home, and the
words a refusal names each right with.

Services check them (workflow's transition table, importing, exporting, reading, connections,
mappings, alerts); the admin, the notebook and the template tags ask the same codenames to decide
what to offer. The roles migration grants them to the groups (tests/test_roles.py).
"""

from __future__ import annotations

# Profile updates: the workflow's rights (workflow.TRANSITIONS names who may make each move).
PERM_VIEW = "updates.view_profileupdate"
PERM_STAGE = "updates.add_profileupdate"
PERM_EDIT = "updates.change_profileupdate"
PERM_SUBMIT = "updates.submit_profileupdate"
PERM_APPROVE = "updates.approve_profileupdate"
PERM_CANCEL = "updates.cancel_profileupdate"
PERM_REQUEUE = "updates.requeue_profileupdate"
PERM_IMPORT = "updates.import_profileupdate"
PERM_EXPORT = "updates.export_profileupdate"
PERM_VIEW_IMPORT_JOB = "updates.view_importjob"

# Configuration, for administrators: adding one and changing one are separate rights.
PERM_ADD_CONNECTION = "updates.add_targetconnection"
PERM_CHANGE_CONNECTION = "updates.change_targetconnection"
PERM_ADD_MAPPING = "updates.add_attributemapping"
PERM_CHANGE_MAPPING = "updates.change_attributemapping"
PERM_ADD_ALERT_RULE = "updates.add_alertrule"
PERM_CHANGE_ALERT_RULE = "updates.change_alertrule"

# Customer data lifecycle (forgetting.py, privacy.py): not every operator may erase a person.
PERM_FORGET = "updates.forget_visitor"
PERM_LIFT_SUPPRESSION = "updates.lift_suppression"
PERM_VIEW_PRIVACY = "updates.view_privacyrequest"

# What each right lets a person do, in the words of "You do not have permission to …".
DOING = {
    PERM_VIEW: "view profile updates",
    PERM_STAGE: "stage profile updates",
    PERM_EDIT: "edit profile updates",
    PERM_SUBMIT: "submit profile updates",
    PERM_APPROVE: "approve or reject profile updates",
    PERM_CANCEL: "cancel profile updates",
    PERM_REQUEUE: "re-queue failed profile updates",
    PERM_IMPORT: "import profile updates",
    PERM_EXPORT: "export profile updates",
    PERM_FORGET: "forget visitors",
    PERM_LIFT_SUPPRESSION: "lift the suppression of a forgotten visitor",
    PERM_VIEW_PRIVACY: "see privacy requests",
}


def refusal(perm: str) -> str:
    """The refusal for a user who lacks `perm`."""
    return f"You do not have permission to {DOING[perm]}."
