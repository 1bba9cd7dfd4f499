"""A local stand-in for Adobe Target's Single Profile Update and profile read APIs.

Plain Python (standard library only, no Django): the embedded demo, the tests and the benchmarks
start it in-process (``TargetEmulator(...).start()``) or as a process of its own
(``python -m target_emulator --port 0``). See ``server.py`` for what it emulates and where it
knowingly differs from Target.
"""

from .adobe_admin import AdobeAdmin
from .server import (
    ACKNOWLEDGED,
    ACKNOWLEDGMENT,
    DROPPED,
    ERROR,
    OVER_QUOTA,
    REFUSED,
    TIMEOUT,
    WRONG_BODY_OUTCOME,
    FaultConfig,
    TargetEmulator,
)

__all__ = [
    "AdobeAdmin",
    "ACKNOWLEDGED",
    "ACKNOWLEDGMENT",
    "DROPPED",
    "ERROR",
    "OVER_QUOTA",
    "REFUSED",
    "TIMEOUT",
    "WRONG_BODY_OUTCOME",
    "FaultConfig",
    "TargetEmulator",
]
