"""kubectl mce render and diff against a live system: the real operator deployed objects into the emulator
through the in-memory Kubernetes API; render must equal what it sent (the emulator's call log), and diff
must tell each outcome from the live object and SageMaker (the emulator over HTTP, through boto3)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_harness import IMAGE, NAMESPACE, REGION, Harness, manifest

from mce_operator import crdgen, kubectl_plugin
from mce_operator.emulator import Emulator
from mce_operator.testkit.kube_server import KubeServer

pytestmark = pytest.mark.e2e

DEPLOYING = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint", "UpdateEndpoint")


@dataclass
class Live:
    harness: Harness
    folder: Path
    kubeconfig: str
    uid: str
    first: dict[str, Any]  # fraud as first applied
    current: dict[str, Any]  # fraud as applied now (a new image since)


def _without_status(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as its manifest would be: no status, no metadata but its name and namespace."""
    meta = {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]}
    kept = {key: copy.deepcopy(obj[key]) for key in ("apiVersion", "kind", "spec")}
    return {**kept, "metadata": meta}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """fraud created, then updated to a new image, by the real operator; doomed created too. The operator
    is stopped afterwards: diff only reads, and what a test changes it changes in SageMaker itself."""
    folder = tmp_path_factory.mktemp("kubectl-mce")
    with (
        Emulator(delay=0.2, region=REGION) as emulator,
        KubeServer(crds=[crdgen.build_crd()], namespaces=[NAMESPACE]) as kube,
    ):
        harness = Harness(kube, emulator)
        try:
            operator = harness.start_operator()
            first = manifest("fraud", tags={"team": "risk", "cost-center": "4410"})
            harness.create(first)
            ready = harness.wait_ready("fraud")
            current = copy.deepcopy(first)
            current["spec"]["containers"][1]["image"] = IMAGE.format("scorer-v2")
            harness.patch("fraud", {"spec": {"containers": current["spec"]["containers"]}})
            harness.wait_ready("fraud", config_not=ready["status"]["endpointConfigName"])
            harness.create(manifest("doomed"))
            harness.wait_ready("doomed")
            operator.stop()
            yield Live(
                harness,
                folder,
                str(kube.write_kubeconfig(folder / "kubeconfig", namespace=NAMESPACE)),
                ready["metadata"]["uid"],
                first,
                current,
            )
        finally:
            harness.close()


@pytest.fixture
def aws(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's own configuration, as a CI job would set it for the emulator."""
    for name, value in {
        "AWS_ENDPOINT_URL_SAGEMAKER": live.harness.emulator.url,
        "AWS_ACCESS_KEY_ID": "ci",
        "AWS_SECRET_ACCESS_KEY": "ci",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)


def kubectl_mce(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = kubectl_plugin.main(list(argv), out=out)
    return code, out.getvalue(), err.getvalue()


def write(live: Live, name: str, *objects: dict[str, Any]) -> str:
    path = live.folder / name
    path.write_text(yaml.safe_dump_all(list(objects), sort_keys=False))
    return str(path)


# --- render ---------------------------------------------------------------------------------------------


def test_render_is_what_the_operator_sent(live: Live) -> None:
    sent: dict[str, list[dict[str, Any]]] = {operation: [] for operation in DEPLOYING}
    for call in live.harness.calls("e2e-fraud"):
        if call.operation in DEPLOYING and call.outcome == "ok":
            assert call.request is not None
            sent[call.operation].append(call.request)
    assert [len(sent[operation]) for operation in DEPLOYING] == [2, 2, 1, 1]

    first = write(live, "first.yaml", live.first)
    code, out, _ = kubectl_mce("render", "-f", first, "--uid", live.uid, "-o", "json")
    assert code == 0
    created = json.loads(out)["requests"]
    for operation in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint"):
        assert sent[operation][0] == created[operation], operation

    current = write(live, "current.yaml", live.current)
    code, out, _ = kubectl_mce("render", "-f", current, "--uid", live.uid, "-o", "json")
    assert code == 0
    updated = json.loads(out)["requests"]
    assert sent["CreateModel"][1] == updated["CreateModel"]
    assert sent["CreateEndpointConfig"][1] == updated["CreateEndpointConfig"]
    assert sent["UpdateEndpoint"][0] == updated["UpdateEndpoint"]
    # The names the status shows are the rendered ones.
    status = live.harness.get("fraud")["status"]
    assert (status["modelName"], status["endpointConfigName"]) == (
        updated["CreateModel"]["ModelName"],
        updated["CreateEndpointConfig"]["EndpointConfigName"],
    )


# --- diff -----------------------------------------------------------------------------------------------


def diff(live: Live, *objects: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    path = write(live, "diff.yaml", *objects)
    code, out, _ = kubectl_mce("diff", "--kubeconfig", live.kubeconfig, "-f", path, "-o", "json")
    text_code, text, err = kubectl_mce("diff", "--kubeconfig", live.kubeconfig, "-f", path)
    assert text_code == code, err
    answer = json.loads(out)
    assert answer["exitCode"] == code
    return code, answer, text


def plan(answer: dict[str, Any], index: int = 0) -> list[tuple[str, str]]:
    return [(step["operation"], step["name"]) for step in answer["objects"][index]["plan"]]


def names(live: Live) -> tuple[str, str]:
    status = live.harness.get("fraud")["status"]
    return status["modelName"], status["endpointConfigName"]


def changed(live: Live, **spec: Any) -> dict[str, Any]:
    obj = _without_status(live.current)
    obj["spec"].update(copy.deepcopy(spec))
    return obj


def test_nothing(live: Live, aws: None) -> None:
    code, answer, text = diff(live, live.current)
    assert (code, answer["outcome"], plan(answer)) == (0, "nothing", [])
    assert answer["objects"][0]["changes"] == []
    config = names(live)[1]
    assert f"SageMaker: endpoint e2e-fraud is InService on {config}" in text
    assert text.startswith("ml/fraud: nothing (")


def test_tags_only(live: Live, aws: None) -> None:
    code, answer, text = diff(live, changed(live, tags={"team": "fraud-risk"}))
    model, config = names(live)
    assert (code, answer["outcome"]) == (10, "tags only")
    assert sorted(plan(answer)) == sorted(
        [("AddTags", name) for name in ("e2e-fraud", model, config)]
        + [("DeleteTags", name) for name in ("e2e-fraud", model, config)]
    )
    assert {(c["field"], c["live"], c["manifest"]) for c in answer["objects"][0]["changes"]} == {
        ("spec.tags.team", "risk", "fraud-risk"),
        ("spec.tags.cost-center", "4410", None),
    }
    assert 'spec.tags.cost-center: "4410" -> (none)' in text
    assert "AddTags e2e-fraud: team=fraud-risk" in text and "DeleteTags e2e-fraud: cost-center" in text


def test_new_endpoint_config(live: Live, aws: None) -> None:
    code, answer, _ = diff(live, changed(live, initialInstanceCount=3))
    config = names(live)[1]
    assert (code, answer["outcome"]) == (11, "new endpoint config")
    steps = plan(answer)
    assert [operation for operation, _ in steps] == [
        "CreateEndpointConfig",
        "UpdateEndpoint",
        "DeleteEndpointConfig",
    ]
    assert steps[2] == (
        "DeleteEndpointConfig",
        config,
    )  # the superseded one, once the endpoint serves the new
    assert steps[0][1] != config


def test_new_model_and_config(live: Live, aws: None) -> None:
    containers = copy.deepcopy(live.current["spec"]["containers"])
    containers[0]["environment"] = {"LOG_LEVEL": "debug"}
    code, answer, _ = diff(live, changed(live, containers=containers))
    model, config = names(live)
    assert (code, answer["outcome"]) == (12, "new model and config")
    assert [operation for operation, _ in plan(answer)] == [
        "CreateModel",
        "CreateEndpointConfig",
        "UpdateEndpoint",
        "DeleteEndpointConfig",
        "DeleteModel",
    ]
    assert plan(answer)[3:] == [("DeleteEndpointConfig", config), ("DeleteModel", model)]
    assert answer["objects"][0]["changes"] == [
        {"field": "spec.containers[0].environment", "live": None, "manifest": {"LOG_LEVEL": "debug"}}
    ]


def test_new_endpoint_for_a_new_object(live: Live, aws: None) -> None:
    code, answer, _ = diff(live, manifest("newcomer"))
    assert (code, answer["outcome"]) == (13, "new endpoint")
    assert [operation for operation, _ in plan(answer)] == [
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
    ]
    assert "the object does not exist in the cluster yet" in answer["objects"][0]["notes"]


def test_refused_immutable_field(live: Live, aws: None) -> None:
    code, answer, text = diff(live, changed(live, endpointName="e2e-fraud-2"))
    assert (code, answer["outcome"], plan(answer)) == (14, "refused", [])
    assert any(
        "spec.endpointName" in reason and "immutable" in reason for reason in answer["objects"][0]["reasons"]
    )
    assert "refused: spec.endpointName" in text


def test_refused_name_owned_by_another_object(live: Live, aws: None) -> None:
    squatter = manifest("squatter", endpointName="e2e-fraud")
    code, answer, _ = diff(live, squatter)
    assert (code, answer["outcome"], plan(answer)) == (14, "refused", [])
    assert "owned by someone else (ml/fraud)" in answer["objects"][0]["reasons"][0]


def test_several_objects_exit_with_the_most_disruptive(live: Live, aws: None) -> None:
    containers = copy.deepcopy(live.current["spec"]["containers"])
    containers[1]["image"] = IMAGE.format("scorer-v3")
    code, answer, text = diff(
        live,
        changed(live, tags={"team": "risk"}),
        changed(live, containers=containers) | {"metadata": {"name": "fraud", "namespace": NAMESPACE}},
    )
    assert [o["outcome"] for o in answer["objects"]] == ["tags only", "new model and config"]
    assert (code, answer["outcome"]) == (12, "new model and config")
    assert text.count("ml/fraud: ") == 2


def test_busy_failed_and_deleted_endpoints(live: Live, aws: None) -> None:
    """Out-of-band states of doomed's endpoint, from SageMaker's side: the plan is what the operator will
    do once SageMaker lets it."""
    emulator = live.harness.emulator
    doomed = _without_status(live.harness.get("doomed"))
    new_image = copy.deepcopy(doomed)
    new_image["spec"]["containers"][0]["image"] = IMAGE.format("features-v9")

    emulator.set_endpoint_status("e2e-doomed", "SystemUpdating")
    code, answer, _ = diff(live, new_image)
    assert (code, answer["outcome"]) == (12, "new model and config")
    assert any(
        "SageMaker is working on the endpoint (SystemUpdating)" in n for n in answer["objects"][0]["notes"]
    )

    emulator.set_endpoint_status("e2e-doomed", "Failed", failure_reason="Image pull failed.")
    code, answer, _ = diff(live, doomed)
    assert (code, answer["outcome"], plan(answer)) == (0, "nothing", [])
    assert any("Image pull failed." in note for note in answer["objects"][0]["notes"])
    code, answer, _ = diff(live, new_image)
    assert (code, answer["outcome"]) == (13, "new endpoint")
    assert [operation for operation, _ in plan(answer)][:2] == ["DeleteEndpoint", "CreateModel"]
    assert "CreateEndpoint" in [operation for operation, _ in plan(answer)]

    emulator.delete_endpoint_now("e2e-doomed")
    code, answer, _ = diff(live, doomed)
    assert (code, answer["outcome"], plan(answer)) == (13, "new endpoint", [("CreateEndpoint", "e2e-doomed")])


def test_errors_and_help(live: Live, aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    invalid = changed(live, instanceType="m5.large")
    path = write(live, "invalid.yaml", invalid)
    code, out, err = kubectl_mce("diff", "--kubeconfig", live.kubeconfig, "-f", path)
    assert (code, out) == (1, "")
    assert "spec.instanceType" in err and "error: the manifests are not valid" in err

    # A CI role that may not read SageMaker.
    fault = live.harness.emulator.deny(["DescribeEndpoint"])
    try:
        code, _, err = kubectl_mce(
            "diff", "--kubeconfig", live.kubeconfig, "-f", write(live, "x.yaml", live.current)
        )
    finally:
        live.harness.emulator.remove_fault(fault)
    assert code == 1
    assert "ml/fraud: cannot read SageMaker: DescribeEndpoint e2e-fraud: AccessDeniedException" in err

    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit) as exited:
        kubectl_plugin.main(["diff", "--help"])
    assert exited.value.code == 0
    table = [" ".join(line.split()) for line in help_text.getvalue().splitlines()]
    for outcome, exit_code in [
        ("nothing", 0),
        ("tags only", 10),
        ("new endpoint config", 11),
        ("new model and config", 12),
        ("new endpoint", 13),
        ("refused", 14),
    ]:
        assert any(line.startswith(f"{outcome} {exit_code} ") for line in table), outcome
