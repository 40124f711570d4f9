"""Watches end: the apiserver closes them (here by restarting, which ends every stream at once) and etcd
compacts its history, so a watch resumed from an old resourceVersion gets 410 Gone. The operator must
miss no change made meanwhile.

kopf asks for its watches to end after `timeoutSeconds` (300 s, OperatorConfig.watch_server_timeout), so
the apiserver's --min-request-timeout, which only applies when a client names no timeout, never closes
the operator's watches; restarting kube-apiserver does, without waiting minutes.
"""

from __future__ import annotations

import copy
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, Kubectl, apply_crd, start_control_plane
from processes import Emulator, Operator, wait_until

from mce_operator import api
from mce_operator.demo import is_ready
from mce_operator.testkit.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

NAMESPACE = "watched"


@pytest.fixture(scope="module")
def own_plane() -> Iterator[ControlPlane]:
    """A control plane of its own: this module restarts its apiserver."""
    plane = start_control_plane()
    try:
        yield plane
    finally:
        plane.stop()


def test_a_change_made_while_the_watch_was_gone_and_etcd_compacted_is_not_missed(
    own_plane: ControlPlane, tmp_path: Path
) -> None:
    kubectl = Kubectl(own_plane.kubeconfig)
    apply_crd(kubectl, own_plane)
    kubectl("create", "namespace", NAMESPACE)
    client = own_plane.client()
    manifest = copy.deepcopy(yaml.safe_load((ROOT / "examples" / "serial.yaml").read_text()))
    manifest["metadata"] = {"name": "churn", "namespace": NAMESPACE}
    manifest["spec"]["deletionPolicy"] = "Delete"
    emulator = Emulator(tmp_path / "emulator.log")
    # --verbose: kopf says at DEBUG level when a watch ends with 410 Gone and it lists again.
    operator = Operator(own_plane.kubeconfig, emulator, tmp_path / "operator.log", "--verbose")
    try:
        kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
        ready = wait_until(
            "Ready", lambda: is_ready(client.find(api.PLURAL, NAMESPACE, "churn")), 60, log=operator
        )
        assert ready
        arn = client.get(api.PLURAL, NAMESPACE, "churn")["status"]["endpointArn"]

        # The operator is frozen while its watches end, the object changes and etcd forgets the history.
        operator.signal(signal.SIGSTOP)
        try:
            own_plane.restart_apiserver()
            patch = '{"spec":{"tags":{"team":"retention"}}}'
            kubectl("patch", "mce", "churn", "-n", NAMESPACE, "--type=merge", "-p", patch)
            for index in range(5):  # later writes elsewhere, so the compaction passes the change
                kubectl("create", "configmap", f"filler-{index}", "-n", NAMESPACE)
            compacted = own_plane.compact_etcd()
        finally:
            operator.signal(signal.SIGCONT)
        stored = int(client.get(api.PLURAL, NAMESPACE, "churn")["metadata"]["resourceVersion"])
        assert stored < compacted  # the change itself is in the compacted history

        sagemaker = emulator.client()
        wait_until(
            "the change on the endpoint",
            lambda: {"Key": "team", "Value": "retention"} in sagemaker.list_tags(ResourceArn=arn)["Tags"],
            60,
            log=operator,
        )
        # It was found by listing again after the resumed watch was refused with 410 Gone.
        assert "Restarting the watch-stream" in operator.text()
        # Deleting it still works through the new watches.
        kubectl("delete", "mce", "churn", "-n", NAMESPACE, "--timeout=60s")
        assert sagemaker.list_endpoints(NameContains="watched-churn")["Endpoints"] == []
    finally:
        operator.stop()
        emulator.stop()
