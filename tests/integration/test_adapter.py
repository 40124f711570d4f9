"""The boto3 adapter on its own, against the emulator: observation and safe-to-repeat actions."""

from __future__ import annotations

import dataclasses

import boto3
import pytest
from reconciler_kit import ENDPOINT, IDENTITY, ROLE, Harness, desired, spec

from mce_operator import core
from mce_operator.emulator import Emulator
from mce_operator.errors import ErrorKind
from mce_operator.sagemaker import Clients, SageMakerError, SageMakerSettings, cache_user_agent


def _actions(target: core.Desired) -> dict[str, core.Action]:
    decision = core.reconcile(target, core.Observed(endpoint=None), core.Memory())
    return {action.operation: action for action in decision.actions}


def test_observe_nothing(harness: Harness) -> None:
    observed = harness.sagemaker.observe(desired(spec()))
    assert observed == core.Observed(endpoint=None, models=[], configs=[])


def test_creates_and_deletes_are_safe_to_repeat(harness: Harness) -> None:
    target = desired(spec())
    actions = _actions(target)
    for _ in range(2):
        harness.sagemaker.execute(None, actions["CreateModel"])
        harness.sagemaker.execute(None, actions["CreateEndpointConfig"])
    assert harness.models() == {target.model_name}
    delete = core.Action("DeleteModel", target.model_name, {"ModelName": target.model_name}, "")
    for _ in range(2):
        harness.sagemaker.execute(None, delete)
    assert harness.models() == set()


def test_a_busy_endpoint_is_a_retry(harness: Harness, emu: Emulator) -> None:
    target = desired(spec())
    for action in _actions(target).values():
        harness.sagemaker.execute(None, action)
    update = core.Action(
        "UpdateEndpoint", ENDPOINT, {"EndpointName": ENDPOINT, "EndpointConfigName": target.config_name}, ""
    )
    with pytest.raises(SageMakerError) as error:
        harness.sagemaker.execute(None, update)  # still Creating
    assert (error.value.kind, error.value.rule.reason) == (ErrorKind.RETRY, "EndpointBusy")


def test_observe_lists_only_this_endpoints_names_and_reads_their_tags(harness: Harness) -> None:
    client = harness.client
    target = desired(spec())
    harness.sagemaker.execute(None, _actions(target)["CreateModel"])
    image = spec()["containers"][0]["image"]
    for name in ("fraud-prod-0123456789", "fraud-prod-legacy", "fraud-prod-x-0123456789", "other-0123456789"):
        client.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE,
            Containers=[{"Image": image}],
            Tags=[{"Key": "team", "Value": "x"}],
        )
    observed = harness.sagemaker.observe(target)
    assert {m.name: dict(m.tags) for m in observed.models} == {
        target.model_name: dict(target.tags),
        "fraud-prod-0123456789": {"team": "x"},
    }


def test_observe_pages_through_long_listings(harness: Harness) -> None:
    client = harness.client
    image = spec()["containers"][0]["image"]
    names = {f"fraud-prod-{i:010x}" for i in range(105)}
    for name in names:
        client.create_model(ModelName=name, ExecutionRoleArn=ROLE, Containers=[{"Image": image}])
    observed = harness.sagemaker.observe(desired(spec()))
    assert {m.name for m in observed.models} == names


def test_system_updating_delays_a_spec_change(harness: Harness, emu: Emulator) -> None:
    created = harness.converge(spec())
    emu.set_endpoint_status(ENDPOINT, "SystemUpdating", duration=0.3)
    emu.clear_calls()
    serial = spec(mode="Serial")
    result = harness.converge(serial, dataclasses.replace(IDENTITY, generation=2), created.memory)
    assert result.decision.report.ready.status
    assert harness.endpoint()["EndpointConfigName"] == desired(serial).config_name
    # No call SageMaker would refuse: every UpdateEndpoint was accepted.
    assert [c.outcome for c in emu.calls_to("UpdateEndpoint")] == ["ok"]


def test_the_cached_user_agent_is_the_one_botocore_builds(emu: Emulator) -> None:
    """sagemaker.cache_user_agent memoises the User-Agent header per feature set: every request, retries
    included, carries what botocore itself would have sent (a client made alike, its cache removed)."""
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x")
    settings = SageMakerSettings(region="us-east-1", endpoint_url=emu.url, calls_per_second=0)
    sent: dict[str, list[str]] = {"cached": [], "botocore": []}
    for label, headers in sent.items():
        client = Clients("sagemaker", settings, session).get("us-east-1")
        creator = client._user_agent_creator
        assert "to_string" in vars(creator), "the guard refused this botocore: the cache is off"
        if label == "botocore":
            del creator.to_string  # botocore's own method again
        client.meta.events.register(
            "before-send.sagemaker",
            lambda request, headers=headers, **_: headers.append(request.headers["User-Agent"]),
        )
        emu.throttle(count=1, operations=["ListModels"])  # a retried call: each attempt is signed and sent
        for _ in range(2):
            client.list_models()
            client.list_endpoints()
            with pytest.raises(client.exceptions.ClientError):
                client.describe_endpoint(EndpointName="absent")
    assert len(sent["cached"]) == 7
    assert sent["cached"] == sent["botocore"]
    # Application Auto Scaling's clients (autoscaling.py) are made by Clients too.
    scaling = Clients("application-autoscaling", settings, session).get("us-east-1")
    assert "to_string" in vars(scaling._user_agent_creator)


def test_user_agent_caching_leaves_an_unknown_client_alone() -> None:
    class Client:
        _user_agent_creator = object()

    assert cache_user_agent(Client()) is False
    assert cache_user_agent(object()) is False
