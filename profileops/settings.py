"""ProfileOps settings — every deployment-specific value comes from the environment.

Embedded defaults (SQLite beside manage.py, django-q2's ORM broker, DEBUG on) serve the quick
start and the tests. Production sets DEBUG=0, SECRET_KEY, ALLOWED_HOSTS and DATABASE_URL; see
README.md, "Running for real".
"""

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {raw!r}")


def _env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if not raw:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = _env_bool("DEBUG", True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Development only: a well-known key is harmless while DEBUG is on and refused otherwise.
    SECRET_KEY = "django-insecure-profileops-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # The admin without autodiscovery at start-up (profileops/apps.py): profileops/urls.py
    # registers the admin classes, so they load in the web process, not in send_updates or the
    # qcluster workers.
    "profileops.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "updates",
    # Login lockout (see "Logins and sessions" below); never loaded by a sending-only process.
    "axes",
]

# Embedded/demo mode: the demo app (seed data, start_demo, the emulator's command) is installed only
# here; a production install (DEBUG off) never loads it unless asked to explicitly.
PROFILEOPS_DEMO = _env_bool("PROFILEOPS_DEMO", DEBUG)
if PROFILEOPS_DEMO:
    INSTALLED_APPS.append("demo")

# A process that only sends — `manage.py send_updates` starts with PROFILEOPS_APPS=sending —
# loads the apps the models and the sending services need, and nothing of the web (admin,
# sessions, messages, static files) or of the scheduler (django-q2, whose configuration alone
# imports prometheus_client, psutil and multiprocessing): about a fifth of its start-up. The
# schedule's path runs in qcluster workers, which load every app.
PROFILEOPS_APPS = os.environ.get("PROFILEOPS_APPS", "all")
SENDING_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "updates"]
if PROFILEOPS_APPS == "sending":
    INSTALLED_APPS = list(SENDING_APPS)
elif PROFILEOPS_APPS != "all":
    raise ImproperlyConfigured(f"PROFILEOPS_APPS must be 'all' or 'sending', not {PROFILEOPS_APPS!r}")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Collected static files, compressed and with cache-busting names, straight from the app
    # server; then the probes, which answer before any host check (see updates/health.py).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "updates.health.ProbeMiddleware",
    "profileops.middleware.StrictUtf8RequestMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]
if PROFILEOPS_APPS == "sending":
    MIDDLEWARE.remove("axes.middleware.AxesMiddleware")

ROOT_URLCONF = "profileops.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "profileops.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, qcluster, commands) share one file: take the write lock at BEGIN
    # so concurrent writers queue instead of failing half-way with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# Test databases are per test process, so two test runs on one machine never collide; SQLite's is
# a file, not Django's in-memory default, so tests can start real worker processes against it.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _test_db_name = str(Path(tempfile.gettempdir()) / f"profileops-test-{os.getpid()}.sqlite3")
else:
    _test_db_name = f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
DATABASES["default"]["TEST"] = {"NAME": _test_db_name}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# One date format everywhere (2026-12-07 01:53:16 UTC), Django's own lists and pages included:
# profileops/formats/en/formats.py. Thousands separators are added where numbers are shown
# (display methods, |floatformat:"g"), not by USE_THOUSAND_SEPARATOR: that would also write
# "1,234" into ids in URLs, hidden inputs and chart coordinates.
FORMAT_MODULE_PATH = ["profileops.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
# Production serves what `collectstatic` wrote: gzip copies (brotli too where the brotli package
# is installed) and content-hashed names, so browsers may cache them for ever. While debugging,
# files come straight from the apps (the manifest would not exist before collectstatic) and are
# re-read on every request.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "admin:login"


def _env_whole(name: str, default: int, *, least: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < least:
        raise ImproperlyConfigured(f"{name} must be at least {least}, not {value}")
    return value


# --- Logins and sessions -------------------------------------------------------------------------
# A session ends after PROFILEOPS_SESSION_IDLE_MINUTES without a request (default a working day,
# 8 h): every request renews it, so it is an idle limit, not a limit on a working session.
SESSION_COOKIE_AGE = 60 * _env_whole("PROFILEOPS_SESSION_IDLE_MINUTES", 8 * 60, least=5)
SESSION_SAVE_EVERY_REQUEST = True

# django-axes counts failed logins (the admin's login form, and any authenticate() given a
# request) per account and, separately, per client address: PROFILEOPS_LOGIN_FAILURE_LIMIT
# failures lock that account — from every address — and that address — for every account —
# for PROFILEOPS_LOGIN_LOCKOUT_MINUTES (0: until an administrator unlocks it; README,
# "Security guarantees"). Attempts and lockouts are rows an administrator sees under
# "Axes" in the admin; `manage.py axes_reset_username <name>` / `axes_reset_ip <address>` unlock.
AUTHENTICATION_BACKENDS = [
    "profileops.auth.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _env_whole("PROFILEOPS_LOGIN_FAILURE_LIMIT", 10, least=1)
_lockout_minutes = _env_whole("PROFILEOPS_LOGIN_LOCKOUT_MINUTES", 60, least=0)
if _lockout_minutes:
    import datetime as _dt

    AXES_COOLOFF_TIME = _dt.timedelta(minutes=_lockout_minutes)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A success does not wipe the failures: with it, one valid account would let an address guess
# another account's password for ever (log in between guesses). Failures expire with the lock-out.
AXES_RESET_ON_SUCCESS = False
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_ENABLE_ADMIN = False  # its pages are registered by updates/admin/logins.py, logs read-only
AXES_VERBOSE = False  # no start-up banner in every process; failures and lockouts still logged
# Behind a reverse proxy every request comes from the proxy's address: TRUSTED_PROXY_COUNT=N
# (default 0: REMOTE_ADDR, no proxy) takes the client's address from X-Forwarded-For, N entries
# from the right — the ones your own proxies appended; anything further left a client could
# have sent (profileops/auth.py).
TRUSTED_PROXY_COUNT = _env_whole("TRUSTED_PROXY_COUNT", 0, least=0)
AXES_CLIENT_IP_CALLABLE = "profileops.auth.client_address"

# Mail, for alerts (updates/alerts.py). Without EMAIL_HOST, mail is printed to the console.
if os.environ.get("EMAIL_HOST"):
    EMAIL_HOST = os.environ["EMAIL_HOST"]
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "profileops@localhost")

# Security: safe defaults whenever DEBUG is off (check --deploy stays clean).
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", True)
    # Load balancers and Prometheus probe the app over plain HTTP on its own port.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", True)
    if _env_bool("SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

IMPORT_EXPORT_SKIP_ADMIN_LOG = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Sending and importing -------------------------------------------------------------------
# Every PROFILEOPS_<NAME> environment variable, as text. updates/conf.py names the settings, their
# types and defaults; updates/checks.py refuses impossible values when the app starts.
PROFILEOPS = {
    name.removeprefix("PROFILEOPS_"): value
    for name, value in os.environ.items()
    if name.startswith("PROFILEOPS_") and name not in {"PROFILEOPS_DEMO", "PROFILEOPS_APPS",
                                                        "PROFILEOPS_SESSION_IDLE_MINUTES",
                                                        "PROFILEOPS_LOGIN_FAILURE_LIMIT",
                                                        "PROFILEOPS_LOGIN_LOCKOUT_MINUTES"}
}

# --- django-q2 ---------------------------------------------------------------------------------
# ORM broker by default; Redis when Q_REDIS_URL names one. The task timeout stays below `retry`
# so the broker never hands a still-running send task to a second worker.
Q_CLUSTER = {
    "name": os.environ.get("Q_CLUSTER_NAME", "profileops"),
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": 90,
    "retry": 120,
    "max_attempts": 1,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 1000,
    "label": "Task queue",
}
if os.environ.get("Q_REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["Q_REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = float(os.environ.get("Q_ORM_POLL", "1"))

# --- Logging (profileops/logging.py): LOG_FORMAT=json for one JSON object per line -------------
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "profileops.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # urllib3 logs full request URLs at DEBUG — those carry profile values. Keep it quiet.
    "loggers": {"urllib3": {"level": "WARNING"}},
}
