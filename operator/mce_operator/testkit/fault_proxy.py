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
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import aiohttp.web

from mce_operator.testkit.kube import Fault
from mce_operator.testkit.served import ServedInThread

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


class FaultProxy(ServedInThread):
    """Forwards to ``upstream`` (``https://...``, verified with ``ca_path``) from a thread of its own."""

    name = "fault proxy"

    def __init__(self, upstream: str, *, ca_path: str | Path | None = None, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.ca_path = str(ca_path) if ca_path else None
        self._host = host
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._session: aiohttp.ClientSession | None = None

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

    # --- serving --------------------------------------------------------------------------------------

    async def _serve(self, stopping: asyncio.Event) -> None:
        context = ssl.create_default_context(cafile=self.ca_path) if self.ca_path else None
        connector = aiohttp.TCPConnector(ssl=context if context is not None else False, limit=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            self._session = session
            runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self._handle), shutdown_timeout=1.0)
            await runner.setup()
            try:
                site = aiohttp.web.TCPSite(runner, self._host, 0)
                await site.start()
                host, port = runner.addresses[0][:2]
                self._listening(f"http://{host}:{port}")
                await stopping.wait()
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
