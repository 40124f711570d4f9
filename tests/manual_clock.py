"""A clock that moves only when told: the emulator's and the operator's time in tests that must be exact."""

from __future__ import annotations


class ManualClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
