"""Every admin page fits the screen it is on (issue 24 item 1): at a phone's 390×844 and a
laptop's 1366×768, as a superuser with long names seeded, no page is wider than its window and no
table header breaks inside a word ("SOURC E NAME"); list cells do not either, except the values
that are meant to wrap anywhere (identities, attribute values: `.po-value`, `code`).

The pages are gathered from the URL configuration, not listed by hand: every admin URL (the
model admins' changelist, add, change, history and delete pages, their own extra pages, and
updates/admin/urls.py's pages) whose arguments can be filled with a seeded object and which answers
a superuser's GET with an HTML page. A new admin page is therefore checked without touching this
test. One browser context per size loops over all pages (CI time). A page with a problem leaves
a screenshot: test-artifacts/screenshots/page-<size>-<url>.png (only those: a full-page PNG of
every page at both sizes was a fifth of the test's time, and a page that fits needs no picture).
"""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_q.models import Schedule

from tests.browser.conftest import VIEWPORTS, login, screenshot
from tests.conftest import make_connection, make_mapping, make_user
from updates import importing, sending, workflow
from updates.models import AlertEvent, AlertRule, ImportJob, ProfileUpdate

pytestmark = [pytest.mark.browser,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# Not pages: sign-out, redirects, JSON endpoints, downloads, POST-only actions, Target reads.
NOT_PAGES = {"logout", "login", "view_on_site", "autocomplete", "jsi18n", "updates_live_diff",
             "updates_revert", "updates_profileupdate_workflow", "updates_queue_batch_estimate",
             "updates_queue_batch_read", "updates_queue_batch_read_status",
             "updates_importjob_template", "updates_importjob_errors",
             "updates_importjob_start"}
# Pages that must be found, so that a broken harvest cannot pass by checking nothing.
MUST_HAVE = {"/admin/", "/admin/dashboard/", "/admin/queue/", "/admin/queue/batch/",
             "/admin/updates/importjob/import/", "/admin/updates/importjob/export/",
             "/admin/updates/alertrule/", "/admin/updates/alertevent/",
             "/admin/updates/attributemapping/add/", "/admin/updates/profileupdate/"}

LONG_IDENTITY = "customer-" + "0123456789abcdef" * 12  # 201 characters, nowhere to break


@pytest.fixture
def seeded(db, emulator):
    connection = make_connection("acme-consumer-loans-production-eu",
                                 label="Acme consumer loans (production, European Union)",
                                 base_url=emulator.base_url, quota_limit=1_000_000)
    for i in range(3):
        make_mapping(connection, f"loan_status_with_a_long_source_name_{i}",
                     f"loanStatusWithALongTargetAttributeName{i}", value_type="choice",
                     choices="applied\nfunded", label=f"Loan status from the loan system ({i})",
                     help_text="From the loan system, nightly.")
    operator = make_user("olivia-from-the-customer-operations-team", "Operators")
    supervisor = make_user("samantha-supervisor", "Supervisors")
    superuser = make_user("root", superuser=True)
    importing.import_job_create(
        connection=connection,
        file_name="bulk2000-loan-status-export-from-the-loan-system-2026-12-07.csv", by=operator,
        file_data=b"identity_type,identity,loan_status_with_a_long_source_name_0\n"
                  b"mbox3rdPartyId,c-1,funded\n")
    attrs = {"loanStatusWithALongTargetAttributeName0": "funded"}
    draft = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                  identity=LONG_IDENTITY, attributes=attrs, by=operator)
    pending = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                    identity=LONG_IDENTITY + "-2", attributes=attrs, by=operator)
    workflow.update_submit(update=pending, by=operator)
    sent = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                 identity=LONG_IDENTITY + "-3", attributes=attrs, by=operator)
    workflow.update_submit(update=sent, by=operator)
    workflow.update_approve(update=sent, by=supervisor)
    sending.send_due()
    rule = AlertRule.objects.create(connection=connection, kind=AlertRule.Kind.FAILURE_RATE,
                                    threshold=10)
    AlertEvent.objects.create(
        rule=rule, at=sent.created_at, state="firing",
        text="Failure rate 12.5% over the last 60 minutes on Acme consumer loans (production, "
             "European Union): 1 of 8 requests failed (alert at 10%).",
        delivery_error="webhook https://hooks.example.com/services/a-long-webhook-path: timeout")
    Schedule.objects.create(name="profileops-send-due-updates-every-minute",
                            func="updates.tasks.send_due", schedule_type=Schedule.MINUTES)
    return {"superuser": superuser, "objects": {
        ProfileUpdate: ProfileUpdate.objects.get(pk=sent.pk), ImportJob: ImportJob.objects.first()},
        "draft": draft, "pending": pending}


def _patterns(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _patterns(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.name


def _model_of(name: str):
    for model in admin.site._registry:
        if name.startswith(f"{model._meta.app_label}_{model._meta.model_name}_"):
            return model
    return None


def admin_pages(objects: dict) -> list[str]:
    """Every admin URL a superuser can GET as an HTML page, arguments filled with seeded rows."""
    urls = []
    for route, name in _patterns(get_resolver().url_patterns):
        if not route.startswith("admin/") or name in NOT_PAGES or route.endswith("(?P<url>.*)$"):
            continue
        if name == "app_list":
            urls += [f"/admin/{label}/" for label in {m._meta.app_label for m in admin.site._registry}]
            continue
        if name is None:  # the admin's old-style <object_id>/ redirect to .../change/
            continue
        model = _model_of(name) or (ProfileUpdate if name.startswith("updates_") else None)
        if "<" in route:
            if model is None:
                continue
            obj = objects.get(model) or model._default_manager.order_by("pk").first()
            if obj is None:
                continue
            route = re.sub(r"<[^>]+>", str(obj.pk), route)
        urls.append("/" + route)
    return sorted(set(urls))


# Words split across lines inside table headers (everywhere) and list cells (#result_list), not
# counting values meant to wrap anywhere. A "word" is a run of letters and digits: a break after a
# hyphen, dot or underscore is where a reader expects one.
_BROKEN_WORDS_JS = r"""
() => {
  const found = [];
  const cells = document.querySelectorAll("th, #result_list td");
  for (const cell of cells) {
    if (!cell.getClientRects().length) continue;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const parent = node.parentElement;
      if (!parent || parent.closest(".po-value, code, .visually-hidden")) continue;
      const style = getComputedStyle(parent);
      if (style.display === "none" || style.visibility === "hidden") continue;
      for (const match of node.data.matchAll(/[\p{L}\p{N}]+/gu)) {
        if (match[0].length < 2) continue;
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0)
                             .map(r => Math.round(r.top)));
        if (tops.size > 1) {
          found.push(`${cell.tagName.toLowerCase()}.${cell.className || "-"}: "${match[0]}"`);
        }
      }
    }
  }
  return found.slice(0, 8);
}
"""

# Against the viewport asked for: a phone widens its layout viewport (innerWidth) to fit a page
# that is too wide, so innerWidth would hide the very overflow looked for.
_WIDTH_JS = "() => document.scrollingElement.scrollWidth"
# A list inside a box that scrolls sideways (the admin's `.results`) fits the page but hides its
# last columns: a list must fit its box instead (columns hidden or stacked per width).
_SCROLLED_JS = r"""
() => [...document.querySelectorAll("#changelist .results, .results")]
  .filter(box => box.getClientRects().length && box.scrollWidth > box.clientWidth + 1)
  .map(box => `${box.querySelector("table")?.id || "table"} is ${box.scrollWidth}px in ` +
               `${box.clientWidth}px; last column: ` +
               `${[...box.querySelectorAll("thead th")].filter(th => th.getClientRects().length)
                  .map(th => th.className).pop() || "?"}`)
"""

# What reaches past the window's right edge: the outermost such elements, to name in a failure.
_WIDEST_JS = r"""
(width) => {
  const found = [];
  const beyond = (el) => el.getBoundingClientRect().right > width;
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height || !beyond(el)) continue;
    if (el.parentElement && beyond(el.parentElement)) continue;
    const classes = typeof el.className === "string" ? el.className.trim() : "";
    found.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}` +
               `${classes ? "." + classes.split(/\s+/).join(".") : ""} reaches ${Math.round(box.right)}px`);
  }
  return found.slice(0, 4);
}
"""


def test_every_admin_page_fits_a_phone_and_a_laptop(open_page, seeded, client):
    client.force_login(seeded["superuser"])
    pages = []
    for url in admin_pages(seeded["objects"]):
        answer = client.get(url)
        if answer.status_code == 200 and answer["Content-Type"].startswith("text/html"):
            pages.append(url)
    missing = MUST_HAVE - set(pages)
    assert not missing, f"pages not found among the admin's URLs: {sorted(missing)}"
    # A draft and a pending update have pages of their own (buttons, warnings, live diff).
    pages += [f"/admin/updates/profileupdate/{seeded[k].pk}/change/" for k in ("draft", "pending")]

    problems = []
    for size_name, size in VIEWPORTS.items():
        page = open_page(size)
        login(page, seeded["superuser"])
        for url in pages:
            page.goto(url)
            found_before = len(problems)
            page_width, window = page.evaluate(_WIDTH_JS), size["width"]
            if page_width > window:
                problems.append(f"{size_name} {url}: the page is {page_width}px wide in a "
                                f"{window}px window: " + "; ".join(page.evaluate(_WIDEST_JS, window)))
            if hidden := page.evaluate(_SCROLLED_JS):
                problems.append(f"{size_name} {url}: columns off-screen in a sideways scroll: "
                                + "; ".join(hidden))
            if broken := page.evaluate(_BROKEN_WORDS_JS):
                problems.append(f"{size_name} {url}: words broken across lines: "
                                + "; ".join(broken))
            if len(problems) > found_before:  # what the reader of the failure will want to see
                slug = re.sub(r"[^a-z0-9]+", "-", url.lower()).strip("-") or "index"
                screenshot(page, f"page-{size_name}-{slug}")
    assert not problems, f"{len(problems)} problem(s) over {len(pages)} pages:\n" + "\n".join(problems)
