"""The notebook API runs every ORM call on its own worker thread (updates/notebook/thread.py), so
its tests need committed data the thread can see: transactional tests, and the thread's
database connection closed after each test (PostgreSQL drops no database with a session open)."""

from __future__ import annotations

import pytest

pytest.importorskip("pandas", reason="needs the [notebook] extra")


@pytest.fixture(autouse=True)
def _close_notebook_connection():
    yield
    from profileops import notebook

    notebook.close()
