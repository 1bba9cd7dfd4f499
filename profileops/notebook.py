"""ProfileOps from Jupyter: set up Django and name the person acting; the face itself lives in
``updates/notebook/`` (session, results, DataFrame cells, the loop-free ORM thread).

One line sets it up and names the person acting::

    from profileops import notebook
    nb = notebook.connect(as_user="alice")          # or: notebook.setup(); nb = notebook.as_user("alice")
    result = nb.stage(frame, connection="acme")     # one row per input row: the update id or the errors
    nb.submit(ids=result.ids)
    notebook.as_user("bob").approve(ids=result.ids)

**The same rules as the admin, no bypass.** Every call runs the services the admin, the import and
the commands run — ``importing.RowChecker`` and ``importing.rows_import`` to stage,
``workflow.update_submit`` through ``workflow.apply_to_each`` and, to approve or reject, the
same decision set-wise (``setwise.decide_set``), ``sending.send_due`` to send — as the named
user, so permissions, the four-eyes rule, the model's validation and the audit rows are exactly
theirs. The user is read afresh from the database on every call, so a permission withdrawn
meanwhile counts at once. (Whoever holds the database credentials could write rows directly;
this module is a way to act accountably, not a sandbox.)

**Configuration** is the app's: ``DJANGO_SETTINGS_MODULE`` (default ``profileops.settings``) and
``DATABASE_URL`` from the environment, so a notebook opened from ``notebooks/`` uses the same
embedded database as ``./dev start``. The repository root is put on ``sys.path`` when the module
runs from a source checkout, so the demo app and the emulator package import from any working
directory.

**Every ORM call runs on one worker thread without an event loop** (updates/notebook/thread.py
says why); use ``notebook.run(fn)`` for your own ORM code. Nothing here logs values, and
``setup()`` keeps the app's INFO log lines out of the cells.

Needs the ``[notebook]`` extra: ``pip install -e .[notebook]``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# The face's names, re-exported: notebooks and tests import them from here.
from updates.notebook import INSTALL_HINT  # first: without pandas it says what to install
from updates.notebook.base import DEFAULT_LIMIT, DEFAULT_REASON  # noqa: F401
from updates.notebook.cells import Inexact  # noqa: F401
from updates.notebook.listings import SYSTEM_ACTOR  # noqa: F401
from updates.notebook.results import (SHOWN_PROBLEMS,  # noqa: F401
                                      Decisions, Frame, LiveDiff, Preview, Result,
                                      Reverts, SendReport, StageResult)
from updates.notebook.session import Session, session_for
from updates.notebook.target_loop import NOT_STARTED  # noqa: F401
from updates.notebook.thread import orm

__all__ = ["INSTALL_HINT", "Decisions", "Frame", "LiveDiff", "Preview", "Result", "Reverts",
           "SendReport", "Session", "StageResult", "as_user", "close", "connect", "run", "setup"]

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parent.parent


def setup(*, settings_module: str | None = None, log_level: int | str = logging.WARNING) -> None:
    """Configure Django from the environment, as the app does. Safe to call more than once.

    The app's logging writes INFO lines (sends, claims, verification) to the process's stderr,
    which in Jupyter is the cell's output. For a notebook session the console handlers the
    settings attach (stream handlers on the root logger) are raised to `log_level` (WARNING by
    default), so cells show results, not log noise; warnings and errors still print. The loggers
    themselves are left as configured, so other handlers (and the test suite's) see every record.
    ``notebook.setup(log_level="INFO")`` brings the lines back.

    Example::

        notebook.setup()                      # DJANGO_SETTINGS_MODULE, DATABASE_URL from the env
    """
    if (REPO_ROOT / "manage.py").exists() and str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # a source checkout: demo/ and target_emulator/ too
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module or "profileops.settings")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()  # loads settings and apps; no database query
    _quiet_console(log_level)


def _quiet_console(level: int | str) -> None:
    """Set the level of the root logger's console handlers (settings.LOGGING "console")."""
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # not FileHandler, not pytest's capture
            handler.setLevel(level)


def run(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run your own ORM code on the module's database thread (where Django allows it).

    Example::

        from updates.models import ProfileUpdate
        notebook.run(lambda: ProfileUpdate.objects.filter(status="sent").count())
    """
    setup()
    return orm.run(fn, *args, **kwargs)


def close() -> None:
    """Close the database connection and stop the worker thread (also done at exit)."""
    orm.close()


def as_user(username: str) -> Session:
    """A session acting as `username` (who must exist and be active). Call setup() first.

    Example::

        supervisor = notebook.as_user("bob")
    """
    setup()
    return session_for(username)


def connect(*, as_user: str, log_level: int | str = logging.WARNING) -> Session:
    """setup() and as_user() in one line.

    Example::

        nb = notebook.connect(as_user="alice")
    """
    setup(log_level=log_level)
    return session_for(as_user)
