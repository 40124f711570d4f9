"""Run an asyncio operator (e.g. ``kopf.operator(...)``) in its own thread and event loop.

kopf cancels the tasks that were created after it started, so it must not share an event loop with the
test runner. This helper does not import kopf: the caller passes a factory of the coroutine.

    def run(stop_flag: threading.Event, ready_flag: threading.Event) -> Awaitable[None]:
        return kopf.operator(registry=registry, settings=settings, standalone=True,
                             namespaces=["default"], stop_flag=stop_flag, ready_flag=ready_flag)

    with OperatorThread(run):
        ...  # the operator is running and has started its watchers

kopf accepts ``threading.Event`` for both flags.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

__all__ = ["OperatorThread"]

OperatorFactory = Callable[[threading.Event, threading.Event], Awaitable[Any]]


class OperatorThread:
    """Start the operator on enter (waiting until it says it is ready), stop it on exit."""

    def __init__(
        self,
        factory: OperatorFactory,
        *,
        name: str = "operator",
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.factory = factory
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # re-raised in the caller's thread
            self.failure = exc
        finally:
            self.ready_flag.set()  # unblock start() if the operator died before it was ready

    async def _main(self) -> None:
        await self.factory(self.stop_flag, self.ready_flag)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> Self:
        self._thread.start()
        if not self.ready_flag.wait(self.startup_timeout):
            self.stop()
            raise TimeoutError(f"The operator was not ready in {self.startup_timeout}s.")
        if self.failure is not None or not self._thread.is_alive():
            raise RuntimeError("The operator exited during its startup.") from self.failure
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self._thread.join(self.shutdown_timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"The operator did not stop in {self.shutdown_timeout}s.")
        if self.failure is not None:
            raise RuntimeError("The operator failed.") from self.failure

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
