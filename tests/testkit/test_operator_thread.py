"""OperatorThread runs an asyncio operator in its own thread and surfaces its failures."""

import asyncio
import threading

import pytest

from mce_operator.testkit import OperatorThread


async def well_behaved(stop_flag: threading.Event, ready_flag: threading.Event) -> None:
    ready_flag.set()
    await asyncio.to_thread(stop_flag.wait)


async def crashing(stop_flag: threading.Event, ready_flag: threading.Event) -> None:
    raise ValueError("boom")


def test_starts_and_stops() -> None:
    with OperatorThread(well_behaved) as thread:
        assert thread.alive
    assert not thread.alive


def test_a_crash_at_startup_is_raised_in_the_caller() -> None:
    with pytest.raises(RuntimeError) as exc:
        OperatorThread(crashing).start()
    assert isinstance(exc.value.__cause__, ValueError)
