"""Run :class:`~mce_operator.testkit.kube.KubeEmulator` on a local port in a background thread.

The server has its own thread and event loop, so it serves synchronous code (pytest, the demo CLI) and
asynchronous code (kopf in yet another thread) alike. The helper methods are synchronous and go through
HTTP like any other client (:class:`~mce_operator.testkit.client.KubeClient`'s verbs), so what they show is
what an operator sees.

    with KubeServer(crds=[crd]) as kube:
        kube.create({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {...}, "spec": {...}})
        kube.wait_for("widgets", "default", "w1", lambda obj: obj.get("status", {}).get("ready"))

This module must not import kopf: build ``kopf.ConnectionInfo(**kube.connection_info())`` in the caller.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp.web
import yaml

from mce_operator.testkit.client import KubeApiError, KubeClient
from mce_operator.testkit.kube import Fault, KubeEmulator, ResourceSpec

__all__ = ["Fault", "KubeApiError", "KubeServer"]

Body = dict[str, Any]


class KubeServer(KubeClient):
    """An in-memory Kubernetes API on ``http://127.0.0.1:<ephemeral port>``, served from a thread."""

    def __init__(
        self,
        crds: Iterable[Mapping[str, Any]] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        namespaces: Iterable[str] = ("default",),
        auto_create_namespaces: bool = True,
        kopf_peering: bool = False,
        event_history: int = 10_000,
        request_history: int = 10_000,
        request_timeout: float = 10.0,
    ) -> None:
        self.emulator = KubeEmulator(
            crds,
            namespaces=namespaces,
            auto_create_namespaces=auto_create_namespaces,
            kopf_peering=kopf_peering,
            event_history=event_history,
            request_history=request_history,
        )
        super().__init__("", timeout=request_timeout)
        self._host, self._port = host, port
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None

    # --- lifecycle --------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:34567`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("The server is not running.")
        return self._url

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("The server can be started only once.")
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout) or self._failure is not None:
            raise RuntimeError("The Kubernetes emulator did not start.") from self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("The Kubernetes emulator did not stop in time.")
        self._thread = None
        if self._failure is not None:
            raise RuntimeError("The Kubernetes emulator failed.") from self._failure

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()/stop() in the caller's thread
            self._failure = exc
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator:
            runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self.emulator), shutdown_timeout=1.0)
            await runner.setup()
            try:
                site = aiohttp.web.TCPSite(runner, self._host, self._port)
                await site.start()
                host, port = runner.addresses[0][:2]
                self._url = f"http://{host}:{port}"
                self._started.set()
                await self._stop.wait()
                self.emulator.close_watches()
            finally:
                await runner.cleanup()

    # --- faults -----------------------------------------------------------------------------------------

    def inject(self, method: str, status: int, **narrowing: Any) -> Fault:
        """Answer the next matching request(s) with an error (see ``testkit.kube.Fault``)."""
        return self.emulator.inject(Fault(method=method.upper(), status=status, **narrowing))

    def drop_watches(self) -> None:
        """End every open watch-stream, as an API server does at its request timeout."""
        if self._loop is None:
            raise RuntimeError("The server is not running.")
        self._loop.call_soon_threadsafe(self.emulator.close_watches)

    # --- connection info ----------------------------------------------------------------------------

    def connection_info(self, namespace: str = "default") -> dict[str, Any]:
        """The keyword arguments for ``kopf.ConnectionInfo`` (returned from an ``@kopf.on.login()``)."""
        return {"server": self.url, "insecure": True, "default_namespace": namespace}

    def write_kubeconfig(self, path: str | pathlib.Path, namespace: str = "default") -> pathlib.Path:
        """Write a kubeconfig for this server (for kubectl, the kubernetes client, or kopf's own login)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "emulator", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}
            ],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                }
            ],
            "current-context": "emulator",
        }
        path = pathlib.Path(path)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # --- the client (KubeClient's verbs) ------------------------------------------------------------

    def resource(self, name: str) -> ResourceSpec:
        """The served resource for a plural, singular, kind, short name, or ``plural.group``."""
        matches = [
            spec for spec in self.emulator.specs() if name.lower() in spec.names() or name == spec.kind
        ]
        if not matches:
            raise KeyError(f"No such resource is served: {name!r}")
        # Prefer the core group (as kubectl does for "events") and the storage version.
        matches.sort(key=lambda s: (s.group != "", s.version != (s.storage_version or s.version)))
        return matches[0]
