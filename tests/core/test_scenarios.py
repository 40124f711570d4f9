"""The reconciler's scenario table (scenarios.yaml): spec + observed SageMaker state + memory -> decision.

The table is the specification; this module only turns its rows into core inputs and compares the
decision with the row's expectation. See the header of scenarios.yaml for the notation.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from mce_operator import core, naming
from mce_operator.api import AutoscalingStatus, LastDeployment, parse_spec

TABLE = yaml.safe_load((Path(__file__).with_name("scenarios.yaml")).read_text())
TIMING = core.Timing(busy=10.0, steady=300.0)
ARN = "arn:aws:sagemaker:us-east-1:123456789012:{kind}/{name}"
_PLACEHOLDER = re.compile(r"\$(?:(model|config)\((\w+)\)|(\w+))")


# --- Building the inputs -------------------------------------------------------------------------


def _set_path(target: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


def _raw_spec(ref: str | Mapping[str, Any]) -> dict[str, Any]:
    """A named spec, or ``{base: NAME, set: {dotted.path: value}}``."""
    entry = TABLE["specs"][ref] if isinstance(ref, str) else ref
    if "base" not in entry:
        return copy.deepcopy(dict(entry))
    raw = _raw_spec(entry["base"])
    for dotted, value in entry.get("set", {}).items():
        _set_path(raw, dotted, copy.deepcopy(value))
    return raw


def _identity(overrides: Mapping[str, Any] | None = None) -> core.Identity:
    return core.Identity(**{**TABLE["identity"], **(overrides or {})})


def _desired(ref: str | Mapping[str, Any], identity: core.Identity) -> core.Desired:
    return core.desired_state(parse_spec(_raw_spec(ref)), identity)


class Resolver:
    """Replaces ``$placeholders`` in a row with the names the core derives from the specs."""

    def __init__(self, desired: core.Desired) -> None:
        self.desired = desired
        self.words = {
            "endpoint": desired.endpoint_name,
            "desiredModel": desired.model_name,
            "desiredConfig": desired.config_name,
            "resource": core.resource_id(desired.endpoint_name, desired.variant_name),
        }

    def _named(self, kind: str, spec: str) -> str:
        other = _desired(spec, self.desired.identity)
        return other.model_name if kind == "model" else other.config_name

    def _one(self, match: re.Match[str]) -> str:
        kind, spec, word = match.groups()
        if kind:
            return self._named(kind, spec)
        if word in ("oldModel", "oldConfig"):
            return self._named(word[3:].lower(), "old")
        if word not in self.words:
            raise KeyError(f"unknown placeholder ${word}")
        return self.words[word]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return _PLACEHOLDER.sub(self._one, value)
        if isinstance(value, list):
            return [self(item) for item in value]
        if isinstance(value, dict):
            return {self(key): self(item) for key, item in value.items()}
        return value


def _tags(entry: Mapping[str, Any], spec_tags: Mapping[str, str]) -> dict[str, str]:
    owner = TABLE["owners"][entry.get("owner", "self")]
    user = entry.get("tags", spec_tags)
    return {**user, **(naming.ownership_tags(**owner) if owner else {})}


def _observed(row: Mapping[str, Any], resolve: Resolver, spec_tags: Mapping[str, str]) -> core.Observed:
    given = resolve(row.get("observed", {}))
    endpoint = given.get("endpoint")
    observed_endpoint = None
    if endpoint is not None:
        name = resolve("$endpoint")
        observed_endpoint = core.ObservedEndpoint(
            name=name,
            arn=ARN.format(kind="endpoint", name=name),
            status=endpoint["status"],
            config_name=endpoint["config"],
            failure_reason=endpoint.get("failureReason", ""),
            tags=_tags(endpoint, spec_tags),
            variants=tuple(
                core.ObservedVariant(v["name"], v.get("desired"), v.get("current"))
                for v in endpoint.get("variants", [])
            ),
            deployment_phase=endpoint.get("phase", ""),
        )

    def tagged(kind: str, entries: list[Mapping[str, Any]]) -> list[core.Tagged]:
        return [
            core.Tagged(name=e["name"], arn=ARN.format(kind=kind, name=e["name"]), tags=_tags(e, spec_tags))
            for e in entries
        ]

    scaling = given.get("scaling")
    return core.Observed(
        endpoint=observed_endpoint,
        models=tagged("model", given.get("models", [])),
        configs=tagged("endpoint-config", given.get("configs", [])),
        served=frozenset(name.lower() for name in given.get("served", [])),
        scaling=None if scaling is None else tuple(_target(t, resolve) for t in scaling),
        serving_instance_types=given.get("servingInstanceTypes"),
    )


def _target(entry: Mapping[str, Any], resolve: Resolver) -> core.ScalableTarget:
    """``{variant, min, max, policies}``; a policy given by name only has the configuration the row's
    spec asks for, one given as ``{name: {...}}`` that configuration."""
    desired = resolve.desired.autoscaling
    policies: dict[str, Any] = {}
    for policy in entry.get("policies", []):
        if isinstance(policy, str):
            assert desired is not None, "a policy by name needs a spec with autoscaling"
            policies[policy] = dict(desired.policy)
        else:
            policies.update(policy)
    return core.ScalableTarget(
        variant=entry["variant"],
        resource_id=core.resource_id(resolve("$endpoint"), entry["variant"]),
        min_capacity=entry["min"],
        max_capacity=entry["max"],
        policies=policies,
    )


def _memory(given: Mapping[str, Any] | None) -> core.Memory:
    given = given or {}
    last = given.get("lastDeployment")
    terminal = given.get("terminal") or {}
    return core.Memory(
        last_deployment=LastDeployment(
            endpoint_config_name=last["to"],
            from_endpoint_config_name=last.get("from"),
            generation=last.get("generation"),
        )
        if last
        else None,
        terminal_failure=terminal.get("message"),
        terminal_reason=terminal.get("reason"),
        autoscaling=AutoscalingStatus.model_validate(given["autoscaling"])
        if given.get("autoscaling")
        else None,
    )


# --- Comparing the decision ------------------------------------------------------------------------


def _subset(expected: Any, actual: Any) -> bool:
    """Whether every key/item given in ``expected`` is in ``actual`` (lists compare item by item)."""
    if isinstance(expected, dict):
        return isinstance(actual, Mapping) and all(
            key in actual and _subset(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def _expected_action(item: str | list[Any]) -> tuple[str, str, dict[str, Any]]:
    """``"Operation target"`` or ``[Operation, target, {params}]``; an Application Auto Scaling call's
    target is its ResourceId (``$resource`` for the row's variant)."""
    if isinstance(item, str):
        operation, target = item.split()
        return operation, target, {}
    operation, target, *params = item
    return operation, target, params[0] if params else {}


def _condition(cond: core.Cond) -> str:
    return f"{cond.status}/{cond.reason}"


def _check(row: Mapping[str, Any], decision: core.Decision, resolve: Resolver) -> None:
    expect = resolve(row["expect"])

    wanted = [_expected_action(item) for item in expect.get("actions", [])]
    got = [(a.operation, a.name) for a in decision.actions]
    assert got == [(op, target) for op, target, _ in wanted], "actions differ"
    for action, (_, _, params) in zip(decision.actions, wanted, strict=True):
        assert _subset(params, dict(action.params)), f"{action.operation} params: {dict(action.params)}"

    report = decision.report
    actual = {
        "Ready": _condition(report.ready),
        "Progressing": _condition(report.progressing),
        "Degraded": _condition(report.degraded),
    }
    for kind, value in expect.get("conditions", {}).items():
        assert actual[kind] == value, f"{kind} condition"
    assert report.model_name == resolve("$desiredModel")
    assert report.endpoint_config_name == resolve("$desiredConfig")
    assert report.endpoint_name == resolve("$endpoint")

    if "autoscaling" in expect:
        scaled = expect["autoscaling"]
        assert report.autoscaling == (None if scaled is None else AutoscalingStatus.model_validate(scaled))
    if "instanceCounts" in expect:
        assert [report.desired_instance_count, report.current_instance_count] == expect["instanceCounts"]
    for action in decision.actions:
        # Every Application Auto Scaling call goes to that service, every other one to SageMaker.
        scaling = action.operation in AUTOSCALING_OPERATIONS
        assert action.service == (core.AUTOSCALING if scaling else core.SAGEMAKER), action

    if "endpointStatus" in expect:
        assert report.endpoint_status == expect["endpointStatus"]
    if "failureReason" in expect:
        assert report.failure_reason == expect["failureReason"]
    for text in expect.get("message", []):
        messages = " ".join(c.message for c in (report.ready, report.progressing, report.degraded))
        assert text.lower() in messages.lower(), f"{text!r} not in {messages!r}"
    for text in expect.get("notes", []):
        assert any(text in note for note in decision.notes), f"{text!r} not in {decision.notes}"

    if "requeue" in expect:
        wait = {"busy": TIMING.busy, "steady": TIMING.steady}[expect["requeue"]]
        assert decision.requeue_after == wait, "requeue"
    assert decision.finished is expect.get("finished", False)

    last = expect.get("lastDeployment")
    if last is None:
        pass
    elif last == "keep":
        assert decision.last_deployment is None, "must keep what is remembered"
    else:
        # An UpdateEndpoint is remembered with the generation that sent it (the row's identity's).
        sent_by = resolve.desired.identity.generation if last.get("from") else None
        assert decision.last_deployment == LastDeployment(
            endpoint_config_name=last["to"],
            from_endpoint_config_name=last.get("from"),
            generation=last.get("generation", sent_by),
        )


def _check_invariants(desired: core.Desired, observed: core.Observed, decision: core.Decision) -> None:
    """What must hold in every row, whatever it says."""
    identity = desired.identity
    resources: list[core.Tagged | core.ObservedEndpoint] = [*observed.models, *observed.configs]
    if observed.endpoint is not None:
        resources.append(observed.endpoint)
    foreign = {
        item.name
        for item in resources
        if not naming.names_owner(
            item.tags, identity.namespace, identity.name, identity.uid, adopt=identity.adopt
        )
    }
    for action in decision.actions:
        if not action.operation.startswith("Create"):
            assert action.name not in foreign, f"{action.operation} on {action.name}, not ours"
    deleted = {a.name for a in decision.actions if a.operation in ("DeleteModel", "DeleteEndpointConfig")}
    if observed.endpoint is not None:
        # Never delete what the endpoint still uses, nor (outside deletion) what it is about to use.
        assert observed.endpoint.config_name not in deleted
        if not decision.finished:
            assert not deleted & {desired.model_name, desired.config_name}
    assert not {name.lower() for name in deleted} & observed.served, "deleted what an endpoint serves"
    if decision.report.ready.status:
        assert observed.endpoint is not None
        assert observed.endpoint.status == "InService"
        assert observed.endpoint.config_name == desired.config_name
    _check_scaling_invariants(desired, observed, decision)


def _check_scaling_invariants(
    desired: core.Desired, observed: core.Observed, decision: core.Decision
) -> None:
    """Autoscaling and deployment guardrails, whatever the row says."""
    operations = [action.operation for action in decision.actions]
    deregistered = {a.name for a in decision.actions if a.operation == "DeregisterScalableTarget"}
    for index, action in enumerate(decision.actions):
        if action.operation == "UpdateEndpoint":
            params = dict(action.params)
            # Every update keeps an autoscaled variant's live count, and carries the spec's guardrails.
            assert params.get("RetainAllVariantProperties", False) is (desired.autoscaling is not None)
            assert params.get("DeploymentConfig") == (
                dict(desired.deployment) if desired.deployment else None
            )
            types = observed.serving_instance_types or {}
            for target in observed.scaling or ():
                if (
                    types.get(target.variant) != desired.instance_type
                    or target.variant != desired.variant_name
                ):
                    # SageMaker refuses the update while such a variant is registered.
                    assert target.resource_id in deregistered, f"{target.resource_id} still registered"
                    assert operations.index("DeregisterScalableTarget") < index
        if action.operation == "DeleteEndpoint":
            for target in observed.scaling or ():
                assert target.resource_id in deregistered, "DeleteEndpoint of an autoscaled endpoint"
        if action.operation == "RegisterScalableTarget":
            # Only on an endpoint in service, for the spec's variant.
            assert observed.endpoint is not None and observed.endpoint.status == "InService"
            assert desired.autoscaling is not None
            assert action.name == core.resource_id(observed.endpoint.name, desired.variant_name)


AUTOSCALING_OPERATIONS = {"RegisterScalableTarget", "DeregisterScalableTarget", "PutScalingPolicy"}
SCENARIOS = TABLE["scenarios"]


@pytest.mark.parametrize("row", SCENARIOS, ids=[row["name"] for row in SCENARIOS])
def test_scenario(row: Mapping[str, Any]) -> None:
    identity = _identity(row.get("identity"))
    desired = _desired(row["spec"], identity)
    resolve = Resolver(desired)
    observed = _observed(row, resolve, desired_user_tags(desired))
    if row.get("op", "reconcile") == "finalize":
        decision = core.finalize(desired, observed, TIMING, _memory(resolve(row.get("memory"))))
    else:
        decision = core.reconcile(desired, observed, _memory(resolve(row.get("memory"))), TIMING)
    _check(row, decision, resolve)
    _check_invariants(desired, observed, decision)


def desired_user_tags(desired: core.Desired) -> dict[str, str]:
    return {key: value for key, value in desired.tags.items() if key not in naming.SYSTEM_TAG_KEYS}


def test_names_are_unique() -> None:
    names = [row["name"] for row in SCENARIOS]
    assert len(names) == len(set(names))


def test_every_row_states_its_actions_and_conditions() -> None:
    for row in SCENARIOS:
        assert "actions" in row["expect"], row["name"]
        assert "conditions" in row["expect"] or row.get("op") == "finalize", row["name"]
