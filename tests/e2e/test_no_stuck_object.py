"""End to end: no object is ever stuck or orphaned — what fault injection and a new user found (issue 13).

Each test names the numbered item it reproduces. The faults are between kopf and the API server (the
testkit answers chosen requests with a 409 or 500), or in what a user can do when the CRD is bypassed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from e2e_harness import FINALIZER, NAMESPACE, REGION, Harness, condition, manifest, wait

from mce_operator import api, core, crdgen, handlers, naming
from mce_operator.autoscaling import AutoScaling
from mce_operator.emulator import Emulator
from mce_operator.kube import Kube
from mce_operator.sagemaker import SageMaker, SageMakerSettings
from mce_operator.testkit.kube_server import KubeServer

pytestmark = pytest.mark.e2e

QUICK = core.Timing(busy=0.3, steady=0.8)


def degraded(h: Harness, name: str, reason: str, timeout: float = 10) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = h.find(name)
        cond = condition(obj, "Degraded") if obj else {}
        ok = cond.get("status") == "True" and cond.get("reason") == reason
        return obj if ok and cond.get("observedGeneration") == obj["metadata"]["generation"] else None

    result: dict[str, Any] = wait(f"{name} Degraded ({reason})", check, timeout, h._show(name))
    return result


def gone(h: Harness, name: str, timeout: float = 15) -> None:
    wait(f"{name} to be deleted", lambda: h.find(name) is None, timeout, h._show(name))


def nothing_left(h: Harness, prefix: str) -> None:
    assert h.left_in_sagemaker(prefix) == {"endpoints": [], "configs": [], "models": []}


# --- 1. a reverted spec change ----------------------------------------------------------------------


def test_1_a_change_reverted_while_sagemaker_updates_is_followed(running: Harness) -> None:
    running.create(manifest("revert"))
    first = running.wait_ready("revert")["status"]["endpointConfigName"]
    running.patch("revert", {"spec": {"mode": "Serial"}})
    wait("UpdateEndpoint to Serial", lambda: running.calls("e2e-revert", "UpdateEndpoint"))
    # While SageMaker updates: back to what was there. The essence equals the last handled one.
    running.patch("revert", {"spec": {"mode": "Direct"}})
    obj = running.wait_ready("revert", timeout=20)
    assert obj["metadata"]["generation"] == 3
    assert obj["status"]["endpointConfigName"] == first
    described = running.sm.describe_endpoint(EndpointName="e2e-revert")
    assert described["EndpointConfigName"] == first
    assert len(running.calls("e2e-revert", "UpdateEndpoint")) == 2


# --- 2, 3. a refused write of kopf's or the operator's own ------------------------------------------


def test_2_conflicts_on_the_objects_writes_during_creation_do_not_strand_it(running: Harness) -> None:
    running.create(manifest("conflict"))
    wait("CreateEndpoint", lambda: running.calls("e2e-conflict", "CreateEndpoint"))
    fault = running.kube.inject("PATCH", 409, plural=api.PLURAL, name="conflict", times=3)
    obj = running.wait_ready("conflict", timeout=20)
    assert fault.hits == 3, "the faults must have been met"
    assert obj["status"]["endpointStatus"] == "InService"


def test_2_server_errors_on_status_writes_are_retried(running: Harness) -> None:
    fault = running.kube.inject("PATCH", 500, plural=api.PLURAL, name="flaky", subresource="status", times=4)
    running.create(manifest("flaky"))
    running.wait_ready("flaky", timeout=20)
    assert fault.hits == 4


def test_3_conflicts_during_deletion_do_not_keep_the_finalizer(running: Harness) -> None:
    running.create(manifest("delconflict"))
    running.wait_ready("delconflict")
    running.delete("delconflict")
    wait("DeleteEndpoint", lambda: running.calls("e2e-delconflict", "DeleteEndpoint"))
    fault = running.kube.inject("PATCH", 409, plural=api.PLURAL, name="delconflict", times=3)
    gone(running, "delconflict")
    assert fault.hits >= 1
    nothing_left(running, "e2e-delconflict")


# --- 4. two replicas with peering -------------------------------------------------------------------


@pytest.fixture
def peered() -> Iterator[Harness]:
    with (
        Emulator(delay=0.2, region=REGION) as emulator,
        KubeServer(crds=[crdgen.build_crd()], namespaces=[NAMESPACE], kopf_peering=True) as kube,
    ):
        kube.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "mce"}})
        harness = Harness(kube, emulator)
        try:
            yield harness
        finally:
            harness.close()


def test_4_two_replicas_with_peering_one_acts_and_the_other_takes_over(peered: Harness) -> None:
    low = peered.start_operator(peering="mce", priority=10)
    high = peered.start_operator(peering="mce", priority=20)
    # Peering is not a lock: until each replica has seen the other, both may act (harmlessly: the
    # names are deterministic, a repeated create finds its resource). Create once they have.
    wait(
        "both replicas in the peering object",
        lambda: len(peered.kube.get("clusterkopfpeerings", None, "mce").get("status") or {}) == 2,
    )
    time.sleep(1.0)
    peered.create(manifest("ha"))
    obj = peered.wait_ready("ha", timeout=30)
    assert FINALIZER in obj["metadata"]["finalizers"]
    creates = [c for c in peered.mutations("e2e-ha") if c[0].startswith("Create")]
    assert [op for op, _, _ in creates] == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"], creates

    # A deletion while both run: only the active replica deletes (the standby's schedule is paused too).
    peered.create(manifest("ha2"))
    peered.wait_ready("ha2", timeout=30)
    peered.delete("ha2")
    gone(peered, "ha2", timeout=30)
    deletes = [op for op, _, _ in peered.mutations("e2e-ha2") if op.startswith("Delete")]
    assert deletes == ["DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel"], deletes

    high.stop()  # the active replica goes; the standby resumes and serves a change
    peered.patch("ha", {"spec": {"mode": "Serial"}})
    obj = peered.wait_ready("ha", timeout=60)
    assert obj["metadata"]["generation"] == 2
    assert len(peered.calls("e2e-ha", "UpdateEndpoint")) == 1
    assert low.alive
    peered.delete("ha")
    gone(peered, "ha", timeout=30)
    nothing_left(peered, "e2e-ha")


def test_4_a_replica_back_from_a_pause_does_not_act_on_what_it_held(peered: Harness) -> None:
    """The standby held the object as it was before its pause; the active replica deleted it meanwhile.
    Back in charge, the standby reads the object again before acting: nothing is made again for it."""
    low = peered.start_operator(peering="mce", priority=10)
    peered.create(manifest("held"))
    peered.wait_ready("held", timeout=30)
    high = peered.start_operator(peering="mce", priority=20)
    wait(
        "both replicas in the peering object",
        lambda: len(peered.kube.get("clusterkopfpeerings", None, "mce").get("status") or {}) == 2,
    )
    time.sleep(1.5)  # the low replica has seen it (it reads the peering object every second)
    peered.delete("held")
    gone(peered, "held", timeout=30)
    nothing_left(peered, "e2e-held")
    high.stop()
    wait(
        "the low replica alone in the peering object",
        lambda: len(peered.kube.get("clusterkopfpeerings", None, "mce").get("status") or {}) == 1,
    )
    time.sleep(2.0)  # several visits' worth (busy 0.3 s), once it acts again
    assert low.alive
    assert len(peered.calls("e2e-held", "CreateEndpoint")) == 1, peered.mutations("e2e-held")
    nothing_left(peered, "e2e-held")


# --- 5, 6, 7. specs the CRD would refuse, and deletion -----------------------------------------------


def test_5_a_spec_that_is_not_an_object_is_degraded_and_deletable(running: Harness) -> None:
    body = manifest("notobject")
    body["spec"] = "hello"
    running.create(body)
    obj = degraded(running, "notobject", core.REASON_INVALID_SPEC)
    assert "spec: must be an object" in condition(obj, "Degraded")["message"]
    running.delete("notobject")
    gone(running, "notobject")
    assert not running.emulator.calls or all(c.name != "e2e-notobject" for c in running.emulator.calls)


def test_6_an_invalid_endpoint_name_that_never_deployed_is_deletable(running: Harness) -> None:
    running.create(manifest("badname", endpointName="bad_name!"))
    obj = degraded(running, "badname", core.REASON_INVALID_SPEC)
    assert "spec.endpointName" in condition(obj, "Degraded")["message"]
    running.delete("badname")
    gone(running, "badname")
    assert [c for c in running.emulator.calls if c.name == "bad_name!"] == []


def test_7_deleting_after_a_bypassed_rename_deletes_the_managed_endpoint(running: Harness) -> None:
    running.create(manifest("renamed"))
    running.wait_ready("renamed")
    running.patch("renamed", {"spec": {"endpointName": "e2e-elsewhere"}})
    degraded(running, "renamed", core.REASON_INVALID_SPEC)
    running.delete("renamed")
    gone(running, "renamed")
    nothing_left(running, "e2e-renamed")
    assert running.calls("e2e-elsewhere") == []


# --- 8. a tags-only change retries a rolled-back update ----------------------------------------------


def test_8_a_tags_only_change_retries_a_rolled_back_update_once(running: Harness) -> None:
    running.create(manifest("retry"))
    first = running.wait_ready("retry")["status"]["endpointConfigName"]
    running.emulator.fail_endpoint_update("e2e-retry", reason="The image could not be pulled", count=1)
    running.patch("retry", {"spec": {"mode": "Serial"}})
    degraded(running, "retry", "UpdateRolledBack", timeout=15)
    assert running.sm.describe_endpoint(EndpointName="e2e-retry")["EndpointConfigName"] == first
    # The cause is gone (count=1); only the tags change: the update is tried once more, and succeeds.
    running.patch("retry", {"spec": {"tags": {"team": "risk", "retry": "1"}}})
    obj = running.wait_ready("retry", config_not=first, timeout=20)
    assert obj["metadata"]["generation"] == 3
    assert len(running.calls("e2e-retry", "UpdateEndpoint")) == 2


def test_8_a_rollback_of_the_same_generation_is_not_retried(running: Harness) -> None:
    running.create(manifest("noloop"))
    running.wait_ready("noloop")
    running.emulator.fail_endpoint_update("e2e-noloop", reason="The image could not be pulled")
    running.patch("noloop", {"spec": {"mode": "Serial"}})
    degraded(running, "noloop", "UpdateRolledBack", timeout=15)
    time.sleep(3 * QUICK.steady)
    assert len(running.calls("e2e-noloop", "UpdateEndpoint")) == 1


# --- 9. never delete what an endpoint serves ----------------------------------------------------------


def test_9_a_disowned_endpoint_keeps_the_config_and_model_it_serves(running: Harness) -> None:
    running.create(manifest("disowned"))
    status = running.wait_ready("disowned")["status"]
    running.sm.delete_tags(ResourceArn=status["endpointArn"], TagKeys=[naming.TAG_UID])
    running.delete("disowned")
    gone(running, "disowned")
    left = running.left_in_sagemaker("e2e-disowned")
    assert left == {
        "endpoints": ["e2e-disowned"],
        "configs": [status["endpointConfigName"]],
        "models": [status["modelName"]],
    }
    assert running.sm.describe_endpoint(EndpointName="e2e-disowned")["EndpointStatus"] == "InService"


# --- the release annotation ---------------------------------------------------------------------------


def test_a_deletion_sagemaker_refuses_says_why_and_the_annotation_releases_it(e2e: Harness) -> None:
    e2e.start_operator(QUICK)
    e2e.create(manifest("refused"))
    e2e.wait_ready("refused")
    e2e.emulator.deny(["DeleteEndpoint"])
    e2e.delete("refused")
    obj = degraded(e2e, "refused", "DeletionBlocked")
    message = condition(obj, "Degraded")["message"]
    assert handlers.RELEASE_ANNOTATION in message and "AccessDenied" in message
    assert "DeletionBlocked" in e2e.reasons("refused")
    e2e.patch("refused", {"metadata": {"annotations": {handlers.RELEASE_ANNOTATION: "true"}}})
    gone(e2e, "refused")
    assert e2e.left_in_sagemaker("e2e-refused")["endpoints"] == ["e2e-refused"]


# --- an object that went without its DELETED event ---------------------------------------------------


def test_a_look_at_an_object_that_went_unnoticed_forgets_it(e2e: Harness) -> None:
    """A watch that lost its place lists the objects again and says nothing of those deleted meanwhile:
    the first write that finds the object gone ends its visits, instead of a write a second for ever."""
    kube = Kube.from_connection(e2e.kube.connection_info(NAMESPACE))
    settings = SageMakerSettings(region=REGION, endpoint_url=e2e.emulator.url, calls_per_second=0)
    sagemaker = SageMaker(
        settings, session=boto3.session.Session(aws_access_key_id="e2e", aws_secret_access_key="e2e")
    )
    memo = SimpleNamespace(
        kube=kube,
        sagemaker=sagemaker,
        autoscaling=AutoScaling.like(sagemaker),
        config=handlers.OperatorConfig(timing=QUICK),
    )
    body = manifest("vanished")
    body["metadata"].update(uid="0b7c1f9e-0000-4000-8000-000000000001", generation=1, resourceVersion="1")
    state = handlers._ObjectState(QUICK.drift)
    handlers._look(body, memo, state, logging.getLogger("test"))
    assert state.gone
    assert [op for op, _, _ in e2e.mutations("e2e-vanished")] == []
