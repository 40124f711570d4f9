"""peering.Standby reads the peering objects over HTTP (the in-memory Kubernetes API) as kopf sees them:
a missing object or CRD pauses (kopf waits to see its peering object), a live peer of higher priority
pauses, this replica alone does not; cluster-wide and per namespace."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mce_operator.kube import Kube
from mce_operator.peering import Standby
from mce_operator.testkit.kube_server import KubeServer

ME = "me@host/20261202/abc"


def peer(priority: int) -> dict[str, Any]:
    return {"priority": priority, "lifetime": 60, "lastseen": datetime.now(UTC).isoformat()}


def test_cluster_wide() -> None:
    with KubeServer(namespaces=["ml"], kopf_peering=True) as server:
        standby = Standby(Kube.from_connection(server.connection_info("ml")), "mce", ME, 10)
        assert standby.paused()  # no ClusterKopfPeering "mce" yet
        server.create(
            {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "mce"}}
        )
        assert not standby.paused()
        server.patch("clusterkopfpeerings", None, "mce", {"status": {ME: peer(10), "low": peer(5)}})
        assert not standby.paused()
        server.patch("clusterkopfpeerings", None, "mce", {"status": {"high": peer(20)}})
        assert standby.paused()
        # Another peering object's peers are not this one's.
        server.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "x"}})
        server.patch("clusterkopfpeerings", None, "x", {"status": {"high": peer(30)}})
        server.patch("clusterkopfpeerings", None, "mce", {"status": {"high": None}})
        assert not standby.paused()


def test_per_namespace() -> None:
    with KubeServer(namespaces=["ml", "other"], kopf_peering=True) as server:
        standby = Standby(Kube.from_connection(server.connection_info("ml")), "mce", ME, 10, ["ml"])
        body = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "mce"}}
        server.create(body, "other")
        assert standby.paused()  # none in "ml", the namespace it peers in
        server.create(body, "ml")
        assert not standby.paused()
        server.patch("kopfpeerings", "other", "mce", {"status": {"high": peer(20)}})
        assert not standby.paused()
        server.patch("kopfpeerings", "ml", "mce", {"status": {"twin": peer(10)}})
        assert standby.paused()  # the same priority: kopf pauses both


def test_without_kopfs_crds_it_pauses() -> None:
    with KubeServer(namespaces=["ml"]) as server:
        assert Standby(Kube.from_connection(server.connection_info("ml")), "mce", ME, 10).paused()
