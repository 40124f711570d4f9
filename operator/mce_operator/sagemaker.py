"""The SageMaker adapter: observes with Describe/List calls and carries out the core's actions with boto3.

It decides nothing. Clients use botocore's ``standard`` retry mode (throttles and 5xx are retried with
backoff inside one call), and a process-wide token bucket spaces every HTTP attempt so that many objects
reconciling at once stay under SageMaker's API quotas. ``AWS_ENDPOINT_URL_SAGEMAKER`` and the rest of
boto3's configuration chain (credentials, region) are honoured as boto3 does. Every call is reported to
``metrics`` (operation, outcome, duration), and so is every HTTP attempt SageMaker throttled.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from mce_operator import metrics, naming
from mce_operator.core import BUSY, Action, Desired, Observed, ObservedEndpoint, ObservedVariant, Tagged
from mce_operator.errors import ErrorKind, Rule, classify


class SageMakerError(Exception):
    """A SageMaker call failed; ``rule`` says what that means (terminal, retry, not found, exists)."""

    def __init__(self, operation: str, name: str, code: str, message: str) -> None:
        self.operation = operation
        self.name = name
        self.code = code
        self.message = message
        self.rule: Rule = classify(code, message)
        super().__init__(f"{operation} {name}: {code}: {message}")

    @property
    def kind(self) -> ErrorKind:
        return self.rule.kind


class RateLimiter:
    """A token bucket shared by all clients of the process (thread-safe: kopf runs sync handlers in
    threads)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self.rate <= 0:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            time.sleep(wait)


@dataclass(frozen=True)
class SageMakerSettings:
    region: str | None = None
    # None: boto3's own resolution (AWS_ENDPOINT_URL_SAGEMAKER, config files, the public endpoint).
    endpoint_url: str | None = None
    # Tries per call in all, the first included (botocore's total_max_attempts; its max_attempts would
    # count retries only).
    max_attempts: int = 5
    calls_per_second: float = 10.0
    burst: int = 20
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


def _outcome(error: SageMakerError) -> str:
    if error.kind is ErrorKind.NOT_FOUND:
        return metrics.NOT_FOUND
    if error.kind is ErrorKind.EXISTS:
        return metrics.ALREADY_EXISTS
    return metrics.THROTTLED if error.rule.reason == THROTTLED else metrics.ERROR


def _error(operation: str, name: str, error: Exception) -> SageMakerError:
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        return SageMakerError(operation, name, str(details.get("Code", "")), str(details.get("Message", "")))
    return SageMakerError(operation, name, type(error).__name__, str(error))


# errors.py's reason for every throttling code SageMaker and botocore use.
THROTTLED = "Throttled"

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _method(operation: str) -> str:
    return _CAMEL.sub("_", operation).lower()


def _variants(described: Mapping[str, Any]) -> tuple[ObservedVariant, ...]:
    return tuple(
        ObservedVariant(
            name=str(variant["VariantName"]),
            desired_instance_count=variant.get("DesiredInstanceCount"),
            current_instance_count=variant.get("CurrentInstanceCount"),
        )
        for variant in described.get("ProductionVariants") or []
    )


def _deployment_phase(described: Mapping[str, Any]) -> str:
    """What a deployment in progress is doing, from its new fleet's VariantStatus (blue/green, rolling)."""
    pending = described.get("PendingDeploymentSummary") or {}
    phases = [
        f"{status.get('Status')}: {status.get('StatusMessage')}"
        if status.get("StatusMessage")
        else status["Status"]
        for variant in pending.get("ProductionVariants") or []
        for status in variant.get("VariantStatus") or []
        if status.get("Status")
    ]
    return "; ".join(phases)


class SageMaker:
    def __init__(self, settings: SageMakerSettings = SageMakerSettings(), session: Any = None) -> None:
        self.settings = settings
        self._session = session or boto3.session.Session()
        self._limiter = RateLimiter(settings.calls_per_second, settings.burst)
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def default_region(self) -> str | None:
        """The region of objects without spec.region: the setting, else boto3's own resolution."""
        region: str | None = self.client(None).meta.region_name
        return region

    def client(self, region: str | None) -> Any:
        region = region or self.settings.region
        try:
            return self._client(region)
        except botocore.exceptions.BotoCoreError as error:
            # No region configured, an invalid one, unreadable AWS config: a SageMakerError like any
            # other, so it shows in the object's status instead of escaping as a crash.
            metrics.sagemaker_failed()
            raise _error("client", region or "", error) from error

    def _client(self, region: str | None) -> Any:
        with self._lock:
            if region not in self._clients:
                config = botocore.config.Config(
                    retries={"mode": "standard", "total_max_attempts": self.settings.max_attempts},
                    connect_timeout=self.settings.connect_timeout,
                    read_timeout=self.settings.read_timeout,
                    user_agent_extra="mce-operator",
                )
                client = self._session.client(
                    "sagemaker", region_name=region, endpoint_url=self.settings.endpoint_url, config=config
                )
                client.meta.events.register("before-send.sagemaker", self._before_send)
                client.meta.events.register("response-received.sagemaker", self._response_received)
                self._clients[region] = client
            return self._clients[region]

    def _before_send(self, **_: Any) -> None:
        # Every HTTP attempt, retries included, takes a token: retries count against the quota too.
        self._limiter.acquire()

    @staticmethod
    def _response_received(event_name: str, parsed_response: Any = None, **_: Any) -> None:
        # Every HTTP attempt: throttles that botocore retries successfully show nowhere else.
        details = (parsed_response or {}).get("Error") or {}
        code = str(details.get("Code") or "")
        if code and classify(code, str(details.get("Message") or "")).reason == THROTTLED:
            metrics.throttled_attempt(event_name.rsplit(".", 1)[-1])

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

    def _tags(self, client: Any, arn: str, name: str) -> dict[str, str] | None:
        tags: dict[str, str] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"ResourceArn": arn, "MaxResults": 100}
            if token:
                params["NextToken"] = token
            try:
                page = self._call(client, "ListTags", name, **params)
            except SageMakerError as error:
                if error.kind is ErrorKind.NOT_FOUND:
                    return None
                raise
            tags.update({item["Key"]: item["Value"] for item in page.get("Tags", [])})
            token = page.get("NextToken")
            if not token:
                return tags

    def _list(self, client: Any, operation: str, key: str, endpoint_name: str) -> Iterator[tuple[str, str]]:
        prefix = naming.name_prefix(endpoint_name)
        token: str | None = None
        name_key, arn_key = key.removesuffix("s") + "Name", key.removesuffix("s") + "Arn"
        while True:
            params: dict[str, Any] = {"NameContains": prefix, "MaxResults": 100}
            if token:
                params["NextToken"] = token
            page = self._call(client, operation, prefix, **params)
            for item in page.get(key, []):
                if naming.is_child_name(endpoint_name, item[name_key]):
                    yield item[name_key], item[arn_key]
            token = page.get("NextToken")
            if not token:
                return

    def _tagged(self, client: Any, operation: str, key: str, endpoint_name: str) -> list[Tagged]:
        found = []
        for name, arn in self._list(client, operation, key, endpoint_name):
            tags = self._tags(client, arn, name)
            if tags is not None:
                found.append(Tagged(name=name, arn=arn, tags=tags))
        return found

    def observe(self, desired: Desired, *, deleting: bool = False) -> Observed:
        """The endpoint, and the models and configs named after it. ``deleting``: every owned model and
        config may be deleted, so what the endpoint serves is always read in full."""
        client = self.client(desired.region)
        endpoint: ObservedEndpoint | None = None
        try:
            described = self._call(
                client, "DescribeEndpoint", desired.endpoint_name, EndpointName=desired.endpoint_name
            )
        except SageMakerError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise
        else:
            tags = self._tags(client, described["EndpointArn"], desired.endpoint_name)
            if tags is not None:
                endpoint = ObservedEndpoint(
                    name=described["EndpointName"],
                    arn=described["EndpointArn"],
                    status=described["EndpointStatus"],
                    config_name=described.get("EndpointConfigName", ""),
                    failure_reason=described.get("FailureReason", "") or "",
                    tags=tags,
                    variants=_variants(described),
                    deployment_phase=_deployment_phase(described),
                )
        identity = desired.identity
        owned = endpoint is not None and naming.names_owner(
            endpoint.tags, identity.namespace, identity.name, identity.uid, adopt=identity.adopt
        )
        if endpoint is not None and owned and endpoint.status in BUSY:
            # While SageMaker is busy the only possible decision is to wait (or, for a foreign endpoint,
            # to refuse): listing models and configs and reading their tags would be wasted calls.
            return Observed(endpoint=endpoint)
        models = self._tagged(client, "ListModels", "Models", desired.endpoint_name)
        configs = self._tagged(client, "ListEndpointConfigs", "EndpointConfigs", desired.endpoint_name)
        served: set[str] = set()
        if endpoint is not None:
            keep = set() if deleting else {desired.model_name.lower(), desired.config_name.lower()}
            served = self._served(client, described, keep, [*models, *configs])
        return Observed(endpoint=endpoint, models=models, configs=configs, served=frozenset(served))

    def _served(
        self, client: Any, described: Mapping[str, Any], keep: set[str], listed: list[Tagged]
    ) -> set[str]:
        """The configs (current and pending) the endpoint uses and the models in them, lowercase. The
        configs' models are read only when something besides what is kept anyway (the desired model
        and config) exists, i.e. when the core might delete something: a steady object costs no call."""
        configs = {described.get("EndpointConfigName") or ""}
        pending = described.get("PendingDeploymentSummary") or {}
        configs.add(pending.get("EndpointConfigName") or "")
        configs.discard("")
        served = {name.lower() for name in configs}
        if all(item.name.lower() in keep | served for item in listed):
            return served
        for config in configs:
            try:
                page = self._call(client, "DescribeEndpointConfig", config, EndpointConfigName=config)
            except SageMakerError as error:
                if error.kind is ErrorKind.NOT_FOUND:
                    continue
                raise
            served |= {
                str(variant.get("ModelName", "")).lower() for variant in page.get("ProductionVariants", [])
            }
        return served

    def variant_instance_types(self, region: str | None, config: str) -> dict[str, str] | None:
        """The instance type of each production variant of an endpoint config; None if it is gone."""
        try:
            page = self._call(
                self.client(region), "DescribeEndpointConfig", config, EndpointConfigName=config
            )
        except SageMakerError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return {
            str(variant["VariantName"]): str(variant.get("InstanceType", ""))
            for variant in page.get("ProductionVariants", [])
        }

    # --- acting ---------------------------------------------------------------------------------

    def execute(self, region: str | None, action: Action) -> None:
        """Carry out one action. Repeating it after a crash is safe: a create that finds its own name
        taken and a delete that finds nothing both count as done."""
        client = self.client(region)
        try:
            self._call(client, action.operation, action.name, **dict(action.params))
        except SageMakerError as error:
            if error.kind is ErrorKind.NOT_FOUND and action.operation.startswith("Delete"):
                return
            if error.kind is ErrorKind.EXISTS and action.operation.startswith("Create"):
                return
            raise

    # --- previewing -----------------------------------------------------------------------------

    def observe_all(self, desired: Desired) -> Observed:
        """observe(), but with the models and configs listed even while the endpoint is busy, when the
        operator itself skips them (it can only wait then). For a preview of what it will do once
        SageMaker is done (kubectl mce diff)."""
        observed = self.observe(desired)
        endpoint = observed.endpoint
        if endpoint is None or endpoint.status not in BUSY or observed.models or observed.configs:
            return observed
        client = self.client(desired.region)
        return dataclasses.replace(
            observed,
            models=self._tagged(client, "ListModels", "Models", desired.endpoint_name),
            configs=self._tagged(client, "ListEndpointConfigs", "EndpointConfigs", desired.endpoint_name),
        )
