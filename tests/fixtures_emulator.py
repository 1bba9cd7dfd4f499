"""Fixtures around the local Target emulator (the `target_emulator` package).

`emulator` is a started in-process TargetEmulator on a free 127.0.0.1 port, stopped after the test;
`emulator_factory(**options)` starts more (each with its own fault options), all stopped at
teardown. Neither needs the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from target_emulator import AdobeAdmin, TargetEmulator


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., TargetEmulator]]:
    started: list[TargetEmulator] = []

    def start(**options: Any) -> TargetEmulator:
        emulator = TargetEmulator(**options).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., TargetEmulator]) -> TargetEmulator:
    return emulator_factory()


@pytest.fixture
def faithful_emulator(emulator_factory: Callable[..., TargetEmulator]) -> TargetEmulator:
    """An emulator that behaves as Adobe documents (no profile created for unknown visitors,
    updates applied after `apply_delay` — here 60 s, moved with `advance()`)."""
    return emulator_factory(faithful=True, apply_delay=60.0)


@pytest.fixture
def adobe_emulator(emulator_factory: Callable[..., TargetEmulator]) -> TargetEmulator:
    """A (lenient) emulator with Adobe IMS and Target's Admin API (`emulator.adobe`, an
    AdobeAdmin): its profile APIs accept only the current profile token. Connect a connection
    to it with tests.conftest.use_adobe_credentials."""
    return emulator_factory(adobe=AdobeAdmin())
