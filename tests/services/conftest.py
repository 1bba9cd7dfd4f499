"""Fixtures the service modules share (the suite's own are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def target(faithful_emulator):
    """Target as Adobe documents it: the faithful emulator, under the name the verification
    modules read it by."""
    return faithful_emulator
