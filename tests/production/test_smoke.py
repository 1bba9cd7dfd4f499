"""The production recipe (docs/operations/running-for-real.md), followed as written, works end to end.

With DEBUG=0, a fresh random SECRET_KEY, a PostgreSQL database of its own (created here and
dropped afterwards) and django-q2's Redis broker (database 11 of the local Redis under a cluster
name of its own), the test runs the recipe's commands — `check --deploy`, `migrate`,
`createsuperuser`, `collectstatic`, gunicorn with gunicorn.conf.py, a `qcluster` — beside the
local Target emulator. Then, in Chromium, an operator logs in and stages an update (the admin's
CSS and JS must load: no 4xx in the network log), a supervisor approves it, and the schedule
sends it to the emulator through the cluster; /readyz turns ready once the schedule has run, and
/metrics counts the acknowledgment.

TLS: in production a proxy ends TLS and sets `X-Forwarded-Proto: https` (SECURE_PROXY_SSL_HEADER=1
in the recipe). The browser plays that proxy by sending the header itself, so the app runs with
exactly the production security settings (SSL redirect, secure cookies, HSTS); the only
difference is that the browser's origin is http://127.0.0.1:<port>, which CSRF_TRUSTED_ORIGINS
lists. The probes are asked over plain HTTP without the header, as a load balancer would.

Marked `production` and `slow`: CI runs it in its PostgreSQL pass. It needs PostgreSQL at
127.0.0.1:5432 (PROFILEOPS_SMOKE_POSTGRES_URL, a role that may create databases), Redis at
127.0.0.1:6379 (PROFILEOPS_TEST_REDIS_URL) and /usr/bin/chromium; a machine without them skips
with the reason, CI (CI set) fails instead. Every process it starts runs in its own session and
its process group is killed at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from cryptography.fernet import Fernet

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.reliability.conftest import Processes

pytestmark = [pytest.mark.production, pytest.mark.slow]

POSTGRES_URL = os.environ.get("PROFILEOPS_SMOKE_POSTGRES_URL",
                              "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PROFILEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
GUNICORN = Path(sys.executable).with_name("gunicorn")
METRICS_TOKEN = secrets.token_urlsafe(32)
IDENTITY = f"smoke-{uuid.uuid4().hex[:10]}"

# The recipe page's commands, one for one (tests/operations/test_recipe_page.py holds the
# page to this list): prepared in this order, then the two long-running processes.
RECIPE_PREPARE = [
    "python manage.py check --deploy --fail-level WARNING",
    "python manage.py migrate",
    "python manage.py collectstatic --noinput",
    "python manage.py createsuperuser",  # here with --noinput and DJANGO_SUPERUSER_* set
]
RECIPE_SERVER = "gunicorn -c gunicorn.conf.py profileops.wsgi"
RECIPE_CLUSTER = "python manage.py qcluster"
# What the recipe exports; this test sets each of them (to local values).
RECIPE_ENVIRONMENT = {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS",
                      "SECURE_PROXY_SSL_HEADER", "DATABASE_URL", "Q_REDIS_URL", "STATIC_ROOT",
                      "PROFILEOPS_ENCRYPTION_KEYS", "PROFILEOPS_METRICS_TOKEN", "LOG_FORMAT"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def _wait(predicate, *, timeout: float, what: str, explain=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{explain()}")
        time.sleep(0.5)


@pytest.fixture
def database():
    """A fresh PostgreSQL database; its URL. Dropped afterwards (with whatever still uses it)."""
    psycopg = pytest.importorskip("psycopg")
    name = f"profileops_smoke_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        _unavailable(f"PostgreSQL is not reachable at {POSTGRES_URL} ({type(error).__name__})")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_cluster_name():
    """A cluster name of its own (its Redis key prefix); its keys are removed afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        _unavailable(f"Redis is not reachable at {REDIS_URL} ({type(error).__name__})")
    name = f"profileops-smoke-{uuid.uuid4().hex[:10]}"
    yield name
    keys = list(client.scan_iter(match=f"django_q:{name}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def chromium():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        for process in procs.started:
            procs.stop(process, signal.SIGTERM, timeout=10)  # a clean stop first …
        procs.kill_all()  # … then whatever is left of each process group


def test_the_production_recipe_serves_a_styled_admin_sends_through_the_schedule_and_is_watched(
        tmp_path, database, redis_cluster_name, chromium, processes):
    if not GUNICORN.exists():
        pytest.fail(f"gunicorn is not installed beside {sys.executable}: pip install -e .[server]")
    port = _free_port()
    app = f"http://127.0.0.1:{port}"
    passwords = {name: secrets.token_urlsafe(16) for name in ("admin", "olivia", "sam")}

    # --- the environment, as the recipe page sets it -----------------------------------------
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PROFILEOPS_", "Q_", "DJANGO_", "GUNICORN_"))
           and k not in {"DATABASE_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "LOG_LEVEL",
                         "CSRF_TRUSTED_ORIGINS", "STATIC_ROOT", "WEB_CONCURRENCY"}}
    env.update({
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "PROFILEOPS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": app,
        "SECURE_PROXY_SSL_HEADER": "1",
        "DATABASE_URL": database,
        "Q_REDIS_URL": REDIS_URL,
        "Q_CLUSTER_NAME": redis_cluster_name,
        "Q_WORKERS": "1",
        "STATIC_ROOT": str(tmp_path / "static"),
        "PROFILEOPS_METRICS_TOKEN": METRICS_TOKEN,
        "LOG_FORMAT": "json",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "PYTHONUNBUFFERED": "1",
    })
    assert RECIPE_ENVIRONMENT <= env.keys()
    def argv(command: str) -> list[str]:
        """A recipe line as this interpreter (the venv's python and gunicorn) runs it."""
        words = shlex.split(command)
        program = {"python": sys.executable, "gunicorn": str(GUNICORN)}[words[0]]
        return [program, *words[1:]]

    def run(name: str, args: list[str], extra: dict[str, str] | None = None, timeout: float = 90):
        process = processes.start(name, args, {**env, **(extra or {})})
        code = processes.wait(process, timeout)
        assert code == 0, f"{' '.join(args)} exited with {code}\n{processes.output(process)}"

    for command in RECIPE_PREPARE:
        name = shlex.split(command)[2]
        if name == "createsuperuser":
            run(name, [*argv(command), "--noinput"], extra={
                "DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
                "DJANGO_SUPERUSER_PASSWORD": passwords["admin"]})
        else:
            run(name, argv(command))

    # --- Target: the emulator, on a port of its choosing --------------------------------------
    emulator = processes.start("emulator", [sys.executable, "-m", "target_emulator", "--port", "0"],
                               env)
    out = tmp_path / "emulator.out"
    emulator_url = _wait(
        lambda: (m := re.search(r"listening on (http://\S+)", out.read_text())) and m.group(1),
        timeout=20, what="the emulator", explain=lambda: processes.output(emulator))

    # --- what the superuser sets up in the admin: a connection, mappings, two people ---------
    setup = f"""
from django.contrib.auth.models import Group, User
from updates.models import AttributeMapping, TargetConnection
c = TargetConnection.objects.create(label="Acme loans", client_code="acme",
                                    base_url={emulator_url!r})
AttributeMapping.objects.create(connection=c, source_name="loan_status",
    target_name="loanStatus", value_type="choice", choices="applied\\nfunded\\ndeclined")
AttributeMapping.objects.create(connection=c, source_name="tier", target_name="loyaltyTier")
for name, group in (("olivia", "Operators"), ("sam", "Supervisors")):
    user = User.objects.create_user(name, password={passwords!r}[name], is_staff=True)
    user.groups.add(Group.objects.get(name=group))
"""
    run("setup", [sys.executable, "manage.py", "shell", "-c", setup])

    # --- the server -----------------------------------------------------------------------
    server = processes.start("gunicorn", argv(RECIPE_SERVER), env)
    def serving() -> bool:
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.returncode}\n{processes.output(server)}")
        return _get(f"{app}/healthz")[0] == 200

    _wait(serving, timeout=30, what="gunicorn", explain=lambda: processes.output(server))
    assert json.loads(_get(f"{app}/healthz")[1]) == {"status": "ok"}
    # Ready except for the scheduler, which has not run yet.
    status, body = _get(f"{app}/readyz")
    assert (status, json.loads(body)["failed"]) == (503, ["scheduler"]), body

    # --- in the browser: a styled admin, staging and approval ---------------------------------
    bad_responses: list[str] = []
    static_loaded: list[str] = []
    console_errors: list[str] = []

    def open_page():
        context = chromium.new_context(base_url=app, viewport={"width": 1366, "height": 768},
                                       extra_http_headers={"X-Forwarded-Proto": "https"})
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("response", lambda r: bad_responses.append(f"{r.status} {r.url}")
                if r.status >= 400 else static_loaded.append(r.url) if "/static/" in r.url
                else None)
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        return page

    def login(page, name: str) -> None:
        page.goto("/admin/login/?next=/admin/")
        page.get_by_label("Username").fill(name)
        page.get_by_label("Password").fill(passwords[name])
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/admin/$"))

    page = open_page()
    login(page, "olivia")
    # The admin's stylesheet applied: its header colours, not the browser's defaults.
    header_background = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header_background not in ("rgba(0, 0, 0, 0)", "transparent"), header_background
    page.get_by_role("link", name="Stage an update").click()
    # The only active connection: the admin skips the step of choosing it.
    page.get_by_label("Identity type").wait_for()
    page.get_by_label("Identity type").select_option("mbox3rdPartyId")
    page.get_by_label("Visitor identity").fill(IDENTITY)
    page.get_by_label("loan_status").select_option("funded")
    page.get_by_label("tier").fill("gold")
    page.get_by_role("button", name="Save", exact=True).click()
    message = page.locator("ul.messagelist").inner_text()
    update_id = re.search(r"Update #(\d+) is staged", message).group(1)
    page.locator(f'input[name="_selected_action"][value="{update_id}"]').check()
    page.locator('select[name="action"]').select_option("submit_selected")
    page.get_by_role("button", name="Go").click()
    page.locator("ul.messagelist").filter(has_text=f"Submitted 1 update: #{update_id}.").wait_for()
    # A search by identity: its query string must not reach the access log.
    page.goto(f"/admin/updates/profileupdate/?q={IDENTITY}")

    page = open_page()
    login(page, "sam")
    page.goto("/admin/queue/")
    page.locator(f"#queue-row-{update_id}").get_by_role("button", name="Approve").click()
    page.locator("ul.messagelist").filter(has_text=f"Approved 1 update: #{update_id}.").wait_for()

    assert not bad_responses, bad_responses
    assert not console_errors, console_errors
    # Compressed, cache-busted names from the manifest: base.<hash>.css and the admin's JS.
    assert any(re.search(r"/static/admin/css/base\.[0-9a-f]{12}\.css$", u) for u in static_loaded)
    assert any(re.search(r"/static/admin/js/.+\.[0-9a-f]{12}\.js$", u) for u in static_loaded)
    status, _ = _get(f"{app}/static/admin/css/base.css", {"X-Forwarded-Proto": "https"})
    assert status == 200  # the original names are served too (for links from outside)

    # --- the scheduler sends it ----------------------------------------------------------
    cluster = processes.start("qcluster", argv(RECIPE_CLUSTER), env)

    def received():
        status, body = _get(f"{emulator_url}/_emulator/received")
        return status == 200 and [r for r in json.loads(body) if r["identity"] == IDENTITY]

    [request] = _wait(received, timeout=80, what="the schedule to send the update",
                      explain=lambda: processes.output(cluster))
    assert request["attributes"] == {"loanStatus": "funded", "loyaltyTier": "gold"}
    page.goto(f"/admin/updates/profileupdate/{update_id}/change/")
    _wait(lambda: page.reload() or "Sent (acknowledged)" in page.locator(".po-state").inner_text(),
          timeout=20, what="the update page to show the acknowledgment")

    # --- and the operations side sees it ---------------------------------------------------
    _wait(lambda: _get(f"{app}/readyz")[0] == 200, timeout=20, what="/readyz to turn ready",
          explain=lambda: _get(f"{app}/readyz")[1] + processes.output(cluster))
    assert json.loads(_get(f"{app}/readyz")[1]) == {
        "status": "ok", "checks": {"database": "ok", "broker": "ok", "scheduler": "ok"}}
    assert _get(f"{app}/metrics")[0] == 401
    status, text = _get(f"{app}/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200
    assert 'profileops_acknowledgments_total{connection="acme"} 1.0' in text
    assert 'profileops_updates{connection="acme",status="sent"} 1.0' in text
    assert 'profileops_send_latency_seconds_count{connection="acme"} 1.0' in text
    assert IDENTITY not in text

    # --- a clean stop, and logs fit for machines and free of customer data ----------------
    assert processes.stop(cluster, signal.SIGTERM, timeout=30) == 0, processes.output(cluster)
    assert processes.stop(server, signal.SIGTERM, timeout=30) == 0, processes.output(server)
    server_log = (tmp_path / "gunicorn.out").read_text() + (tmp_path / "gunicorn.err").read_text()
    lines = [line for line in server_log.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["level"] for line in lines)  # one JSON object a line
    assert any('"GET /admin/queue/ HTTP/1.1" 200' in json.loads(line)["message"] for line in lines)
    assert IDENTITY not in server_log
    cluster_log = (tmp_path / "qcluster.out").read_text() + (tmp_path / "qcluster.err").read_text()
    assert IDENTITY not in cluster_log and "gold" not in cluster_log
