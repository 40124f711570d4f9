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
import threading
import time
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from mce_operator import core, metrics
from mce_operator.errors import ErrorKind

# The SageMaker adapter's error shape, outcomes and operation-to-method naming hold for this service too.
from mce_operator.sagemaker import (
    RateLimiter,
    SageMaker,
    SageMakerError,
    SageMakerSettings,
    _error,
    _method,
    _outcome,
)

SERVICE = "application-autoscaling"
NAMESPACE = "sagemaker"


class AutoScaling:
    def __init__(self, settings: SageMakerSettings | None = None, session: Any = None) -> None:
        settings = settings or SageMakerSettings()
        self.settings = settings
        self._session = session or boto3.session.Session()
        self._limiter = RateLimiter(settings.calls_per_second, settings.burst)
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def like(cls, sagemaker: SageMaker) -> AutoScaling:
        """The adapter with the SageMaker adapter's settings and boto3 session (its credentials)."""
        return cls(sagemaker.settings, sagemaker._session)

    def client(self, region: str | None) -> Any:
        region = region or self.settings.region
        try:
            with self._lock:
                if region not in self._clients:
                    config = botocore.config.Config(
                        retries={"mode": "standard", "total_max_attempts": self.settings.max_attempts},
                        connect_timeout=self.settings.connect_timeout,
                        read_timeout=self.settings.read_timeout,
                        user_agent_extra="mce-operator",
                    )
                    client = self._session.client(
                        SERVICE, region_name=region, endpoint_url=self.settings.endpoint_url, config=config
                    )
                    client.meta.events.register(
                        "before-send.application-autoscaling", lambda **_: self._limiter.acquire()
                    )
                    self._clients[region] = client
                return self._clients[region]
        except botocore.exceptions.BotoCoreError as error:
            metrics.sagemaker_failed()
            raise _error("client", region or "", error) from error

    def _call(self, client: Any, operation: str, name: str, **params: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            result: dict[str, Any] = getattr(client, _method(operation))(**params)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            failure = _error(operation, name, error)
            metrics.sagemaker_call(operation, _outcome(failure), time.monotonic() - started)
            raise failure from error
        metrics.sagemaker_call(operation, metrics.SUCCESS, time.monotonic() - started)
        return result

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
            page = self._call(client, operation, name, **params, **({"NextToken": token} if token else {}))
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
            self._call(client, action.operation, action.name, **dict(action.params))
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
