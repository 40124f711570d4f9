"""A reverse proxy in front of a real API server that answers chosen requests with an error.

A real kube-apiserver cannot be told to refuse the next PATCH of one object; this proxy can. The operator
talks to the proxy (plain HTTP on a loopback port) as it would to the API server; everything else is
forwarded as is (headers, bodies, watch-streams), over TLS to the real server. Faults are the in-memory
API's (:class:`~mce_operator.testkit.kube.Fault`), so the same test reads the same on both servers.

    with FaultProxy(plane.url, ca_path=plane.ca_path) as proxy:
        proxy.inject("PATCH", 409, plural="multicontainerendpoints", name="fraud", times=2)
        ... run the operator against proxy.url ...

This module must not import kopf.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

import aiohttp
import aiohttp.web

from mce_operator.testkit.kube import Fault

__all__ = ["FaultProxy"]

# /api/v1/namespaces/ns/pods/name/status, /apis/group/version/plural/name, ...
_PATH = re.compile(
    r"^/(?:api/[^/]+|apis/[^/]+/[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?"
    r"(?:/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<subresource>[^/]+))?)?)?/?$"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}
_REASONS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


def _target(path: str) -> tuple[str | None, str | None, str | None]:
    match = _PATH.match(path)
    if match is None:
        return None, None, None
    plural, name, sub = match.group("plural", "name", "subresource")
    if plural == "namespaces" and match.group("namespace") is None and name is not None and sub is None:
        return plural, name, None
    return plural, name, sub


class FaultProxy:
    """Forwards to ``upstream`` (``https://...``, verified with ``ca_path``) from a thread of its own."""

    def __init__(self, upstream: str, *, ca_path: str | Path | None = None, host: str = "127.0.0.1") -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_path = str(ca_path) if ca_path else None
        self._host = host
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("The proxy is not running.")
        return self._url

    # --- faults -------------------------------------------------------------------------------------

    def inject(self, method: str, status: int, **narrowing: Any) -> Fault:
        """Answer the next matching request(s) with ``status``; ``Fault.hits`` counts them."""
        fault = Fault(method=method.upper(), status=status, **narrowing)
        with self._lock:
            self._faults.append(fault)
        return fault

    def _fault(self, method: str, path: str, query: str, body: bytes) -> Fault | None:
        if method == "GET" and parse_qs(query).get("watch", [""])[0] in ("true", "1"):
            method = "WATCH"
        plural, name, sub = _target(path)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        with self._lock:
            for fault in self._faults:
                if fault.applies(method, plural, name, sub, data):
                    fault.hits += 1
                    return fault
        return None

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout) or self._failure is not None:
            raise RuntimeError("The fault proxy did not start.") from self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        context = ssl.create_default_context(cafile=self.ca_path) if self.ca_path else None
        connector = aiohttp.TCPConnector(ssl=context if context is not None else False, limit=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            self._session = session
            server = aiohttp.web.Server(self._handle)
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            try:
                site = aiohttp.web.TCPSite(runner, self._host, 0)
                await site.start()
                host, port = runner.addresses[0][:2]
                self._url = f"http://{host}:{port}"
                self._started.set()
                await self._stop.wait()
            finally:
                await runner.cleanup()

    async def _handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await request.read()
        fault = self._fault(request.method, request.path, request.query_string, body)
        if fault is not None:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "reason": _REASONS.get(fault.status, "InjectedFault"),
                "message": f"injected fault: {request.method} {request.path} answered {fault.status}",
                "code": fault.status,
            }
            return aiohttp.web.json_response(status, status=fault.status)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        url = self.upstream + request.path_qs
        assert self._session is not None  # set before the server starts
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, timeout=aiohttp.ClientTimeout(total=None)
        ) as upstream:
            response = aiohttp.web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP},
            )
            await response.prepare(request)
            # Chunk by chunk, so that a watch-stream's events reach the client as they come.
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
