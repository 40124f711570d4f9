"""A fresh emulator (small lifecycle delays) and a reconciler harness talking to it over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reconciler_kit import Harness, make_harness

from mce_operator.emulator import Emulator


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(delay=0.1, seed=1) as emulator:
        yield emulator


@pytest.fixture
def harness(emu: Emulator) -> Harness:
    return make_harness(emu)
