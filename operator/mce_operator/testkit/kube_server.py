"""Run :class:`~mce_operator.testkit.kube.KubeEmulator` on a local port in a background thread.

The server has its own thread and event loop, so it serves synchronous code (pytest, the demo CLI) and
asynchronous code (kopf in yet another thread) alike. The helper methods are synchronous and go through
HTTP like any other client, so what they show is what an operator sees.

    with KubeServer(crds=[crd]) as kube:
        kube.create({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {...}, "spec": {...}})
        kube.wait_for("widgets", "default", "w1", lambda obj: obj.get("status", {}).get("ready"))

This module must not import kopf: build ``kopf.ConnectionInfo(**kube.connection_info())`` in the caller.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import pathlib
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp.web
import yaml

from mce_operator.testkit.kube import KubeEmulator, ResourceSpec

__all__ = ["KubeApiError", "KubeServer"]

Body = dict[str, Any]


class KubeApiError(Exception):
    """An error answer of the API: ``status`` is the HTTP code, ``body`` the ``Status`` object."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class KubeServer:
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
        self.request_timeout = request_timeout
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

    # --- a small synchronous client -------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One HTTP request to the API; the decoded JSON answer, or :class:`KubeApiError`."""
        url = self.url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.request_timeout) as rsp:
                return json.loads(rsp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = raw.decode(errors="replace")
            raise KubeApiError(exc.code, answer) from None

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

    def path(
        self, resource: str | ResourceSpec, namespace: str | None = None, name: str | None = None
    ) -> str:
        spec = self.resource(resource) if isinstance(resource, str) else resource
        base = f"/apis/{spec.group}/{spec.version}" if spec.group else f"/api/{spec.version}"
        if spec.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        return base + f"/{spec.plural}" + (f"/{name}" if name else "")

    def create(self, obj: Mapping[str, Any], namespace: str | None = None) -> Body:
        """Create an object (its resource is found by apiVersion and kind); returns it as stored."""
        group, _, version = str(obj["apiVersion"]).rpartition("/")
        specs = [
            s for s in self.emulator.specs() if (s.group, s.version, s.kind) == (group, version, obj["kind"])
        ]
        if not specs:
            raise KeyError(f"No resource serves {obj['apiVersion']} {obj['kind']}")
        namespace = namespace or obj.get("metadata", {}).get("namespace") or "default"
        result: Body = self.request("POST", self.path(specs[0], namespace), dict(obj))
        return result

    def get(self, resource: str, namespace: str | None, name: str, *, subresource: str | None = None) -> Body:
        """One object; raises :class:`KubeApiError` (status 404) if it does not exist."""
        suffix = f"/{subresource}" if subresource else ""
        result: Body = self.request("GET", self.path(resource, namespace, name) + suffix)
        return result

    def find(self, resource: str, namespace: str | None, name: str) -> Body | None:
        """One object, or None if it does not exist."""
        try:
            return self.get(resource, namespace, name)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[Body]:
        """The objects of a resource, in one namespace or (namespace=None) in all."""
        params = {"labelSelector": label_selector} if label_selector else None
        answer = self.request("GET", self.path(resource, namespace), params=params)
        items: list[Body] = answer["items"]
        return items

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        subresource: str | None = None,
        json_patch: bool = False,
    ) -> Body:
        """A merge patch (as ``kubectl apply``/``kubectl patch --type=merge`` sends), or a JSON patch.

        A merge patch to ``spec`` bumps ``metadata.generation``; to patch ``status`` of a resource with the
        status subresource, pass ``subresource="status"``.
        """
        suffix = f"/{subresource}" if subresource else ""
        kind = "application/json-patch+json" if json_patch else "application/merge-patch+json"
        result: Body = self.request(
            "PATCH", self.path(resource, namespace, name) + suffix, patch, content_type=kind
        )
        return result

    def delete(self, resource: str, namespace: str | None, name: str) -> Body:
        """Delete (or, with finalizers, mark for deletion); returns the object as last seen."""
        result: Body = self.request("DELETE", self.path(resource, namespace, name))
        return result

    def events(self, namespace: str | None = None) -> builtins.list[Body]:
        """The Events posted (core/v1 and events.k8s.io/v1), oldest first."""
        events = self.list("events", namespace) + self.list("events.events.k8s.io", namespace)
        return sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def wait_for(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        predicate: Callable[[Body], Any] = lambda obj: True,
        *,
        timeout: float = 5.0,
        interval: float = 0.02,
    ) -> Body:
        """Poll until the object exists and the predicate is truthy for it; returns the object."""
        deadline = time.monotonic() + timeout
        last: Body | None = None
        while True:
            last = self.find(resource, namespace, name)
            if last is not None and predicate(last):
                return last
            if time.monotonic() > deadline:
                raise TimeoutError(f"{resource} {namespace}/{name} did not get there in {timeout}s: {last!r}")
            time.sleep(interval)

    def wait_gone(
        self, resource: str, namespace: str | None, name: str, *, timeout: float = 5.0, interval: float = 0.02
    ) -> None:
        """Poll until the object does not exist anymore."""
        deadline = time.monotonic() + timeout
        while (last := self.find(resource, namespace, name)) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{resource} {namespace}/{name} still exists after {timeout}s: {last!r}")
            time.sleep(interval)
