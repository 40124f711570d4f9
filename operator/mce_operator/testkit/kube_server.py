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
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp.web
import yaml

from mce_operator.testkit.client import KubeApiError, KubeClient
from mce_operator.testkit.kube import Fault, KubeEmulator, ResourceSpec
from mce_operator.testkit.served import ServedInThread

__all__ = ["Fault", "KubeApiError", "KubeServer"]

Body = dict[str, Any]


class KubeServer(ServedInThread, KubeClient):
    """An in-memory Kubernetes API on ``http://127.0.0.1:<ephemeral port>``, served from a thread."""

    name = "Kubernetes emulator"

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
        ServedInThread.__init__(self)
        KubeClient.__init__(self, "", timeout=request_timeout)
        self._host, self._port = host, port

    # --- lifecycle --------------------------------------------------------------------------------------

    async def _serve(self, stopping: asyncio.Event) -> None:
        async with self.emulator:
            runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self.emulator), shutdown_timeout=1.0)
            await runner.setup()
            try:
                site = aiohttp.web.TCPSite(runner, self._host, self._port)
                await site.start()
                host, port = runner.addresses[0][:2]
                self._listening(f"http://{host}:{port}")
                await stopping.wait()
                self.emulator.close_watches()
            finally:
                await runner.cleanup()

    # --- faults -----------------------------------------------------------------------------------------

    def inject(self, method: str, status: int, **narrowing: Any) -> Fault:
        """Answer the next matching request(s) with an error (see ``testkit.kube.Fault``)."""
        return self.emulator.inject(Fault(method=method.upper(), status=status, **narrowing))

    def drop_watches(self) -> None:
        """End every open watch-stream, as an API server does at its request timeout."""
        self.call_soon(self.emulator.close_watches)

    # --- connection info ----------------------------------------------------------------------------

    def connection_info(self, namespace: str = "default") -> dict[str, Any]:
        """The keyword arguments for ``kopf.ConnectionInfo`` (returned from an ``@kopf.on.login()``)."""
        return {"server": self.url, "insecure": True, "default_namespace": namespace}

    def write_kubeconfig(self, path: str | pathlib.Path, namespace: str = "default") -> pathlib.Path:
        """Write a kubeconfig for this server (for kubectl, `mce-operator run`, or any client)."""
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
