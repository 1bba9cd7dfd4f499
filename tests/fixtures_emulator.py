"""Fixtures around the local Target emulator (updates/emulator.py). Filled in with the emulator."""
