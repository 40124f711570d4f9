"""An in-memory Kubernetes API server for the end-to-end tests and `mce-operator demo`.

There is no real kube-apiserver on the machines this project is developed and tested on, so the real kopf
operator runs against :class:`KubeEmulator`: a subclass of kmock's ``KubernetesEmulator`` (kmock 0.8, pinned:
this module reaches into its internals) that keeps kmock's discovery endpoints, its error format, its object
store (``emulator.objects[...]`` with the history of every object) and its reaction DSL, and replaces the
object semantics with those of the real apiserver that an operator depends on:

- create: ``uid``, ``resourceVersion``, ``creationTimestamp`` and (custom resources) ``generation: 1`` are
  set; ``generateName`` is honoured; ``metadata.namespace`` is filled from the URL (400 on a mismatch);
  409 if the name is taken (also while the old object is being deleted); ``status`` is dropped when the
  CRD has the status subresource. The namespace must exist, unless ``auto_create_namespaces`` (the
  default) creates it.
- every write that changes the object bumps the cluster-wide ``resourceVersion``; a write that changes
  nothing is a no-op (same ``resourceVersion``, no watch event), as in the real apiserver.
- ``metadata.generation`` of custom resources is bumped when anything outside ``metadata`` changes, and
  outside ``metadata`` and ``status`` when the CRD has the status subresource; i.e. on spec changes.
- PATCH with ``application/merge-patch+json`` (RFC 7386), ``application/json-patch+json`` (RFC 6902: 422 on
  a failed ``test``) and, for built-in resources only, ``application/strategic-merge-patch+json`` (treated
  as a merge patch). PUT replaces. A ``metadata.resourceVersion`` in the body is a precondition (409).
- the status subresource: a write to ``.../status`` changes only ``status``; a write to the main resource
  leaves ``status`` alone when the resource has the subresource; ``.../status`` is 404 when it has none.
- system fields (name, namespace, uid, creationTimestamp, generation, deletionTimestamp) cannot be changed
  by writes: changes to them are silently dropped.
- delete: an object with finalizers gets ``deletionTimestamp`` and stays until a write removes the last
  finalizer, which deletes it (a single DELETED watch event); new finalizers cannot be added to an object
  being deleted (422). DeleteOptions preconditions (uid, resourceVersion) are honoured.
- list: ``kind: <Kind>List``, ``apiVersion``, ``metadata.resourceVersion``; items sorted by namespace/name.
- watch: the subscription is taken in the same step as the snapshot (no events lost in between);
  ``?resourceVersion=N`` replays the events after N from a bounded history (410 Gone when N is older than
  the history); ``sendInitialEvents=true`` ends the initial ADDED events with the initial-events-end
  BOOKMARK; ``timeoutSeconds`` closes the stream after that many seconds, as the apiserver does.
- ``labelSelector`` (=, ==, !=, in, notin, exists, !exists) and ``fieldSelector`` (metadata.name and
  metadata.namespace only; 400 for other fields) on list and watch.
- ``/api/v1/namespaces`` and ``/api/v1/namespaces/NAME`` are the namespaces resource (kmock 0.8 takes them
  for a namespace scope and fails with 500; its ``parse_path`` is wrapped process-wide to fix it).
- any CustomResourceDefinition (given as a dict, or created later through the API) is served in every
  served version, all versions sharing one storage (conversion strategy None: only apiVersion changes).

Deviations from a real apiserver, on purpose or for lack of need:

- no OpenAPI schema: no validation, no pruning, no defaulting, no CEL rules, no ``/openapi`` endpoints;
- no server-side apply (415), no strategic merge for custom resources (415, as the real one); a dry run
  (``?dryRun=All`` on any write) is refused with 400 and writes nothing;
- PUT does not require ``metadata.resourceVersion`` (the real one does for custom resources);
- no authentication or authorization: every request is allowed;
- no garbage collection of owned objects, no cascading deletion of namespaces (a namespace is deleted at
  once and its objects stay), no deletecollection, no scale subresource, no managedFields;
- a watch with a label selector filters events by the object's current labels (the real one sends
  ADDED/DELETED when an object enters or leaves the selection) and sends no periodic BOOKMARKs;
- core/v1 and events.k8s.io/v1 Events are stored separately (the real one converts between them);
- deleting a CustomResourceDefinition does not stop serving its resources;
- user reactions of kmock's DSL (``emulator['patch ...'] << 409``) see a write after it was applied,
  as in plain kmock;
- kmock's request log (``list(emulator)``) keeps only the last ``request_history`` requests or so.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import re
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import parsing as kmock_parsing
from kmock._internal.rendering import Response

__all__ = [
    "ApiError",
    "KubeEmulator",
    "ResourceSpec",
    "kopf_peering_crds",
    "specs_from_crd",
]

Body = dict[str, Any]

_SYSTEM_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_VERBS = {"create", "delete", "get", "list", "patch", "update", "watch"}
# The alphabet and length the apiserver uses for generateName suffixes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class ApiError(kmock.KubernetesError):
    """A Kubernetes API error answered as a ``Status`` object (no traceback in its details)."""


def _error(status: int, reason: str, message: str, **details: Any) -> ApiError:
    return ApiError(status=status, reason=reason, message=message, details=details or {"causes": []})


def _not_found(spec: ResourceSpec | None, name: str | None) -> ApiError:
    if spec is None:
        return _error(404, "NotFound", "the server could not find the requested resource")
    what = f"{spec.plural}.{spec.group}" if spec.group else spec.plural
    return _error(404, "NotFound", f'{what} "{name}" not found', name=name, kind=spec.plural)


@dataclass(frozen=True)
class ResourceSpec:
    """One served resource (a group/version/plural) and what the emulator needs to know about it."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    status_subresource: bool = False
    custom: bool = False  # served from a CRD: generation is tracked
    storage_version: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def storage(self) -> tuple[str, str]:
        """What identifies the objects' storage, shared by all versions of a resource."""
        return (self.group, self.plural)

    @property
    def storage_api_version(self) -> str:
        version = self.storage_version or self.version
        return f"{self.group}/{version}" if self.group else version

    @property
    def storage_resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.storage_version or self.version, self.plural)

    def names(self) -> set[str]:
        """The names ``kubectl get NAME`` would accept for this resource."""
        names = {self.plural, self.singular, self.kind.lower(), *self.short_names}
        return names | {f"{name}.{self.group}" for name in names if self.group}


def specs_from_crd(crd: Mapping[str, Any]) -> list[ResourceSpec]:
    """The resources a CustomResourceDefinition serves: one per served version."""
    spec = crd["spec"]
    names = spec["names"]
    versions = [v for v in spec["versions"] if v.get("served", True)]
    storage = next((v["name"] for v in spec["versions"] if v.get("storage")), spec["versions"][0]["name"])
    return [
        ResourceSpec(
            group=spec["group"],
            version=v["name"],
            plural=names["plural"],
            kind=names["kind"],
            singular=names.get("singular") or names["kind"].lower(),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            status_subresource="status" in (v.get("subresources") or {}),
            custom=True,
            storage_version=storage,
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
        )
        for v in versions
    ]


def kopf_peering_crds() -> list[Body]:
    """The CRDs of kopf's peering resources, for operators run without ``standalone=True``."""
    crds = []
    for kind, scope in [("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")]:
        plural = f"{kind.lower()}s"
        crds.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.kopf.dev"},
                "spec": {
                    "group": "kopf.dev",
                    "scope": scope,
                    "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                    # As kopf documents them: a real apiserver requires a schema; kopf keeps its peers
                    # in the status, as free-form fields.
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "properties": {
                                        "status": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        }
                                    },
                                }
                            },
                        }
                    ],
                },
            }
        )
    return crds


_BUILTINS = [
    ResourceSpec("", "v1", "namespaces", "Namespace", "namespace", False, True, short_names=("ns",)),
    ResourceSpec("", "v1", "events", "Event", "event", True, short_names=("ev",)),
    ResourceSpec("events.k8s.io", "v1", "events", "Event", "event", True, short_names=("ev",)),
    ResourceSpec(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        "customresourcedefinition",
        False,
        True,
        short_names=("crd", "crds"),
    ),
]
_NAMESPACES = _BUILTINS[0]
_CRDS = _BUILTINS[3]


def _parse_path(path: str) -> Any:
    """kmock's parse_path, but /api/v1/namespaces[/NAME[/status|/finalize]] address the namespaces."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (
        len(parts) in (3, 4) or (len(parts) == 5 and parts[4] in ("status", "finalize"))
    ):
        return kmock_parsing.ParsedPath(
            group="",
            version="v1",
            plural="namespaces",
            name=parts[3] if len(parts) > 3 else None,
            subresource=parts[4] if len(parts) > 4 else None,
        )
    return _kmock_parse_path(path)


_kmock_parse_path = kmock_parsing.parse_path


def _install_path_fix() -> None:
    # kmock's Request parsing calls `parsing.parse_path` through the module, so wrapping it there is enough.
    if kmock_parsing.parse_path is not _parse_path:
        kmock_parsing.parse_path = _parse_path


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nkey>[\w./-]+)"
    r"|(?P<skey>[\w./-]+)\s+(?P<setop>in|notin)\s+\((?P<values>[^)]*)\)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*))?)\s*$"
)


Requirement = tuple[str, str, frozenset[str]]  # key, operator, values


def _parse_labels(selector: str) -> list[Requirement]:
    """The requirements of a label selector (400 if it cannot be parsed)."""
    requirements: list[Requirement] = []
    for text in re.split(r",(?![^()]*\))", selector):
        if not text.strip():
            continue
        m = _REQUIREMENT.match(text)
        if m is None:
            raise _error(400, "BadRequest", f"unable to parse requirement: {text!r}")
        if m["nkey"]:
            requirements.append((m["nkey"], "!", frozenset()))
        elif m["skey"]:
            values = frozenset(v.strip() for v in m["values"].split(","))
            requirements.append((m["skey"], m["setop"], values))
        else:
            requirements.append((m["key"], m["op"] or "exists", frozenset({m["value"] or ""})))
    return requirements


def _parse_fields(selector: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    for text in selector.split(","):
        if not text.strip():
            continue
        m = re.match(r"^\s*metadata\.(name|namespace)\s*(==|!=|=)\s*(\S*)\s*$", text)
        if m is None:
            raise _error(400, "BadRequest", f"field selector not supported by the emulator: {text!r}")
        requirements.append((m[1], m[2], frozenset({m[3]})))
    return requirements


def _matches(requirements: list[Requirement], values: Mapping[str, Any]) -> bool:
    for key, op, expected in requirements:
        value = values.get(key)
        ok = {
            "!": key not in values,
            "exists": key in values,
            "in": value in expected,
            "notin": value not in expected,
            "!=": value not in expected,
        }.get(op, value in expected)  # = and ==
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class _Event:
    rv: int
    storage: tuple[str, str]
    type: str
    body: Body


@dataclass
class Fault:
    """An error answer instead of serving a request: ``times`` requests that match, then served again.

    ``method`` is the HTTP verb (``WATCH`` for a watch-stream); ``plural``, ``name`` and ``subresource``
    (``""`` for the object itself, ``None`` for any) narrow it down; ``match`` sees the parsed body."""

    method: str
    status: int
    plural: str | None = None
    name: str | None = None
    subresource: str | None = None
    times: int = 1
    match: Callable[[Any], bool] | None = None
    hits: int = 0

    def applies(self, method: str, plural: str | None, name: str | None, sub: str | None, data: Any) -> bool:
        return (
            self.hits < self.times
            and self.method == method
            and (self.plural is None or self.plural == plural)
            and (self.name is None or self.name == name)
            and (self.subresource is None or self.subresource == (sub or ""))
            and (self.match is None or self.match(data))
        )


_FAULT_REASONS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


class KubeEmulator(kmock.KubernetesEmulator):
    """An in-memory Kubernetes API with the semantics listed in this module's docstring.

    Serve it with any aiohttp server (it is an aiohttp low-level handler), e.g. through :class:`KubeServer`.
    It must be entered (``async with emulator:``) in the event loop that serves it.
    """

    def __init__(
        self,
        crds: Iterable[Mapping[str, Any]] = (),
        *,
        namespaces: Iterable[str] = ("default",),
        auto_create_namespaces: bool = True,
        kopf_peering: bool = False,
        event_history: int = 10_000,
        request_history: int = 10_000,
    ) -> None:
        super().__init__()
        self.request_history = request_history
        _install_path_fix()
        self.auto_create_namespaces = auto_create_namespaces
        self._specs: dict[tuple[str, str, str], ResourceSpec] = {}
        self._specs_lock = threading.Lock()  # the helpers of KubeServer read the specs from other threads
        self._rv = 0
        self._log: collections.deque[_Event] = collections.deque(maxlen=event_history)
        self._log_floor = 0  # the resourceVersion of the newest event dropped from the history
        self._watchers: set[asyncio.Queue[_Event | None]] = set()
        self._outcomes: dict[Any, Any] = {}  # request -> the response of the write it made
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()  # injected from the tests' threads
        # Requests served, by (verb, plural, subresource): what a test or benchmark counts when the
        # request log itself is kept short. The verb is the HTTP method, or WATCH for a watch-stream.
        self.request_counts: collections.Counter[tuple[str, str | None, str | None]] = collections.Counter()
        self.fallback[kmock.method.PUT] << self._serve_outcome
        for spec in _BUILTINS:
            self.add_resource(spec)
        for crd in [*crds, *(kopf_peering_crds() if kopf_peering else [])]:
            self._create_crd(crd)
        for namespace in namespaces:
            self._ensure_namespace(namespace, create=True)

    # --- resources --------------------------------------------------------------------------------------

    def add_resource(self, spec: ResourceSpec) -> None:
        """Serve one more resource (also made visible in the discovery endpoints)."""
        with self._specs_lock:
            self._specs[spec.group, spec.version, spec.plural] = spec
        self.resources[spec.resource] = kmock.ResourceInfo(
            namespaced=spec.namespaced,
            kind=spec.kind,
            singular=spec.singular,
            verbs=_VERBS,
            shortnames=set(spec.short_names),
            categories=set(spec.categories),
            subresources={"status"} if spec.status_subresource else set(),
        )

    def specs(self) -> list[ResourceSpec]:
        """All served resources (thread-safe)."""
        with self._specs_lock:
            return list(self._specs.values())

    def _create_crd(self, crd: Mapping[str, Any]) -> None:
        body = copy.deepcopy(dict(crd))
        body.setdefault("metadata", {}).setdefault("name", "")
        self._write_new(_CRDS, body, namespace=None)

    def _register_crd(self, crd: Body) -> None:
        for spec in specs_from_crd(crd):
            self.add_resource(spec)
        names = crd["spec"]["names"]
        crd["status"] = {
            "acceptedNames": {"plural": names["plural"], "kind": names["kind"]},
            "storedVersions": [specs_from_crd(crd)[0].storage_version],
            "conditions": [
                {"type": cond, "status": "True", "lastTransitionTime": _now(), "reason": cond}
                for cond in ("NamesAccepted", "Established")
            ],
        }

    # --- the store ----------------------------------------------------------------------------------------

    def _key(self, spec: ResourceSpec, namespace: str | None, name: str) -> Any:
        return (spec.storage_resource, namespace if spec.namespaced else None, name)

    def _live(self, key: Any) -> Body | None:
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else copy.deepcopy(obj.raw)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, spec: ResourceSpec, type_: str, body: Body) -> None:
        if self._log.maxlen is not None and len(self._log) == self._log.maxlen:
            self._log_floor = self._log[0].rv
        event = _Event(int(body["metadata"]["resourceVersion"]), spec.storage, type_, copy.deepcopy(body))
        self._log.append(event)
        for queue in self._watchers:
            queue.put_nowait(event)

    def _store(self, spec: ResourceSpec, body: Body, type_: str) -> None:
        meta = body["metadata"]
        key = self._key(spec, meta.get("namespace"), meta["name"])
        if key not in self._objects:
            self._objects[key] = body
        else:
            self._objects[key].history.append(body)
        self._emit(spec, type_, body)

    def _remove(self, spec: ResourceSpec, body: Body) -> None:
        meta = body["metadata"]
        self._objects[self._key(spec, meta.get("namespace"), meta["name"])].delete()
        self._emit(spec, "DELETED", body)

    def _ensure_namespace(self, namespace: str, *, create: bool = False) -> None:
        if self._live(self._key(_NAMESPACES, None, namespace)) is None:
            if not (create or self.auto_create_namespaces):
                raise _not_found(_NAMESPACES, namespace)
            self._write_new(_NAMESPACES, {"metadata": {"name": namespace}}, namespace=None)

    # --- writes (synchronous: nothing else runs in the event loop in between) ------------------------

    def _write_new(self, spec: ResourceSpec, data: Any, namespace: str | None) -> Body:
        if not isinstance(data, dict) or not isinstance(data.get("metadata", {}), dict):
            raise _error(400, "BadRequest", "the body of the request must be an object with metadata")
        body = copy.deepcopy(data)
        meta = body.setdefault("metadata", {})
        if spec.namespaced:
            if namespace is None:
                raise _error(405, "MethodNotAllowed", "namespaced resources are created in a namespace URL")
            if meta.get("namespace") not in (None, "", namespace):
                raise _error(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
        if not meta.get("name"):
            raise _error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        if spec == _CRDS and meta["name"] != f"{body['spec']['names']['plural']}.{body['spec']['group']}":
            raise _error(422, "Invalid", "metadata.name must be spec.names.plural+'.'+spec.group")
        if self._live(self._key(spec, namespace, meta["name"])) is not None:
            raise _error(
                409,
                "AlreadyExists",
                f'{spec.plural}.{spec.group} "{meta["name"]}" already exists',
                name=meta["name"],
                kind=spec.plural,
            )
        if spec.namespaced and namespace is not None:
            self._ensure_namespace(namespace)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=self._next_rv())
        if spec.custom:
            meta["generation"] = 1
        if spec.status_subresource:
            body.pop("status", None)
        if spec == _NAMESPACES:
            body["spec"] = {"finalizers": ["kubernetes"]}
            body["status"] = {"phase": "Active"}
        if spec == _CRDS:
            self._register_crd(body)
        body = {**body, "apiVersion": spec.storage_api_version, "kind": spec.kind}
        body = {"apiVersion": body.pop("apiVersion"), "kind": body.pop("kind"), **body}
        self._store(spec, body, "ADDED")
        return body

    def _write_update(self, spec: ResourceSpec, current: Body, data: Any, subresource: str | None) -> Body:
        if not isinstance(data, dict) or not isinstance(data.get("metadata", {}), dict):
            raise _error(422, "Invalid", "the patched object must be an object with metadata")
        new: Body = copy.deepcopy(data)
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(current)
            new.pop("status", None)
            if status is not None:
                new["status"] = status
        elif spec.status_subresource:
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        meta, old_meta = new.setdefault("metadata", {}), current["metadata"]
        if str(meta.get("resourceVersion", old_meta["resourceVersion"])) != old_meta["resourceVersion"]:
            raise _error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {spec.plural}.{spec.group} "{old_meta["name"]}": '
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        for field in _SYSTEM_METADATA:
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        if old_meta.get("deletionTimestamp") and set(meta.get("finalizers") or ()) - set(
            old_meta.get("finalizers") or ()
        ):
            raise _error(
                422,
                "Invalid",
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object "
                "is being deleted",
            )
        if new == current:
            return current  # the apiserver does not write (nor bump anything) when nothing changes
        if spec.custom and _spec_part(new, spec) != _spec_part(current, spec):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = self._next_rv()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(spec, new)
        else:
            self._store(spec, new, "MODIFIED")
        return new

    def _write_delete(self, spec: ResourceSpec, current: Body, options: Any) -> Body:
        meta = current["metadata"]
        preconditions = (options or {}).get("preconditions") or {} if isinstance(options, dict) else {}
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) not in (None, meta.get(field)):
                raise _error(409, "Conflict", f"Precondition failed: {field} in precondition does not match")
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta.update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
                meta["resourceVersion"] = self._next_rv()
                self._store(spec, current, "MODIFIED")
            return current
        meta["resourceVersion"] = self._next_rv()
        self._remove(spec, current)
        return current

    # --- request handling ----------------------------------------------------------------------------

    def _spec_of(self, request: Any) -> ResourceSpec | None:
        res = request.resource
        with self._specs_lock:
            return self._specs.get((res.group, res.version, res.plural))

    # --- faults ---------------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        """Answer matching requests with ``fault.status`` (``fault.hits`` counts those answered)."""
        with self._faults_lock:
            self._faults.append(fault)
        return fault

    def _fault(self, request: Any) -> ApiError | None:
        method = request.method.value.upper()
        if method == "GET" and request.action == kmock.action.WATCH:
            method = "WATCH"
        res = request.resource
        with self._faults_lock:
            for fault in self._faults:
                if fault.applies(method, res.plural, request.name, request.subresource, request.data):
                    fault.hits += 1
                    reason = _FAULT_REASONS.get(fault.status, "InjectedFault")
                    return _error(fault.status, reason, f"injected fault: {method} answered {fault.status}")
        return None

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        self._forget_old_requests()
        res = request.resource
        method = request.method.value.upper()
        if method == "GET" and request.action == kmock.action.WATCH:
            method = "WATCH"
        self.request_counts[method, res.plural if res is not None else None, request.subresource] += 1
        if res is None or res.plural is None:  # discovery and non-Kubernetes URLs
            return await super()._handle(request)
        injected = self._fault(request)
        if injected is not None:
            return await self._render_error(injected)
        try:
            spec = self._spec_of(request)
            if spec is None or (request.namespace is not None and not spec.namespaced):
                raise _not_found(None, None)
            outcome = self._write(spec, request)
        except ApiError as exc:
            return await self._render_error(exc)
        if outcome is not None:
            self._outcomes[request] = outcome
        try:
            # Skip kmock's own state keeping; user reactions still come first, then our fallbacks.
            return await kmock.RawHandler._handle(self, request)
        finally:
            self._outcomes.pop(request, None)

    def _forget_old_requests(self) -> None:
        # kmock keeps every request (and error) for assertions: bound that for long-running demos.
        keep = max(self.request_history, 1)
        if len(self._requests) > 2 * keep:
            del self._requests[:-keep]
            for payload in self._payloads:
                del payload._requests[:-keep]
            for errors in self._errors:
                del errors[:-keep]

    def _write(self, spec: ResourceSpec, request: Any) -> Any:
        method, name, sub = request.method.value.upper(), request.name, request.subresource
        if sub is not None and sub != "status":
            raise _not_found(None, None)
        if sub == "status" and not spec.status_subresource:
            raise _not_found(None, None)
        if method != "GET" and request.params.get("dryRun"):
            # The real apiserver validates, defaults and admits a dry run without storing it. Here that
            # would be a real write (kubectl apply --dry-run=server once created an object and the
            # operator a SageMaker endpoint from it): refuse it, so nothing believes it was dry.
            raise _error(
                400,
                "BadRequest",
                "dryRun is not supported by the in-memory Kubernetes API: nothing was written; "
                "dry runs are tested against a real kube-apiserver (tests/cluster)",
            )
        if method == "GET":  # reads are served by the fallbacks; bad queries are answered here
            self._selected(spec, request)
            watching = request.action == kmock.action.WATCH
            if (
                name is not None
                and not watching
                and self._live(self._key(spec, request.namespace, name)) is None
            ):
                raise _not_found(spec, name)
            if not (request.params.get("resourceVersion") or "0").isdigit():
                raise _error(400, "BadRequest", "resourceVersion must be a number in this emulator")
            return None
        if method == "POST" and name is None:
            return Response(
                status=201,
                payload=self._present(spec, self._write_new(spec, request.data, request.namespace)),
            )
        if name is None or method not in ("PATCH", "PUT", "DELETE"):
            return None  # reads are served by the fallbacks
        current = self._live(self._key(spec, request.namespace, name))
        if current is None:
            raise _not_found(spec, name)
        if method == "DELETE":
            return self._present(spec, self._write_delete(spec, current, request.data))
        if method == "PUT":
            data = request.data
            if not isinstance(data, dict) or data.get("metadata", {}).get("name") not in (None, name):
                raise _error(400, "BadRequest", "the name of the object does not match the name in the URL")
            return self._present(spec, self._write_update(spec, current, data, sub))
        return self._present(
            spec, self._write_update(spec, current, self._patched(spec, current, request), sub)
        )

    def _patched(self, spec: ResourceSpec, current: Body, request: Any) -> Any:
        headers = {key.lower(): value for key, value in request.headers.items()}
        content_type = headers.get("content-type", "").split(";")[0].strip()
        data = request.data
        if content_type == "application/json-patch+json":
            if not isinstance(data, list):
                raise _error(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                return jsonpatch.apply_patch(current, data)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise _error(422, "Invalid", f"the server rejected our request: {exc}") from None
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                raise _error(422, "Invalid", f"the JSON patch cannot be applied: {exc}") from None
        if content_type == "application/merge-patch+json" or (
            content_type == "application/strategic-merge-patch+json" and not spec.custom
        ):
            if not isinstance(data, dict):
                raise _error(400, "BadRequest", "a merge patch must be an object")
            return merge_patch(current, data)
        raise _error(415, "UnsupportedMediaType", f"the patch type {content_type!r} is not supported")

    def _present(self, spec: ResourceSpec, body: Body) -> Body:
        body = copy.deepcopy(body)
        body["apiVersion"] = spec.api_version
        return body

    async def _serve_outcome(self, request: Any) -> Any:
        if request not in self._outcomes:
            raise _not_found(None, None)
        return self._outcomes[request]

    _serve_create = _serve_update = _serve_delete = _serve_outcome

    async def _serve_fetch(self, request: Any) -> Any:
        spec = self._spec_of(request)
        assert spec is not None  # checked in _handle()
        body = self._live(self._key(spec, request.namespace, request.name))
        if body is None:
            raise _not_found(spec, request.name)
        return self._present(spec, body)

    def _selected(self, spec: ResourceSpec, request: Any) -> Callable[[Body], bool]:
        labels = _parse_labels(request.params.get("labelSelector", ""))
        fields = _parse_fields(request.params.get("fieldSelector", ""))

        def check(body: Body) -> bool:
            meta = body.get("metadata", {})
            return bool(
                (request.namespace is None or meta.get("namespace") == request.namespace)
                and (request.name is None or meta.get("name") == request.name)
                and _matches(labels, meta.get("labels") or {})
                and _matches(fields, meta)
            )

        return check

    def _snapshot(self, spec: ResourceSpec, check: Callable[[Body], bool]) -> list[Body]:
        bodies = []
        for (res, _, _), obj in self._objects.items():
            if (res.group, res.plural) == spec.storage and not obj.deleted and check(obj.raw):
                bodies.append(self._present(spec, obj.raw))
        return sorted(bodies, key=lambda b: (b["metadata"].get("namespace") or "", b["metadata"]["name"]))

    async def _serve_list(self, request: Any) -> Any:
        spec = self._spec_of(request)
        assert spec is not None  # checked in _handle()
        items = self._snapshot(spec, self._selected(spec, request))
        return {
            "apiVersion": spec.api_version,
            "kind": f"{spec.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        spec = self._spec_of(request)
        assert spec is not None  # checked in _handle()
        params = request.params
        since = params.get("resourceVersion") or "0"
        timeout = float(params.get("timeoutSeconds") or 0) or None
        check = self._selected(spec, request)
        yield b""  # send the headers now, even if there is nothing to stream yet

        # Subscribe and take the starting point in one synchronous step: no event can slip in between.
        initial: list[Body] = []
        if since == "0":
            initial = [{"type": "ADDED", "object": body} for body in self._snapshot(spec, check)]
            if params.get("sendInitialEvents") == "true":
                meta = {
                    "resourceVersion": str(self._rv),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                }
                bookmark = {"apiVersion": spec.api_version, "kind": spec.kind, "metadata": meta}
                initial.append({"type": "BOOKMARK", "object": bookmark})
        elif int(since) < self._log_floor:
            message = f"too old resource version: {since} ({self._log_floor + 1})"
            yield {"type": "ERROR", "object": _status(_error(410, "Expired", message))}
            return
        else:
            initial = [
                {"type": event.type, "object": self._present(spec, event.body)}
                for event in self._log
                if event.rv > int(since) and event.storage == spec.storage and check(event.body)
            ]
        queue: asyncio.Queue[_Event | None] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            for item in initial:
                yield item
            async with asyncio.timeout(timeout):
                while (event := await queue.get()) is not None:
                    if event.storage == spec.storage and check(event.body):
                        yield {"type": event.type, "object": self._present(spec, event.body)}
        except TimeoutError:
            pass  # the client asked for it: it reconnects with the last resourceVersion it saw
        finally:
            self._watchers.discard(queue)

    def close_watches(self) -> None:
        """End all open watch-streams (before a shutdown, so that it does not wait for them)."""
        for queue in self._watchers:
            queue.put_nowait(None)


def _spec_part(body: Body, spec: ResourceSpec) -> Body:
    """What `metadata.generation` tracks: everything but metadata (and status, if a subresource)."""
    ignored = {"metadata", "status"} if spec.status_subresource else {"metadata"}
    return {key: value for key, value in body.items() if key not in ignored}


def _status(exc: ApiError) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": exc.status,
        "reason": exc.reason,
        "message": exc.message,
        "details": exc.details,
    }
