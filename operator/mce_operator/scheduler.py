"""One schedule for every object the operator watches: each always has its next visit booked.

The handlers tell it what they saw (``saw``: the object's latest body, and whether the change calls for a
visit now) and what a visit asked for (the seconds until the next). A fixed number of workers make the
visits, one at a time per object: a visit asked for while one runs is made once that one ends. Visits
asked for by a change go before visits that are merely due, so a burst of new objects is not queued
behind the polls of the objects already there.

It is one timer per object and a few workers in all, instead of a task (and its framework's state) per
object; it knows nothing of Kubernetes or SageMaker. While ``pause`` holds (a peer of higher priority
acts), no visit starts; timers keep running, and what is due is made once it ends.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

URGENT, DUE = 0, 1
# Visits at once, by default: each holds a thread while it waits for SageMaker or Kubernetes.
MAX_WORKERS = 20


class Entry:
    """One object: its latest body, the caller's state for it, and where it is in the schedule."""

    __slots__ = ("again", "body", "dropped", "key", "queued", "running", "state", "timer")

    def __init__(self, key: str, body: Mapping[str, Any], state: Any) -> None:
        self.key = key
        # Replaced whole by each event, never changed in place: a visit may keep the one it started with.
        self.body = body
        self.state = state
        self.timer: asyncio.TimerHandle | None = None
        self.queued = False
        self.running = False
        self.again = False
        self.dropped = False


# A visit: the seconds until the next one, or None when the object needs no more (it is gone).
Visit = Callable[[Entry], Awaitable[float | None]]


class Scheduler:
    def __init__(self, visit: Visit, *, workers: int, on_error_delay: float = 5.0) -> None:
        self._visit = visit
        self._workers = workers
        self._on_error_delay = on_error_delay
        self._entries: dict[str, Entry] = {}
        self._queue: list[tuple[int, int, Entry]] = []
        self._order = itertools.count()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- what the handlers tell it ----------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def saw(self, key: str, body: Mapping[str, Any], *, state: Callable[[], Any], now: bool) -> Entry:
        """The object's latest body; a visit now if ``now``, or if it is new (its first visit)."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Entry(key, body, state())
            now = True
        else:
            entry.body = body
        if now:
            self.visit_now(entry)
        return entry

    def visit_now(self, entry: Entry) -> None:
        if entry.dropped:
            return
        if entry.running:
            entry.again = True
            return
        self._enqueue(entry, URGENT)

    def drop(self, key: str, entry: Entry | None = None) -> None:
        """The object is gone: no more visits (one in progress ends as it will). With ``entry``, only if
        that is still the key's (not a newer object's of the same key)."""
        current = self._entries.get(key)
        if current is None or (entry is not None and current is not entry):
            return
        del self._entries[key]
        current.dropped = True
        self._cancel_timer(current)

    def reset_states(self, state: Callable[[], Any]) -> None:
        """A new state for every object, when what this process remembers may be stale (after a pause).
        A visit in progress keeps the one it started with."""
        for entry in self._entries.values():
            entry.state = state()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    def pause(self, paused: bool) -> None:
        if paused:
            self._unpaused.clear()
        else:
            self._unpaused.set()
            self._wake(len(self._idle))  # what was put back during the pause

    def __len__(self) -> int:
        return len(self._entries)

    # --- the schedule -----------------------------------------------------------------------------

    def _book(self, entry: Entry, delay: float) -> None:
        self._cancel_timer(entry)
        loop = self._loop or asyncio.get_running_loop()
        entry.timer = loop.call_later(max(delay, 0.0), self._due, entry)

    def _due(self, entry: Entry) -> None:
        entry.timer = None
        if not entry.dropped and not entry.running:
            self._enqueue(entry, DUE)

    def _cancel_timer(self, entry: Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    def _enqueue(self, entry: Entry, priority: int, *, wake: bool = True) -> None:
        self._cancel_timer(entry)
        if entry.queued and priority == DUE:
            return
        # An urgent visit for an entry already queued as due is queued again, ahead; the copy left
        # behind is skipped when it comes up (``queued`` is false by then).
        entry.queued = True
        heapq.heappush(self._queue, (priority, next(self._order), entry))
        if wake:
            self._wake(1)

    def _wake(self, count: int) -> None:
        """Wake up to ``count`` idle workers (each waits on a future of its own: exactly one per item)."""
        while count and self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    async def _next(self) -> Entry:
        loop = self._loop or asyncio.get_running_loop()
        while True:
            while self._queue:
                _, _, entry = heapq.heappop(self._queue)
                if entry.queued and not entry.dropped:
                    entry.queued = False
                    return entry
            waiter: asyncio.Future[None] = loop.create_future()
            self._idle.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    def start(self) -> None:
        """The workers, as tasks made in the caller's context (they and their visits inherit it)."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            self._loop.create_task(self._worker(), name=f"visits-{n}") for n in range(self._workers)
        ]

    async def stop(self) -> None:
        """No new visit starts; those in progress are cancelled at their next wait."""
        for entry in list(self._entries.values()):
            self._cancel_timer(entry)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _worker(self) -> None:
        while True:
            await self._unpaused.wait()
            entry = await self._next()
            if not self._unpaused.is_set():
                # Paused while waiting for work: put it back, waking no one, for when the pause ends.
                self._enqueue(entry, URGENT, wake=False)
                continue
            entry.running = True
            try:
                delay = await self._visit(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    f"A visit of {entry.key} failed unexpectedly; again in {self._on_error_delay:g} s."
                )
                delay = self._on_error_delay
            finally:
                entry.running = False
            try:
                self._after(entry, delay)
            except Exception:  # never lose the worker, nor the object's next visit
                logger.exception(
                    f"Could not book the next visit of {entry.key}; in {self._on_error_delay:g} s."
                )
                self._book(entry, self._on_error_delay)

    def _after(self, entry: Entry, delay: float | None) -> None:
        if entry.dropped:
            return
        if delay is None:
            self.drop(entry.key, entry)
        elif entry.again:
            entry.again = False
            self._enqueue(entry, URGENT)
        elif not entry.dropped:
            self._book(entry, float(delay))
