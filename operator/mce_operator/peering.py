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

import logging
import time
from collections.abc import Sequence
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
