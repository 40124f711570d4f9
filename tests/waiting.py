"""Polling for a condition in tests, failing with what was awaited and what was seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait(
    what: str, check: Callable[[], Any], timeout: float = 20, show: Callable[[], str] | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with what was awaited and what was seen."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f"\n{show()}" if show else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{detail}", pytrace=False)
        time.sleep(0.05)
