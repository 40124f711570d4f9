"""kubectl mce render, offline. That its requests are what the operator sends is shown against the
emulator's call log in tests/e2e/test_kubectl_mce.py; here: the command itself."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from cli_run import kubectl_mce

from mce_operator import naming

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_yaml_for_each_object_with_names_tags_and_requests() -> None:
    run = kubectl_mce("render", "-f", str(EXAMPLES))
    assert run.code == 0, run.err
    rendered = list(yaml.safe_load_all(run.out))
    assert [(r["namespace"], r["name"]) for r in rendered] == [("ml", "fraud"), ("ml", "churn")]
    fraud, churn = rendered
    assert (fraud["endpointName"], fraud["region"]) == ("fraud-prod", "us-east-1")
    assert churn["endpointName"] == "ml-churn"  # no spec.endpointName: <namespace>-<name>
    for item in rendered:
        requests = item["requests"]
        assert list(requests) == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint", "UpdateEndpoint"]
        model, config = item["modelName"], item["endpointConfigName"]
        assert naming.is_child_name(item["endpointName"], model)
        assert requests["CreateModel"]["ModelName"] == model
        variant = requests["CreateEndpointConfig"]["ProductionVariants"][0]
        assert (requests["CreateEndpointConfig"]["EndpointConfigName"], variant["ModelName"]) == (
            config,
            model,
        )
        assert requests["CreateEndpoint"]["EndpointConfigName"] == config
        assert requests["UpdateEndpoint"] == {
            "EndpointName": item["endpointName"],
            "EndpointConfigName": config,
        }
        # The uid is the apiserver's to give: a placeholder, in every tag list.
        for operation in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint"):
            tags = {t["Key"]: t["Value"] for t in requests[operation]["Tags"]}
            assert tags == item["tags"]
            assert tags[naming.TAG_UID] == "<uid>"
    assert fraud["requests"]["CreateModel"]["InferenceExecutionConfig"] == {"Mode": "Direct"}
    assert fraud["requests"]["CreateEndpointConfig"]["ProductionVariants"][0]["InitialInstanceCount"] == 2


def test_an_autoscaled_guarded_object_renders_its_update_and_autoscaling_requests(tmp_path: Path) -> None:
    manifest = yaml.safe_load((EXAMPLES / "serial.yaml").read_text())
    manifest["spec"]["autoscaling"] = {
        "minCapacity": 1,
        "maxCapacity": 4,
        "targetTracking": {"invocationsPerInstance": 70, "scaleInCooldownInSeconds": 600},
    }
    manifest["spec"]["deployment"] = {
        "rolling": {
            "maximumBatchSize": {"type": "CapacityPercent", "value": 25},
            "waitIntervalInSeconds": 60,
        },
        "autoRollbackAlarms": ["churn-5xx"],
    }
    path = tmp_path / "scaled.yaml"
    path.write_text(yaml.safe_dump(manifest))
    run = kubectl_mce("render", "-f", str(path), "-o", "json")
    assert run.code == 0, run.err
    requests = json.loads(run.out)["requests"]
    assert list(requests) == [
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "UpdateEndpoint",
        "RegisterScalableTarget",
        "PutScalingPolicy",
    ]
    assert requests["UpdateEndpoint"]["RetainAllVariantProperties"] is True
    assert requests["UpdateEndpoint"]["DeploymentConfig"] == {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            "WaitIntervalInSeconds": 60,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "churn-5xx"}]},
    }
    resource = "endpoint/ml-churn/variant/AllTraffic"
    assert requests["RegisterScalableTarget"] == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource,
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 4,
    }
    assert requests["PutScalingPolicy"]["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 70.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "DisableScaleIn": False,
        "ScaleInCooldown": 600,
    }


def test_the_uid_changes_tags_not_names() -> None:
    path = str(EXAMPLES / "serial.yaml")
    first = json.loads(kubectl_mce("render", "-f", path, "-o", "json", "--uid", "u-1").out)
    second = json.loads(kubectl_mce("render", "-f", path, "-o", "json", "--uid", "u-2").out)
    assert (first["modelName"], first["endpointConfigName"]) == (
        second["modelName"],
        second["endpointConfigName"],
    )
    assert (first["tags"][naming.TAG_UID], second["tags"][naming.TAG_UID]) == ("u-1", "u-2")


def test_the_namespace_of_objects_without_one_names_the_endpoint(tmp_path: Path) -> None:
    obj = yaml.safe_load((EXAMPLES / "serial.yaml").read_text())
    del obj["metadata"]["namespace"]
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(obj))
    assert json.loads(kubectl_mce("render", str(path), "-o", "json").out)["endpointName"] == "default-churn"
    rendered = json.loads(kubectl_mce("render", str(path), "-o", "json", "-n", "growth").out)
    assert (rendered["namespace"], rendered["endpointName"]) == ("growth", "growth-churn")


def test_invalid_manifests_render_nothing(tmp_path: Path) -> None:
    obj = yaml.safe_load((EXAMPLES / "direct.yaml").read_text())
    obj["spec"]["containers"][0]["containerHostname"] = "bad_host"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(obj))
    run = kubectl_mce("render", "-f", str(path))
    assert (run.code, run.out) == (1, "")
    assert f"{path}:" in run.err and "spec.containers[0].containerHostname" in run.err
    assert "error: the manifests are not valid" in run.err
    only_others = tmp_path / "cm.yaml"
    only_others.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    run = kubectl_mce("render", "-f", str(only_others))
    assert run.code == 1 and "error: no MultiContainerEndpoint found" in run.err


def test_help() -> None:
    run = kubectl_mce("render", "--help")
    assert run.code == 0
    assert "CreateModel, CreateEndpointConfig and CreateEndpoint" in " ".join(run.out.split())
    assert "exit codes: 0 rendered; 1 invalid manifests" in run.out
