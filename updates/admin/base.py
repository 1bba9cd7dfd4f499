"""What every ProfileOps model admin shares: a changelist that runs only the lookups it offers.

Django's changelist turns any query-string parameter naming a local field into a lookup
(`?identity__regex=(a+)+$`, `?attributes__contains=…`, `?id__gt=<a huge number>`): some answer
500, and a backtracking regular expression can hold a database worker for as long as it likes.
Here a list page accepts only what it shows: its list filters' own parameters, search (`q`),
ordering (`o`), the page (`p`), Django's page-level switches, and the parameters a ModelAdmin
names in `changelist_extra_params`. Anything else is refused with a 400 before a query runs.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest


# The largest id any of our tables can hold (a 64-bit signed integer on every database).
MAX_ID = 2**63 - 1


def parse_id(value: str | None) -> int | None:
    """A query-string value as a row id, or None: ASCII digits only ('²'.isdigit() is true, and
    int('²') fails) and within the columns' range (SQLite raises OverflowError beyond it)."""
    if not value or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= MAX_ID else None


class OfferedLookupsChangeList(ChangeList):
    """A ChangeList that refuses every lookup parameter its filters did not take."""

    def get_filters(self, request: HttpRequest):
        filter_specs, has_filters, remaining, may_have_duplicates, has_active = (
            super().get_filters(request))
        # The list filters consumed their own parameters; what is left would go straight into
        # queryset.filter(**remaining). Only what the page itself names may.
        offered = set(getattr(self.model_admin, "changelist_extra_params", ()))
        unknown = sorted(set(remaining) - offered)
        if unknown:
            # The message names the parameter, never its value (it may be anything).
            raise DisallowedModelAdminLookup(
                f"This list cannot be filtered by {', '.join(unknown)[:200]}.")
        return filter_specs, has_filters, remaining, may_have_duplicates, has_active


# What an empty list says to do (templates/admin/updates/_empty_list.html), per model.
EMPTY_HINTS = {
    "bulkjob": "No bulk jobs yet. A decided batch takes the bulk route when its connection's rule "
               "says so (Target connections → Bulk Profile Update API) or when chosen at "
               "decision time.",
    "alertrule": "No alert rules yet. Add one to be told by email or webhook when sending fails, "
                 "the quota runs low, updates wait too long for approval, Target refuses the "
                 "token or updates are not applied.",
    "alertevent": "No alert has fired yet. Each time an alert rule fires or clears it is listed "
                  "here; set the rules up under Alert rules.",
    "attributemapping": "No mappings yet. Add one per attribute operators may stage: its name in "
                        "files and forms, its Target attribute, and its checks.",
    "targetconnection": "No connections yet. Add one with Target's client code and bearer token "
                        "(or the emulator's URL to try things out).",
    "importjob": "No imports yet. Import a CSV or XLSX file of updates from the Import page.",
    "profileupdate": "No profile updates yet. Stage one with Add, or import a file of them.",
}


class OfferedLookupsAdmin(admin.ModelAdmin):
    """Base of every ModelAdmin in updates/admin/."""

    def empty_hint(self) -> str:
        """What the list says when it has nothing to show and no filter is applied."""
        return EMPTY_HINTS.get(self.model._meta.model_name, "")

    # Query parameters (exact lookups on local fields) the page itself links to, besides its
    # list filters: e.g. ProfileUpdateAdmin's `reason`, used by an import's result page.
    changelist_extra_params: tuple[str, ...] = ()

    def get_changelist(self, request: HttpRequest, **kwargs) -> type[ChangeList]:
        return OfferedLookupsChangeList
