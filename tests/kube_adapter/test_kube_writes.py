"""The Kubernetes adapter (mce_operator.kube, on urllib3) against the in-memory Kubernetes API over HTTP:
its reads and writes, the errors it raises, a 401 answered by fetching the credentials again, and a pool
that holds a connection for each worker thread."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeconfig_files import ExecPlugin, write_kubeconfig
from mce_operator import api, crdgen
from mce_operator.credentials import Login
from mce_operator.kube import POOL_SIZE, Kube, KubeError
from mce_operator.testkit.kube_server import KubeServer

ROOT = Path(__file__).resolve().parents[2]
FINALIZER = f"{api.GROUP}/finalizer"


def direct(name: str = "fraud") -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "direct.yaml").read_text())
    manifest["metadata"] = {"name": name, "namespace": "ml"}
    return manifest


@pytest.fixture
def server() -> Iterator[KubeServer]:
    with KubeServer(crds=[crdgen.build_crd()], namespaces=["ml"], kopf_peering=True) as server:
        yield server


@pytest.fixture
def kube(server: KubeServer) -> Kube:
    return Kube.from_connection(server.connection_info("ml"))


def authorizations(server: KubeServer) -> list[str | None]:
    return [request.headers.get("Authorization") for request in server.emulator]


def test_get_reads_the_object_and_none_when_gone(server: KubeServer, kube: Kube) -> None:
    created = server.create(direct())
    assert kube.get("ml", "fraud") == created
    assert kube.get("ml", "nothing") is None


def test_patch_status_merges_and_none_removes(server: KubeServer, kube: Kube) -> None:
    server.create(direct())
    kube.patch_status("ml", "fraud", {"endpointName": "fraud-prod", "message": "creating"})
    answer = kube.patch_status("ml", "fraud", {"message": None, "endpointStatus": "Creating"})
    assert answer["status"] == {"endpointName": "fraud-prod", "endpointStatus": "Creating"}
    assert server.get(api.PLURAL, "ml", "fraud")["status"] == answer["status"]
    with pytest.raises(KubeError) as gone:
        kube.patch_status("ml", "nothing", {"message": "x"})
    assert gone.value.gone


def test_set_finalizer_adds_and_removes_only_its_own(server: KubeServer, kube: Kube) -> None:
    body = direct()
    body["metadata"]["finalizers"] = ["someone.else/keep"]
    created = server.create(body)
    added = kube.set_finalizer(created, FINALIZER, present=True)
    assert added is not None and added["metadata"]["finalizers"] == ["someone.else/keep", FINALIZER]
    requests = len(list(server.emulator))
    assert kube.set_finalizer(added, FINALIZER, present=True) == added  # nothing to do: no request
    assert len(list(server.emulator)) == requests
    removed = kube.set_finalizer(added, FINALIZER, present=False)
    assert removed is not None and removed["metadata"]["finalizers"] == ["someone.else/keep"]


def test_set_finalizer_reads_again_after_a_conflict(server: KubeServer, kube: Kube) -> None:
    created = server.create(direct())
    stale = copy.deepcopy(created)
    # Someone else adds a finalizer first: the adapter's patch carries the old resourceVersion.
    server.patch(api.PLURAL, "ml", "fraud", {"metadata": {"finalizers": ["someone.else/keep"]}})
    result = kube.set_finalizer(stale, FINALIZER, present=True)
    assert result is not None and result["metadata"]["finalizers"] == ["someone.else/keep", FINALIZER]


def test_set_finalizer_gives_up_on_an_object_that_keeps_changing(server: KubeServer, kube: Kube) -> None:
    created = server.create(direct())
    server.inject("PATCH", 409, plural=api.PLURAL, times=3)
    with pytest.raises(KubeError, match="kept changing") as conflict:
        kube.set_finalizer(created, FINALIZER, present=True)
    assert conflict.value.status == 409
    server.delete(api.PLURAL, "ml", "fraud")
    assert kube.set_finalizer(created, FINALIZER, present=True) is None  # gone


def test_create_makes_cluster_and_namespaced_objects_and_says_409_when_they_exist(kube: Kube) -> None:
    body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": "mce"}}
    assert kube.create("kopf.dev", "v1", "clusterkopfpeerings", {**body, "kind": "ClusterKopfPeering"})
    made = kube.create("kopf.dev", "v1", "kopfpeerings", {**body, "kind": "KopfPeering"}, "ml")
    assert made["metadata"]["namespace"] == "ml"
    with pytest.raises(KubeError) as exists:
        kube.create("kopf.dev", "v1", "kopfpeerings", {**body, "kind": "KopfPeering"}, "ml")
    assert exists.value.status == 409 and "already exists" in str(exists.value)


def test_an_error_answer_and_no_answer_are_kube_errors(server: KubeServer, kube: Kube) -> None:
    server.create(direct())
    server.inject("GET", 500, plural=api.PLURAL)
    with pytest.raises(KubeError) as failed:
        kube.get("ml", "fraud")
    assert failed.value.status == 500
    unreachable = Kube.from_connection({"server": "http://127.0.0.1:9"})  # the discard port: refused
    with pytest.raises(KubeError, match=r"GET http://127\.0\.0\.1:9/apis/.*Connection refused") as refused:
        unreachable.get("ml", "fraud")
    assert refused.value.status == 0


def test_a_401_fetches_the_credentials_again_and_retries_once(server: KubeServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first")
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"server": server.url},
        user={"tokenFile": str(token)},
    )
    kube = Kube(Login({"KUBECONFIG": str(config)}))
    server.create(direct())
    assert kube.get("ml", "fraud")
    # Refused while the token is the same: no other credentials, no second request.
    server.inject("GET", 401, plural=api.PLURAL)
    before = len(list(server.emulator))
    with pytest.raises(KubeError) as refused:
        kube.get("ml", "fraud")
    assert refused.value.status == 401 and len(list(server.emulator)) == before + 1
    # The token was rotated: refused once, then sent again with the new one.
    token.write_text("second")
    server.inject("GET", 401, plural=api.PLURAL)
    assert kube.get("ml", "fraud")
    assert authorizations(server)[-2:] == ["Bearer first", "Bearer second"]
    assert kube.get("ml", "fraud") and authorizations(server)[-1] == "Bearer second"


def test_an_exec_plugin_runs_again_after_a_401(server: KubeServer, tmp_path: Path) -> None:
    plugin = ExecPlugin(tmp_path / "plugin")
    plugin.answer({"token": "exec-RUN"})
    config = write_kubeconfig(
        tmp_path / "config", cluster={"server": server.url}, user={"exec": plugin.exec()}
    )
    kube = Kube(Login({"KUBECONFIG": str(config), "PATH": ""}))
    server.create(direct())
    server.inject("PATCH", 401, plural=api.PLURAL)
    kube.patch_status("ml", "fraud", {"message": "hello"})
    assert authorizations(server)[-2:] == ["Bearer exec-1", "Bearer exec-2"]
    assert len(plugin.runs()) == 2


def test_the_pool_holds_a_connection_for_each_worker_thread(
    server: KubeServer, kube: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    server.create(direct())
    start = threading.Barrier(POOL_SIZE)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait(timeout=10)
            for _ in range(5):
                kube.get("ml", "fraud")
        except BaseException as error:
            failures.append(error)

    caplog.set_level(logging.WARNING, logger="urllib3")
    threads = [threading.Thread(target=work) for _ in range(POOL_SIZE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    # urllib3 says so when more connections were open at once than its pool keeps (then reconnects).
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
