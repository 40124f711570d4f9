"""The Application Auto Scaling adapter: observes an endpoint's scalable targets and carries out the core's
autoscaling actions with boto3's ``application-autoscaling`` client.

It decides nothing, like the SageMaker adapter beside it, whose settings it shares (region, retries,
timeouts, the per-call rate; a given ``endpoint_url`` serves both, as the emulator does). Without one,
boto3's own resolution applies, ``AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING`` included. Its calls have a
token bucket of their own (Application Auto Scaling's quotas are not SageMaker's) and are reported to
``metrics`` under their operation names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3

from mce_operator import core
from mce_operator.errors import ErrorKind

# The SageMaker adapter's clients (settings shared, a token bucket per service), call reporting and errors.
from mce_operator.sagemaker import Clients, SageMaker, SageMakerError, SageMakerSettings, call

SERVICE = "application-autoscaling"
NAMESPACE = "sagemaker"


class AutoScaling:
    def __init__(self, settings: SageMakerSettings | None = None, session: Any = None) -> None:
        settings = settings or SageMakerSettings()
        self.settings = settings
        self._clients = Clients(SERVICE, settings, session or boto3.session.Session())

    @classmethod
    def like(cls, sagemaker: SageMaker) -> AutoScaling:
        """The adapter with the SageMaker adapter's settings and boto3 session (its credentials)."""
        return cls(sagemaker.settings, sagemaker._session)

    def client(self, region: str | None) -> Any:
        return self._clients.get(region or self.settings.region)

    # --- observing ------------------------------------------------------------------------------

    def observe(
        self, desired: core.Desired, observed: core.Observed, *, remembered: bool, sagemaker: SageMaker
    ) -> core.Observed:
        """``observed`` with the endpoint's scalable targets, looked at only when a decision may need them:
        the spec or the status (``remembered``) has autoscaling, and the endpoint is not busy (the core
        then only waits). Their absence needs no call when there is no endpoint: deleting an endpoint
        deregisters its targets. When a target is registered and the endpoint is about to move to another
        config, the served config's instance types too (an update changing them needs a deregistration)."""
        endpoint = observed.endpoint
        if desired.autoscaling is None and not remembered:
            return observed
        if endpoint is None:
            return dataclasses.replace(observed, scaling=())
        if endpoint.status in core.BUSY:
            return observed
        client = self.client(desired.region)
        # The live variants, and the one the spec wants (a target may outlive a renamed variant).
        variants = {variant.name for variant in endpoint.variants} | {desired.variant_name} - {""}
        resources = {core.resource_id(endpoint.name, variant): variant for variant in variants}
        targets = []
        for item in self._pages(
            client,
            "DescribeScalableTargets",
            "ScalableTargets",
            endpoint.name,
            ServiceNamespace=NAMESPACE,
            ResourceIds=sorted(resources),
            ScalableDimension=core.SCALABLE_DIMENSION,
        ):
            resource = str(item["ResourceId"])
            policies = {
                str(policy["PolicyName"]): _configuration(policy)
                for policy in self._pages(
                    client,
                    "DescribeScalingPolicies",
                    "ScalingPolicies",
                    resource,
                    ServiceNamespace=NAMESPACE,
                    ResourceId=resource,
                    ScalableDimension=core.SCALABLE_DIMENSION,
                )
            }
            targets.append(
                core.ScalableTarget(
                    variant=resources.get(resource, resource.rsplit("/", 1)[-1]),
                    resource_id=resource,
                    min_capacity=int(item["MinCapacity"]),
                    max_capacity=int(item["MaxCapacity"]),
                    policies=policies,
                )
            )
        types = None
        if targets and endpoint.config_name.lower() != desired.config_name.lower():
            types = sagemaker.variant_instance_types(desired.region, endpoint.config_name)
        return dataclasses.replace(observed, scaling=tuple(targets), serving_instance_types=types)

    def _pages(self, client: Any, operation: str, key: str, name: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = call(client, operation, name, **params, **({"NextToken": token} if token else {}))
            items += page.get(key, [])
            token = page.get("NextToken")
            if not token:
                return items

    # --- acting ---------------------------------------------------------------------------------

    def execute(self, region: str | None, action: core.Action) -> None:
        """Carry out one action. Register and put are upserts; a delete or deregistration that finds
        nothing counts as done, so repeating an action after a crash is safe."""
        client = self.client(region)
        try:
            call(client, action.operation, action.name, **dict(action.params))
        except SageMakerError as error:
            if error.kind is ErrorKind.NOT_FOUND and action.operation.startswith(("Delete", "Deregister")):
                return
            raise


def _configuration(policy: dict[str, Any]) -> dict[str, Any]:
    """A policy's configuration, whichever its type (target tracking for the operator's own)."""
    for key in (
        "TargetTrackingScalingPolicyConfiguration",
        "StepScalingPolicyConfiguration",
        "PredictiveScalingPolicyConfiguration",
    ):
        if key in policy:
            return dict(policy[key])
    return {}
