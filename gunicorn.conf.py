"""gunicorn settings for ProfileOps: `gunicorn -c gunicorn.conf.py profileops.wsgi`.

Everything a deployment changes comes from the environment:

- GUNICORN_BIND (default 127.0.0.1:8000): where to listen; put the TLS proxy in front of it.
- GUNICORN_WORKERS (default WEB_CONCURRENCY, else 2 × CPUs + 1, at most 8): worker processes.
  Sync workers suit the admin: requests are short, database-bound, and few at a time.
- GUNICORN_TIMEOUT (default 60 s): a worker silent for longer is restarted. An import of up to
  PROFILEOPS_IMPORT_BACKGROUND_ROWS rows is checked in the request; larger ones go to qcluster.

The access log never contains query strings: the admin's search puts visitor identities there.
With LOG_FORMAT=json, gunicorn's own lines are JSON too (profileops/logging.py).
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS")
              or os.environ.get("WEB_CONCURRENCY")
              or min(2 * multiprocessing.cpu_count() + 1, 8))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so slow leaks never add up; jitter keeps them from all restarting
# at once.
max_requests = 2000
max_requests_jitter = 200
# Load the app once in the master: a broken setting fails the start instead of every worker.
preload_app = True

accesslog = "-"
errorlog = "-"
# %(U)s is the path without the query string (%(r)s and %(q)s would log it).
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

if os.environ.get("LOG_FORMAT") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "profileops.logging.JsonFormatter"}},
        # Where the plain format writes them: the access log to stdout, the rest to stderr.
        "handlers": {
            "access": {"class": "logging.StreamHandler", "formatter": "json",
                       "stream": "ext://sys.stdout"},
            "error": {"class": "logging.StreamHandler", "formatter": "json",
                      "stream": "ext://sys.stderr"},
            # gunicorn's defaults give the root logger a handler by this name.
            "console": {"class": "logging.StreamHandler", "formatter": "json",
                        "stream": "ext://sys.stderr"},
        },
        "loggers": {
            "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
