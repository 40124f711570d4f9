"""The operator creates its own kopf peering object (the manifests ship only the CRD, so that one
`kubectl apply -k` works on a fresh cluster): against the in-memory Kubernetes API, through the same
adapter and kubeconfig login the operator uses, and as `mce-operator run --peering` does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mce_operator import crdgen, peering
from mce_operator.credentials import Login
from mce_operator.kube import Kube
from mce_operator.testkit import kopf_peering_crds
from mce_operator.testkit.kube_server import KubeServer

NAME = "mce-operator"


def client(kube: KubeServer, tmp_path: Path) -> Kube:
    config = kube.write_kubeconfig(tmp_path / "kubeconfig")
    return Kube(Login({"KUBECONFIG": str(config)}))


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer(crds=[crdgen.build_crd()], namespaces=["ml", "risk"], kopf_peering=True) as server:
        yield server


def test_cluster_wide_it_creates_the_cluster_peering_once(kube: KubeServer, tmp_path: Path) -> None:
    api = client(kube, tmp_path)
    assert peering.ensure(NAME, kube=api) == [NAME]
    assert kube.get("clusterkopfpeerings", None, NAME)["kind"] == "ClusterKopfPeering"
    assert peering.ensure(NAME, kube=api) == []  # a second replica, or a restart


def test_namespaced_it_creates_one_per_named_namespace_and_leaves_patterns(
    kube: KubeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    created = peering.ensure(NAME, ["ml", "risk", "team-*"], kube=client(kube, tmp_path))
    assert created == ["ml/mce-operator", "risk/mce-operator"]
    for namespace in ("ml", "risk"):
        assert kube.get("kopfpeerings", namespace, NAME)["kind"] == "KopfPeering"
    assert kube.find("clusterkopfpeerings", None, NAME) is None
    assert any("'team-*' is a pattern" in r.getMessage() for r in caplog.records)


def test_it_waits_for_a_crd_applied_at_the_same_time(tmp_path: Path) -> None:
    with KubeServer(crds=[crdgen.build_crd()]) as kube:
        api = client(kube, tmp_path)
        result: list[list[str]] = []
        waiter = threading.Thread(
            target=lambda: result.append(peering.ensure(NAME, kube=api, timeout=60, interval=0.05))
        )
        waiter.start()
        # The CRD arrives after the operator started (same `kubectl apply`, pod scheduled first).
        (crd,) = [c for c in kopf_peering_crds() if c["spec"]["scope"] == "Cluster"]
        kube.create(crd)
        waiter.join(timeout=60)
        assert result == [[NAME]]
        assert kube.get("clusterkopfpeerings", None, NAME)


def test_without_the_crd_it_says_which_is_missing(tmp_path: Path) -> None:
    missing = r"clusterkopfpeerings\.kopf\.dev is not served"
    with KubeServer(crds=[crdgen.build_crd()]) as kube, pytest.raises(peering.PeeringError, match=missing):
        peering.ensure(NAME, kube=client(kube, tmp_path), timeout=0)


@pytest.mark.e2e
def test_mce_operator_run_with_peering_creates_the_object_and_peers_in_it(
    kube: KubeServer, tmp_path: Path
) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_ENDPOINT_URL_SAGEMAKER": "http://127.0.0.1:9",
        "POD_ID": "mce-operator-0",  # kopf's peer identity, as the Deployment sets it
    }
    log = (tmp_path / "operator.log").open("w")
    flags = [
        "--peering",
        NAME,
        "--region",
        "us-east-1",
        "--liveness",
        "",
        "--metrics-port",
        "0",
        "--plain-logs",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "mce_operator.cli", "run", *flags],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def peered(obj: dict[str, Any]) -> bool:
            assert process.poll() is None, (tmp_path / "operator.log").read_text()
            return "mce-operator-0" in (obj.get("status") or {})

        obj = kube.wait_for("clusterkopfpeerings", None, NAME, peered, timeout=60)
        # kopf's keep-alive: the replica announces itself (its priority is the operator's business).
        peer = obj["status"]["mce-operator-0"]
        assert isinstance(peer["priority"], int) and peer["lifetime"] > 0
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
