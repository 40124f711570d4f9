"""An aiohttp server in a thread and event loop of its own, for synchronous callers (pytest, the demo).

Subclasses implement ``_serve``: set up, call ``_listening(url)`` once they accept connections, and return
when ``_stopping`` is set. This module must not import kopf.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self


class ServedInThread:
    name = "server"

    def __init__(self) -> None:
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:34567`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError(f"The {self.name} is not running.")
        return self._url

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"The {self.name} can be started only once.")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._started.wait(timeout) or self._failure is not None:
            raise RuntimeError(f"The {self.name} did not start.") from self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"The {self.name} did not stop in time.")
        self._thread = None
        if self._failure is not None:
            raise RuntimeError(f"The {self.name} failed.") from self._failure

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback()`` in the server's loop (its objects are not thread-safe)."""
        if self._loop is None:
            raise RuntimeError(f"The {self.name} is not running.")
        self._loop.call_soon_threadsafe(callback)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()/stop() in the caller's thread
            self._failure = exc
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await self._serve(self._stopping)

    def _listening(self, url: str) -> None:
        self._url = url
        self._started.set()

    async def _serve(self, stopping: asyncio.Event) -> None:
        raise NotImplementedError
