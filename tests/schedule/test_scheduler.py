"""The schedule of visits: one at a time per object, changes before polls, a booked visit always comes,
nothing starts while paused, a gone object is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mce_operator.scheduler import Entry, Scheduler


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=10))


class Recorder:
    """A visit that records itself, takes ``duration`` and asks for the next in ``delay``."""

    def __init__(self, delay: float | None = 60.0, duration: float = 0.0) -> None:
        self.delay, self.duration = delay, duration
        self.visits: list[tuple[str, Any]] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.changed = asyncio.Event()

    async def __call__(self, entry: Entry) -> float | None:
        if entry.key in self.running:
            self.overlaps += 1
        self.running.add(entry.key)
        self.visits.append((entry.key, entry.body.get("v")))
        self.changed.set()
        await asyncio.sleep(self.duration)
        self.running.discard(entry.key)
        return self.delay

    async def until(self, count: int) -> None:
        while len(self.visits) < count:
            self.changed.clear()
            await self.changed.wait()


def test_a_new_object_is_visited_at_once_and_again_when_its_visit_is_due() -> None:
    async def test() -> None:
        visit = Recorder(delay=0.05)
        scheduler = Scheduler(visit, workers=2)
        scheduler.start()
        scheduler.saw("a", {"v": 1}, state=dict, now=False)
        await visit.until(3)
        assert visit.visits[:3] == [("a", 1)] * 3
        await scheduler.stop()

    run(test)


def test_a_change_during_a_visit_is_visited_once_that_one_ends_never_in_parallel() -> None:
    async def test() -> None:
        visit = Recorder(delay=60, duration=0.05)
        scheduler = Scheduler(visit, workers=4)
        scheduler.start()
        scheduler.saw("a", {"v": 1}, state=dict, now=False)
        await visit.until(1)
        for v in (2, 3, 4):  # three changes while the first visit runs: one more visit, of the latest
            scheduler.saw("a", {"v": v}, state=dict, now=True)
        await visit.until(2)
        await asyncio.sleep(0.2)
        assert visit.visits == [("a", 1), ("a", 4)]
        assert visit.overlaps == 0
        await scheduler.stop()

    run(test)


def test_changes_go_before_visits_that_are_only_due() -> None:
    async def test() -> None:
        visit = Recorder(delay=0.0, duration=0.01)
        scheduler = Scheduler(visit, workers=1)
        scheduler.start()
        for key in "abc":
            scheduler.saw(key, {"v": 0}, state=dict, now=False)
        await visit.until(6)  # all three now poll back to back (due at once)
        scheduler.saw("new", {"v": 1}, state=dict, now=False)
        start = len(visit.visits)
        await visit.until(start + 3)
        assert ("new", 1) in visit.visits[start : start + 2], visit.visits[start:]
        await scheduler.stop()

    run(test)


def test_a_dropped_object_is_not_visited_again() -> None:
    async def test() -> None:
        visit = Recorder(delay=0.02)
        scheduler = Scheduler(visit, workers=1)
        scheduler.start()
        scheduler.saw("a", {"v": 1}, state=dict, now=False)
        await visit.until(1)
        scheduler.drop("a")
        await asyncio.sleep(0.1)
        assert visit.visits == [("a", 1)]
        assert len(scheduler) == 0
        await scheduler.stop()

    run(test)


def test_a_visit_that_says_gone_drops_the_object() -> None:
    async def test() -> None:
        visit = Recorder(delay=None)
        scheduler = Scheduler(visit, workers=1)
        scheduler.start()
        scheduler.saw("a", {"v": 1}, state=dict, now=False)
        await visit.until(1)
        await asyncio.sleep(0.05)
        assert len(scheduler) == 0

    run(test)


def test_a_failing_visit_is_made_again_after_the_error_delay() -> None:
    async def test() -> None:
        calls = []
        third = asyncio.Event()

        async def failing(entry: Entry) -> float | None:
            calls.append(entry.key)
            if len(calls) == 3:
                third.set()
            raise RuntimeError("boom")

        scheduler = Scheduler(failing, workers=1, on_error_delay=0.02)
        scheduler.start()
        scheduler.saw("a", {}, state=dict, now=False)
        await third.wait()
        assert calls == ["a"] * 3
        await scheduler.stop()

    run(test)


def test_nothing_starts_while_paused_and_what_was_due_runs_after() -> None:
    async def test() -> None:
        visit = Recorder(delay=60)
        scheduler = Scheduler(visit, workers=3)
        scheduler.start()
        scheduler.pause(True)
        for key in "abcde":
            scheduler.saw(key, {"v": 1}, state=dict, now=False)
        await asyncio.sleep(0.1)
        assert visit.visits == []
        scheduler.pause(False)
        await visit.until(5)
        assert sorted(k for k, _ in visit.visits) == list("abcde")
        await scheduler.stop()

    run(test)


def test_reset_states_gives_every_object_a_new_state() -> None:
    async def test() -> None:
        visit = Recorder(delay=60)
        scheduler = Scheduler(visit, workers=1)
        scheduler.start()
        old = scheduler.saw("a", {}, state=lambda: {"n": 1}, now=False).state
        scheduler.reset_states(lambda: {"n": 2})
        entry = scheduler.get("a")
        assert entry is not None and entry.state == {"n": 2} and old == {"n": 1}
        await scheduler.stop()

    run(test)


def test_stop_cancels_booked_visits() -> None:
    async def test() -> None:
        visit = Recorder(delay=0.01)
        scheduler = Scheduler(visit, workers=2)
        scheduler.start()
        scheduler.saw("a", {}, state=dict, now=False)
        await visit.until(1)
        await scheduler.stop()
        count = len(visit.visits)
        await asyncio.sleep(0.1)
        assert len(visit.visits) == count

    run(test)


def test_work_that_comes_while_paused_waits_for_the_end_of_the_pause() -> None:
    async def test() -> None:
        visit = Recorder(delay=60)
        scheduler = Scheduler(visit, workers=2)
        scheduler.start()
        await asyncio.sleep(0.01)  # the workers wait for work (not for the pause to end)
        scheduler.pause(True)
        for key in "abc":
            scheduler.saw(key, {"v": 1}, state=dict, now=False)
        await asyncio.sleep(0.1)
        assert visit.visits == []
        scheduler.pause(False)
        await visit.until(3)
        await asyncio.sleep(0.05)
        assert sorted(k for k, _ in visit.visits) == ["a", "b", "c"]
        await scheduler.stop()

    run(test)


def test_an_object_dropped_during_its_visit_is_not_visited_again_even_if_it_changed() -> None:
    async def test() -> None:
        visit = Recorder(delay=0.01, duration=0.05)
        scheduler = Scheduler(visit, workers=1)
        scheduler.start()
        scheduler.saw("a", {"v": 1}, state=dict, now=False)
        await visit.until(1)
        scheduler.saw("a", {"v": 2}, state=dict, now=True)  # during the visit: one more, after it
        scheduler.drop("a")
        await asyncio.sleep(0.2)
        assert visit.visits == [("a", 1)]
        await scheduler.stop()

    run(test)


def test_dropping_a_key_spares_a_newer_object_of_the_same_key() -> None:
    async def test() -> None:
        visit = Recorder(delay=60)
        scheduler = Scheduler(visit, workers=1)
        scheduler.start()
        old = scheduler.saw("a", {"v": 1}, state=dict, now=False)
        await visit.until(1)
        scheduler.drop("a")
        scheduler.saw("a", {"v": 2}, state=dict, now=False)
        scheduler.drop("a", old)  # the old object's late "gone" is not the new one's
        assert scheduler.get("a") is not None
        await visit.until(2)
        await scheduler.stop()

    run(test)


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_max_workers_must_be_a_whole_number_of_at_least_one(
    value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mce_operator import cli

    for argv, env in ((["run", "--max-workers", value], None), (["run"], value)):
        if env is None:
            monkeypatch.delenv("MCE_MAX_WORKERS", raising=False)
        else:
            monkeypatch.setenv("MCE_MAX_WORKERS", env)
        with pytest.raises(SystemExit):
            cli._parser().parse_args(argv)
        assert "argument --max-workers: must be" in capsys.readouterr().err
    monkeypatch.setenv("MCE_MAX_WORKERS", "7")
    assert cli._parser().parse_args(["run"]).max_workers == 7
