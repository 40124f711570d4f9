"""A small synchronous client of a Kubernetes API, shared by the in-memory API and the real control plane.

It speaks plain HTTP(S) with ``urllib`` (a bearer token, a CA file), so what it shows is what any client
sees, and tests, the demo and ``make cluster-up`` can use it from any thread. Subclasses say how a name
(``mce``, ``events.events.k8s.io``) maps to a served resource: :class:`KubeClient` asks the server's
discovery, the in-memory API's server knows its resources.
"""

from __future__ import annotations

import builtins
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["APPLY_PATCH", "JSON_PATCH", "MERGE_PATCH", "ApiResource", "KubeApiError", "KubeClient"]

Body = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
# Aggregated discovery (GA in 1.30): every group, version and resource in two requests.
_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


class KubeApiError(Exception):
    """An error answer of the API: ``status`` is the HTTP code, ``body`` the ``Status`` object."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class Resource(Protocol):
    """What the client needs to know of a served resource (``ResourceSpec`` of the in-memory API fits)."""

    @property
    def group(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def plural(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def namespaced(self) -> bool: ...


@dataclass(frozen=True)
class ApiResource:
    """One resource as the server's discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    preferred: bool = True

    def names(self) -> set[str]:
        """The names ``kubectl get NAME`` would accept for this resource."""
        names = {self.plural, self.singular, self.kind.lower(), *self.short_names} - {""}
        return names | {f"{name}.{self.group}" for name in names if self.group}


class KubeClient:
    """Requests to one API server as one identity (a bearer token), verified against a CA file."""

    def __init__(
        self, server: str, *, token: str | None = None, ca_path: str | None = None, timeout: float = 10.0
    ) -> None:
        self._server = server.rstrip("/")
        self.token = token
        self.request_timeout = timeout
        self._ssl = ssl.create_default_context(cafile=ca_path) if ca_path else None
        self._discovered: list[ApiResource] = []

    @property
    def url(self) -> str:
        return self._server

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        """One HTTP request to the API; the decoded JSON answer, or :class:`KubeApiError`."""
        return json.loads(
            self.request_raw(method, path, body, params=params, content_type=content_type, accept=accept)
            or b"null"
        )

    def request_raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> bytes:
        """One HTTP request; the answer's bytes (``/readyz`` says ``ok``), or :class:`KubeApiError`."""
        url = self.url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = {"Content-Type": content_type, "Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.request_timeout, context=self._ssl) as rsp:
                answer: bytes = rsp.read()
                return answer
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                status: Any = json.loads(raw)
            except ValueError:
                status = raw.decode(errors="replace")
            raise KubeApiError(exc.code, status) from None

    # --- resources ------------------------------------------------------------------------------------

    def resource(self, name: str) -> Resource:
        """The served resource for a plural, singular, kind, short name, or ``plural.group``."""
        for attempt in range(2):
            if attempt or not self._discovered:
                self._discovered = self._discover()  # a CRD installed since is found on a miss
            matches = [r for r in self._discovered if name.lower() in r.names() or name == r.kind]
            if matches:
                # As kubectl: the core group first (for "events"), then the preferred version.
                matches.sort(key=lambda r: (r.group != "", not r.preferred))
                return matches[0]
        raise KeyError(f"No such resource is served: {name!r}")

    def _discover(self) -> list[ApiResource]:
        found = []
        for root in ("/api", "/apis"):
            for group in self.request("GET", root, accept=_DISCOVERY)["items"]:
                group_name = group.get("metadata", {}).get("name", "")
                for index, version in enumerate(group.get("versions", [])):
                    for res in version.get("resources", []):
                        found.append(
                            ApiResource(
                                group=group_name,
                                version=version["version"],
                                plural=res["resource"],
                                kind=res.get("responseKind", {}).get("kind", ""),
                                namespaced=res.get("scope") == "Namespaced",
                                singular=res.get("singularResource", ""),
                                short_names=tuple(res.get("shortNames") or ()),
                                preferred=index == 0,  # versions are listed in preference order
                            )
                        )
        return found

    def path(self, resource: str | Resource, namespace: str | None = None, name: str | None = None) -> str:
        spec = self.resource(resource) if isinstance(resource, str) else resource
        base = f"/apis/{spec.group}/{spec.version}" if spec.group else f"/api/{spec.version}"
        if spec.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        return base + f"/{spec.plural}" + (f"/{name}" if name else "")

    def _resource_of(self, obj: Mapping[str, Any]) -> Resource:
        group, _, version = str(obj["apiVersion"]).rpartition("/")
        spec = self.resource(f"{obj['kind'].lower()}.{group}" if group else obj["kind"].lower())
        if (spec.group, spec.version) != (group, version):
            # The kind is served in several versions: address the one the object is written in.
            return ApiResource(group, version, spec.plural, spec.kind, spec.namespaced)
        return spec

    # --- verbs ------------------------------------------------------------------------------------------

    def create(
        self, obj: Mapping[str, Any], namespace: str | None = None, *, params: Mapping[str, str] | None = None
    ) -> Body:
        """Create an object (its resource is found by apiVersion and kind); returns it as stored."""
        namespace = namespace or obj.get("metadata", {}).get("namespace") or "default"
        result: Body = self.request(
            "POST", self.path(self._resource_of(obj), namespace), dict(obj), params=params
        )
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
    ) -> builtins.list[Body]:
        """The objects of a resource, in one namespace or (namespace=None) in all."""
        params = {"labelSelector": label_selector} if label_selector else None
        answer = self.request("GET", self.path(resource, namespace), params=params)
        items: builtins.list[Body] = answer["items"]
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
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Body:
        """A merge patch (as ``kubectl apply``/``kubectl patch --type=merge`` sends), or a JSON patch.

        A merge patch to ``spec`` bumps ``metadata.generation``; to patch ``status`` of a resource with the
        status subresource, pass ``subresource="status"``.
        """
        suffix = f"/{subresource}" if subresource else ""
        kind = content_type or (JSON_PATCH if json_patch else MERGE_PATCH)
        result: Body = self.request(
            "PATCH", self.path(resource, namespace, name) + suffix, patch, content_type=kind, params=params
        )
        return result

    def replace(self, obj: Mapping[str, Any], *, subresource: str | None = None) -> Body:
        """PUT the whole object (its ``metadata.resourceVersion`` is the precondition)."""
        meta = obj["metadata"]
        suffix = f"/{subresource}" if subresource else ""
        path = self.path(self._resource_of(obj), meta.get("namespace"), meta["name"]) + suffix
        result: Body = self.request("PUT", path, dict(obj))
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
