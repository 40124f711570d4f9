"""The kopf peering object, created by the operator itself when it starts with ``--peering NAME``.

kopf only patches its peering object; when the object is missing, the replicas see no peers and every one
of them acts. Shipping the object with its CRD in one ``kubectl apply`` fails on a fresh cluster (the CRD is
not established when the object arrives: "ensure CRDs are installed first"). So the manifests ship only the
CRD, and the operator creates the object before kopf starts: cluster-wide a ``ClusterKopfPeering``, with
``--namespace`` a ``KopfPeering`` in each namespace named literally (a glob pattern names no namespace in
particular: those objects are the installer's). While the CRD is not served yet (it arrived in the same
apply), it waits for it.

It writes with the operator's Kubernetes adapter, logged in as kopf is (in-cluster service account, else
kubeconfig: :mod:`mce_operator.credentials`).
"""

from __future__ import annotations

import fnmatch
import getpass
import logging
import os
import random
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mce_operator.kube import Kube, KubeError

GROUP = "kopf.dev"
VERSION = "v1"
CLUSTER_PLURAL = "clusterkopfpeerings"
NAMESPACED_PLURAL = "kopfpeerings"
# kopf's namespace patterns: globs, and "!" to exclude.
PATTERN_CHARACTERS = frozenset("*?[]!")

logger = logging.getLogger(__name__)


class PeeringError(Exception):
    """The peering object could not be made sure of; the message says what to fix."""


def literal_namespaces(patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """(namespaces named literally, patterns that name none in particular)."""
    literal = [p for p in patterns if not PATTERN_CHARACTERS & set(p)]
    return literal, [p for p in patterns if PATTERN_CHARACTERS & set(p)]


def ensure(
    name: str,
    namespaces: Sequence[str] = (),
    *,
    kube: Kube,
    timeout: float = 120.0,
    interval: float = 2.0,
) -> list[str]:
    """Create the peering object(s) the operator will use, unless they exist; return those created
    (``cluster`` or ``namespace/name``). No namespaces: cluster-wide, as kopf then peers cluster-wide."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "metadata": {"name": name}}
    created: list[str] = []
    if not namespaces:
        kind = "ClusterKopfPeering"
        if _create(
            lambda: kube.create(GROUP, VERSION, CLUSTER_PLURAL, {**body, "kind": kind}),
            f"{kind} {name}",
            CLUSTER_PLURAL,
            timeout,
            interval,
        ):
            created.append(name)
        return created
    literal, patterns = literal_namespaces(namespaces)
    for pattern in patterns:
        logger.warning(
            f"--namespace {pattern!r} is a pattern: create the KopfPeering {name!r} in each namespace it "
            "matches yourself (kubectl apply), or peering there is off"
        )
    for namespace in literal:
        kind = "KopfPeering"

        def create(namespace: str = namespace, kind: str = kind) -> Any:
            return kube.create(GROUP, VERSION, NAMESPACED_PLURAL, {**body, "kind": kind}, namespace)

        if _create(create, f"{kind} {namespace}/{name}", NAMESPACED_PLURAL, timeout, interval):
            created.append(f"{namespace}/{name}")
    return created


def _create(call: Any, what: str, plural: str, timeout: float, interval: float) -> bool:
    """True: created; False: it existed. Waits while the CRD is not served yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
        except KubeError as error:  # an answer of the API server, or none (status 0)
            status = error.status
            if status == 409:
                logger.info(f"{what} exists")
                return False
            if status == 403:
                raise PeeringError(
                    f"may not create {what}: the operator's role needs `create` on {plural}.{GROUP} "
                    "(deploy/overlays/ha grants it)"
                ) from error
            if time.monotonic() >= deadline:
                reason = f"the CRD {plural}.{GROUP} is not served" if status == 404 else str(error)
                raise PeeringError(f"could not create {what} in {timeout:g} s: {reason}") from error
            logger.info(f"waiting to create {what} ({error}: CRD not served yet?)")
            time.sleep(interval)
        else:
            logger.info(f"created {what}")
            return True


# --- standing by ---------------------------------------------------------------------------------------


def own_identity() -> str:
    """This replica's name in the peering object, as kopf makes it (the pod's name when given)."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    started = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    suffix = "".join(random.choices("abcdefhijklmnopqrstuvwxyz0123456789", k=3))  # not a secret
    return f"{getpass.getuser()}@{socket.gethostname()}/{started}/{suffix}"


@dataclass(frozen=True)
class Standby:
    """Whether kopf's peering pauses this replica, decided from the peering object(s) as kopf decides it.

    kopf stops its watches while another live replica has a higher priority, or the same one (it then
    pauses all of them), and resumes when none is left. The operator's own schedule is not kopf's, so it
    reads the same objects and applies the same rule (kopf's ``process_peering_event``), knowing its own
    identity because it gives kopf that identity. A replica may act for up to one poll after a peer
    appears: peering is not a lock (kopf itself pauses only when the event reaches it), and every
    SageMaker call is safe to repeat."""

    kube: Kube
    name: str
    identity: str
    priority: int
    namespaces: Sequence[str] = ()

    def paused(self) -> bool:
        """One read of the peering objects; raises KubeError when they cannot be read.

        A peering object that is missing (or its CRD) pauses too: kopf's peering is mandatory here, and
        kopf starts paused for each object until it has seen it (and pauses while the CRD is missing)."""
        statuses = self._statuses()
        return any(status is None or self.conflicts(status) for status in statuses)

    def conflicts(self, status: Mapping[str, Any], now: datetime | None = None) -> list[str]:
        """The live peers (other than this replica) that make it pause."""
        now = now or datetime.now(UTC)
        found = []
        for identity, info in status.items():
            if identity == self.identity or not isinstance(info, Mapping):
                continue
            try:
                priority = int(info.get("priority", 0))
                lifetime = timedelta(seconds=int(info.get("lifetime", 60)))
                seen = info.get("lastseen")
                lastseen = datetime.fromisoformat(str(seen)) if seen else now
            except (TypeError, ValueError):
                continue
            if lastseen.tzinfo is None:
                lastseen = lastseen.replace(tzinfo=UTC)
            if lastseen + lifetime > now and priority >= self.priority:
                found.append(identity)
        return found

    def _statuses(self) -> list[Mapping[str, Any] | None]:
        """The status of each peering object this replica peers through (None: the object is missing).
        Listed, not read by name: kopf's role grants list, watch and patch on them, not get."""
        if not self.namespaces:
            return self._listed(f"/apis/{GROUP}/{VERSION}/{CLUSTER_PLURAL}", expected=[""])
        literal, patterns = literal_namespaces(self.namespaces)
        statuses = []
        for namespace in literal:
            path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{NAMESPACED_PLURAL}"
            statuses += self._listed(path, expected=[namespace])
        if patterns:
            # Which namespaces a pattern matches is kopf's to find out (it watches the namespaces): the
            # objects found are read, a namespace without one is not known here.
            statuses += self._listed(f"/apis/{GROUP}/{VERSION}/{NAMESPACED_PLURAL}", patterns=patterns)
        return statuses

    def _listed(
        self, path: str, *, expected: Sequence[str] = (), patterns: Sequence[str] = ()
    ) -> list[Mapping[str, Any] | None]:
        try:
            listed = self.kube.request("GET", path)
        except KubeError as error:
            if error.status == 404:
                return [None]  # the CRD is not served: kopf pauses
            raise
        found: dict[str, Mapping[str, Any]] = {}
        for item in listed.get("items") or []:
            meta = item.get("metadata") or {}
            namespace = str(meta.get("namespace") or "")
            if meta.get("name") != self.name:
                continue
            if patterns and not _matches(namespace, patterns):
                continue
            found[namespace] = _status_of(item)
        if patterns:
            return list(found.values())
        return [found.get(namespace) for namespace in expected]


def _status_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    status = (obj or {}).get("status")
    return status if isinstance(status, Mapping) else {}


def _matches(namespace: str, patterns: Sequence[str]) -> bool:
    """kopf's namespace patterns: globs, and ``!glob`` to exclude."""
    included = any(fnmatch.fnmatch(namespace, p) for p in patterns if not p.startswith("!"))
    excluded = any(fnmatch.fnmatch(namespace, p[1:]) for p in patterns if p.startswith("!"))
    return included and not excluded
