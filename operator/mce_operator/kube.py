"""The Kubernetes adapter: the few writes the operator makes itself (status, its finalizer, its peering
object), over urllib3.

kopf writes through its own retry machinery, which only runs again when another event arrives; the
operator's scheduler must make progress without one, so what it depends on it writes here, and a
failed write is simply made again at the next look. Synchronous: it runs in the same worker thread
as the SageMaker calls of a look.

Not the ``kubernetes`` client: importing it costs about 44 MB of the operator's RSS, for four kinds of
request. urllib3 is in the process anyway (botocore's HTTP client). The credentials come from
:mod:`mce_operator.credentials`: fetched again once when the API server answers 401 (a rotated
service-account token, an exec credential refused), and before they expire.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import urllib3

from mce_operator import api
from mce_operator.credentials import Connection, Credentials, Login, LoginError, Session, fixed

MERGE_PATCH = "application/merge-patch+json"
# Many objects' looks run at once in kopf's worker threads: as many pooled connections.
POOL_SIZE = 32
TIMEOUT = urllib3.Timeout(connect=10.0, read=60.0)
# A pooled connection the API server closed while idle fails on its next use: that request is sent
# again on a new connection, whatever its method. The operator's writes can be: a merge patch of the
# status gives the same result twice, a finalizer patch carries its resourceVersion (the second one
# gets a 409, and set_finalizer reads the object again), a create that is repeated gets a 409 (exists).
RETRIES = urllib3.Retry(total=2, connect=2, read=1, status=0, redirect=0, allowed_methods=None)
USER_AGENT = "mce-operator"


class KubeError(Exception):
    """A Kubernetes request failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status

    @property
    def gone(self) -> bool:
        return self.status == 404


def _object_path(namespace: str, name: str, subresource: str = "") -> str:
    path = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{quote(namespace)}/{api.PLURAL}/{quote(name)}"
    return path + (f"/{subresource}" if subresource else "")


class Kube:
    """Reads and writes MultiContainerEndpoints; every error surfaces as :class:`KubeError`.

    Logs in at once (a :class:`~mce_operator.credentials.LoginError` says what to fix), so that a wrong
    kubeconfig stops ``mce-operator run`` before anything starts."""

    def __init__(self, credentials: Credentials, *, pool_size: int = POOL_SIZE) -> None:
        self.credentials = credentials
        self._session = Session(credentials)
        self._pool_size = pool_size
        self._lock = threading.Lock()
        # The pool for the connection's TLS settings (server, CA, client certificate): a new one when they
        # change, the old one closed. A new token only changes a header.
        self._pool: tuple[tuple[Any, ...], urllib3.PoolManager] | None = None
        self._pool_for(self._session.connection())

    @classmethod
    def from_connection(cls, info: Mapping[str, Any]) -> Kube:
        """With a ``kopf.ConnectionInfo``'s fields (tests and the demo pass these)."""
        return cls(fixed(info))

    @classmethod
    def from_environment(cls) -> Kube:
        """With the in-cluster service account, else the kubeconfig (as ``mce-operator run`` logs in)."""
        return cls(Login())

    # --- the verbs ---------------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as stored now, or None when it is gone."""
        try:
            return self.request("GET", _object_path(namespace, name))
        except KubeError as error:
            if error.gone:
                return None
            raise

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (``None`` values remove fields)."""
        return self.request(
            "PATCH", _object_path(namespace, name, "status"), {"status": dict(status)}, MERGE_PATCH
        )

    def set_finalizer(
        self, body: Mapping[str, Any], finalizer: str, *, present: bool, attempts: int = 3
    ) -> dict[str, Any] | None:
        """Add or remove one finalizer; the object as it is afterwards (None: gone).

        Guarded by resourceVersion, so no one else's finalizer is overwritten: after a conflict (kopf
        adding the same finalizer, a user's edit) the object is read again and the change re-decided."""
        current: Mapping[str, Any] | None = body
        for _ in range(attempts):
            if current is None:
                return None
            meta = current.get("metadata") or {}
            finalizers = [f for f in meta.get("finalizers") or [] if f != finalizer]
            if present:
                finalizers.append(finalizer)
            if sorted(finalizers) == sorted(meta.get("finalizers") or []):
                return copy.deepcopy(dict(current))
            namespace, name = str(meta.get("namespace")), str(meta.get("name"))
            patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}}
            try:
                return self.request("PATCH", _object_path(namespace, name), patch, MERGE_PATCH)
            except KubeError as error:
                if error.gone:
                    return None
                if error.status != 409:
                    raise
            current = self.get(namespace, name)
        raise KubeError(409, f"the object kept changing while its finalizer {finalizer} was set")

    def create(
        self, group: str, version: str, plural: str, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Create a custom object (cluster-scoped without a namespace); the object as stored."""
        where = f"/namespaces/{quote(namespace)}" if namespace else ""
        return self.request("POST", f"/apis/{group}/{version}{where}/{plural}", dict(body))

    # --- HTTP ----------------------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        """One request; the decoded answer. After a 401 the credentials are fetched again, and the
        request made once more with them if they are new."""
        try:
            connection = self._session.connection()
            status, data = self._send(connection, method, path, body, content_type)
            if status == 401:
                fresh = self._session.renew(connection)
                if fresh is not None:
                    status, data = self._send(fresh, method, path, body, content_type)
        except LoginError as error:
            raise KubeError(0, f"cannot log in: {error}") from error
        if status >= 400:
            raise KubeError(status, _message(status, data))
        try:
            answer = json.loads(data)
        except ValueError as error:
            raise KubeError(status, f"the answer is not JSON: {data[:200]!r}") from error
        if not isinstance(answer, dict):
            raise KubeError(status, f"the answer is not an object: {data[:200]!r}")
        return answer

    def _send(
        self, connection: Connection, method: str, path: str, body: Any, content_type: str
    ) -> tuple[int, bytes]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if connection.token:
            headers["Authorization"] = f"Bearer {connection.token}"
        elif connection.username:
            basic = urllib3.util.make_headers(basic_auth=f"{connection.username}:{connection.password or ''}")
            headers.update(basic)
        encoded = None
        if body is not None:
            encoded = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            response = self._pool_for(connection).request(
                method,
                connection.server + path,
                body=encoded,
                headers=headers,
                timeout=TIMEOUT,
                retries=RETRIES,
                preload_content=True,
            )
        except urllib3.exceptions.HTTPError as error:
            # Connection refused, TLS verification, time-outs: no answer. The reason is in the innermost.
            reason = getattr(error, "reason", None) or error
            what = f"{method} {connection.server}{path}"
            raise KubeError(0, f"{what}: {type(reason).__name__}: {reason}") from error
        return response.status, response.data

    def _pool_for(self, connection: Connection) -> urllib3.PoolManager:
        key = (
            connection.server,
            connection.ca_path,
            connection.insecure,
            connection.certificate_path,
            connection.private_key_path,
        )
        current = self._pool
        if current is not None and current[0] == key:
            return current[1]
        with self._lock:
            if self._pool is not None and self._pool[0] == key:
                return self._pool[1]
            pool = urllib3.PoolManager(
                num_pools=2, maxsize=self._pool_size, block=False, ssl_context=_ssl_context(connection)
            )
            previous, self._pool = self._pool, (key, pool)
        if previous is not None:
            previous[1].clear()
        return pool


def _ssl_context(connection: Connection) -> ssl.SSLContext | None:
    if not connection.server.startswith("https://"):
        return None
    try:
        context = ssl.create_default_context(cafile=connection.ca_path)
        if connection.certificate_path:
            context.load_cert_chain(connection.certificate_path, connection.private_key_path)
    except (OSError, ssl.SSLError) as error:
        raise LoginError(f"the connection's CA or client certificate cannot be loaded: {error}") from error
    if connection.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _message(status: int, data: bytes) -> str:
    """The API server's ``Status`` message (e.g. the conflict's), else the answer's start."""
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("message"):
        return str(answer["message"])
    return data[:200].decode(errors="replace") or f"HTTP {status}"
