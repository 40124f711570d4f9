"""The HTTP server: SageMaker's control plane and Application Auto Scaling (both AWS JSON 1.1, told apart by
the X-Amz-Target prefix), SageMaker's runtime (REST-JSON) and the admin API, all on one port, so that
``AWS_ENDPOINT_URL_SAGEMAKER``, ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` and
``AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING`` can all point to it."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ServiceError
from .faults import parse_faults
from .service import TARGET_PREFIXES, Service

CONTROL_TYPE = "application/x-amz-json-1.1"
ADMIN_PREFIX = "/_emulator"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Hundreds of clients may connect at once (benchmarks); the default backlog of 5 would refuse some.
    request_queue_size = 1024
    service: Service

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request (an operator killed, a test ending) is not the server's
        # error; anything else is still printed.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "mce-emulator"
    # Headers and body leave in separate writes otherwise, and Nagle + delayed ACKs add ~40 ms to each call.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing -----------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any, content_type: str = "application/json", **headers: str) -> None:
        self._send(status, json.dumps(data).encode(), content_type, headers)

    def _error(self, error: ServiceError, *, runtime: bool) -> None:
        if runtime:
            payload: dict[str, Any] = {"message": error.message}
            content_type = "application/json"
        else:
            payload = {"__type": error.code, "message": error.message}
            content_type = CONTROL_TYPE
        self._json(error.status, payload, content_type, **{"x-amzn-ErrorType": error.code})

    # -- routing ------------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if path.startswith(ADMIN_PREFIX):
            self._admin("POST", path, body)
        elif path.startswith("/endpoints/") and path.endswith("/invocations"):
            self._invoke(unquote(path[len("/endpoints/") : -len("/invocations")]), body)
        else:
            self._control(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith(ADMIN_PREFIX):
            self._admin("GET", path, b"")
        elif path in ("/", "/ping"):
            self._json(200, {"service": "mce-emulator", "status": "ok"})
        else:
            self._json(404, {"error": f"no such path: {path}"})

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if path.startswith(ADMIN_PREFIX):
            self._admin("DELETE", path, body)
        else:
            self._json(404, {"error": f"no such path: {path}"})

    def _control(self, raw: bytes) -> None:
        target = self.headers.get("X-Amz-Target", "")
        prefix, _, operation = target.partition(".")
        try:
            if prefix not in TARGET_PREFIXES or not operation:
                raise ServiceError("UnknownOperationException", f"Unknown operation {target or '(none)'}.")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise ServiceError("SerializationException", "The request body is not valid JSON.") from None
            result = self.server.service.control(operation, body, TARGET_PREFIXES[prefix])
        except ServiceError as error:
            self._error(error, runtime=False)
            return
        self._json(200, result, CONTROL_TYPE)

    def _invoke(self, name: str, body: bytes) -> None:
        headers = self.headers
        try:
            result = self.server.service.invoke(
                name,
                body,
                content_type=headers.get("Content-Type"),
                target_container=headers.get("X-Amzn-SageMaker-Target-Container-Hostname"),
                target_variant=headers.get("X-Amzn-SageMaker-Target-Variant"),
            )
        except ServiceError as error:
            self._error(error, runtime=True)
            return
        extra = {"x-Amzn-Invoked-Production-Variant": result.variant}
        custom = headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if custom:
            extra["X-Amzn-SageMaker-Custom-Attributes"] = custom
        self._send(200, result.body, result.content_type, extra)

    # -- the admin API ------------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        service = self.server.service
        route = path[len(ADMIN_PREFIX) :].rstrip("/") or "/"
        try:
            data = json.loads(raw) if raw.strip() else {}
            answer = self._admin_route(service, method, route, data)
        except (ValueError, TypeError, KeyError) as error:
            self._json(400, {"error": str(error)})
            return
        except ServiceError as error:
            self._json(error.status, {"error": error.message, "code": error.code})
            return
        if answer is None:
            self._json(404, {"error": f"no such admin route: {method} {path}"})
        else:
            self._json(200, answer)

    def _admin_route(self, service: Service, method: str, route: str, data: Any) -> Any:
        if route == "/health" and method == "GET":
            return {
                "status": "ok",
                "account": service.account,
                "region": service.region,
                "delays": service.delays.to_dict(),
            }
        if route == "/calls" and method == "GET":
            query = parse_qs(urlsplit(self.path).query)
            operation = query.get("operation", [None])[0]
            name = query.get("name", [None])[0]
            return {"calls": [c.to_dict() for c in service.calls_to(operation, name)]}
        if route == "/calls" and method == "DELETE":
            service.clear_calls()
            return {}
        if route == "/faults":
            if method == "GET":
                return {"faults": service.faults}
            if method == "POST":
                return {"faults": [service.add_fault(f).to_dict() for f in parse_faults(data)]}
            if method == "DELETE":
                service.clear_faults()
                return {}
        if route.startswith("/faults/") and method == "DELETE":
            if not service.remove_fault(int(route.rsplit("/", 1)[1])):
                raise KeyError("no such fault")
            return {}
        if route == "/reset" and method == "POST":
            service.reset()
            return {}
        if route == "/config" and method == "POST":
            known = {"delay", "createDelay", "updateDelay", "deleteDelay", "deploymentTimeScale"}
            unknown = set(data) - known
            if unknown:
                raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
            service.set_delay(
                data.get("delay"),
                create=data.get("createDelay"),
                update=data.get("updateDelay"),
                delete=data.get("deleteDelay"),
                deployment_time_scale=data.get("deploymentTimeScale"),
            )
            return {"delays": service.delays.to_dict()}
        if route == "/scale" and method == "POST":
            if not isinstance(data, dict) or set(data) != {"endpoint", "variant", "desiredInstanceCount"}:
                raise ValueError('give {"endpoint": NAME, "variant": NAME, "desiredInstanceCount": N}')
            count = data["desiredInstanceCount"]
            if not isinstance(count, int) or isinstance(count, bool):
                raise ValueError("desiredInstanceCount must be an integer")
            service.scale_variant(str(data["endpoint"]), str(data["variant"]), count)
            return service.snapshot()
        if route == "/state":
            if method == "GET":
                return service.snapshot()
            if method == "POST":
                return self._admin_state(service, data)
        return None

    @staticmethod
    def _admin_state(service: Service, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("endpoint"), str):
            raise ValueError(
                'give {"endpoint": NAME, "status": STATUS} or {"endpoint": NAME, "delete": true}'
            )
        if data.get("delete"):
            service.delete_endpoint_now(data["endpoint"])
        else:
            duration = data.get("duration")
            service.set_endpoint_status(
                data["endpoint"],
                str(data["status"]),
                failure_reason=data.get("failureReason"),
                duration=None if duration is None else float(duration),
            )
        return service.snapshot()


class Emulator(Service):
    """The SageMaker emulator: the service plus its HTTP server.

    In tests::

        with Emulator(delay=0.05) as emu:
            sm = boto3.client("sagemaker", endpoint_url=emu.url, ...)

    ``port=0`` picks a free port; ``url`` tells which once started.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def bind(self) -> None:
        """Open the listening socket (and learn the port) without serving yet."""
        if self._server is not None:
            return
        server = _Server((self.host, self.port), _Handler)
        server.service = self
        self._server = server
        self.port = server.server_address[1]

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        """Serve in the calling thread until ``stop`` is called (from another thread) or an exception."""
        self.bind()
        assert self._server is not None
        self._server.serve_forever(poll_interval=poll_interval)

    def start(self) -> Emulator:
        """Serve in a background daemon thread."""
        self.bind()
        # A short poll makes ``stop`` quick: tests start and stop an emulator each.
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.02,), name="mce-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        if self._thread is not None:
            server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
