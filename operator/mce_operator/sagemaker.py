"""The SageMaker adapter: observes with Describe/List calls and carries out the core's actions with boto3.

It decides nothing. Clients use botocore's ``standard`` retry mode (throttles and 5xx are retried with
backoff inside one call), and a process-wide token bucket spaces every HTTP attempt so that many objects
reconciling at once stay under SageMaker's API quotas. ``AWS_ENDPOINT_URL_SAGEMAKER`` and the rest of
boto3's configuration chain (credentials, region) are honoured as boto3 does. Every call is reported to
``metrics`` (operation, outcome, duration), and so is every HTTP attempt SageMaker throttled.
"""

from __future__ import annotations

import dataclasses
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.useragent

from mce_operator import metrics, naming
from mce_operator.core import (
    BUSY,
    SAGEMAKER,
    Action,
    Decision,
    Desired,
    Observed,
    ObservedEndpoint,
    ObservedVariant,
    Tagged,
    Timing,
)
from mce_operator.errors import ErrorKind, Rule, classify

try:  # botocore >= 1.35.5x: the request context whose feature ids are part of the User-Agent header
    import botocore.context as _context
except ImportError:  # pragma: no cover - older botocore: no User-Agent cache (see cache_user_agent)
    _context = None


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
    """A token bucket shared by all clients of the process (thread-safe: the visits run in a pool of
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
    # Open connections kept per client: at least as many as looks run at once (kopf's max_workers).
    max_connections: int = 32
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


# Calls that make something new: safe without reading first (an "already exists" answer says whether the
# name was free). Every other action changes something that exists, whose owner is read first.
CREATES = frozenset({"CreateModel", "CreateEndpointConfig", "CreateEndpoint"})


@dataclass
class _Known:
    """The endpoint as this process last saw or made it."""

    arn: str
    # CreationTime as described; None until the first describe after this process created it. Another
    # endpoint made under the same name (same ARN) has another CreationTime.
    created: str | None
    tags: dict[str, str]
    # This process deleted it: its disappearance is expected.
    deleting: bool = False


@dataclass
class Recall:
    """What this process last read and did in SageMaker for one object: what a look need not read again.

    A look always describes the endpoint. It reads the models, configs and tags only when it cannot trust
    what it remembers: in a new process (nothing remembered), once ``drift`` seconds have passed since they
    were all read (jittered down by up to a quarter, so that objects created together do not all read at
    once: drift made out of band is found then), when the spec names other resources or tags, when the
    endpoint is not the one remembered (made again, moved to a config not remembered), and after any
    failed or surprising call. What the operator itself creates, tags or deletes is remembered as done,
    and before changing anything it did not just read, it reads that resource's tags again
    (:meth:`SageMaker.confirm`).
    """

    drift: float = Timing().drift
    valid: bool = False
    # The desired names and tags the remembered listing was made for.
    key: tuple[Any, ...] = ()
    # When every model, config and tag was last read, and when they will be read again (the adapter's clock).
    checked_at: float = 0.0
    due_at: float = 0.0
    # The endpoint (None: known absent), and every model and config with the endpoint's name prefix, by
    # lowercase name, whoever owns them.
    endpoint: _Known | None = None
    models: dict[str, Tagged] = field(default_factory=dict)
    configs: dict[str, Tagged] = field(default_factory=dict)
    # Config (lowercase) -> the models (lowercase) its variants use: a config's content never changes.
    served_by: dict[str, frozenset[str]] = field(default_factory=dict)
    # During one look: the ARNs whose tags it read, and whether it listed the models and configs.
    fresh: set[str] = field(default_factory=set)
    listed: bool = False

    def forget(self) -> None:
        """Trust nothing remembered: the next look reads everything."""
        self.valid = False

    def _restart(self, key: tuple[Any, ...], now: float) -> None:
        self.key = key
        self.checked_at = now
        self.due_at = now + self.drift * (1 - 0.25 * random.random())  # not a secret: a spread
        self.endpoint = None
        self.models, self.configs, self.served_by = {}, {}, {}

    def _tags_of(self, arn: str) -> dict[str, str] | None:
        if self.endpoint is not None and self.endpoint.arn == arn:
            return self.endpoint.tags
        for item in (*self.models.values(), *self.configs.values()):
            if item.arn == arn:
                return dict(item.tags)
        return None

    def _set_tags(self, arn: str, tags: dict[str, str]) -> None:
        if self.endpoint is not None and self.endpoint.arn == arn:
            self.endpoint.tags = tags
        for items in (self.models, self.configs):
            for name, item in items.items():
                if item.arn == arn:
                    items[name] = dataclasses.replace(item, tags=tags)


def _key(desired: Desired, region: str | None) -> tuple[Any, ...]:
    identity = desired.identity
    return (
        region,
        desired.endpoint_name.lower(),
        desired.model_name.lower(),
        desired.config_name.lower(),
        tuple(sorted(desired.tags.items())),
        identity.namespace,
        identity.name,
        identity.uid,
        identity.adopt,
    )


class Clients:
    """One boto3 client per region for one AWS service, made on first use with the adapters' shared
    settings (retries, timeouts, connections, endpoint URL), and a token bucket for the service's calls."""

    def __init__(self, service: str, settings: SageMakerSettings, session: Any) -> None:
        self.service = service
        self.settings = settings
        self.session = session
        self._limiter = RateLimiter(settings.calls_per_second, settings.burst)
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def get(self, region: str | None) -> Any:
        try:
            with self._lock:
                if region not in self._clients:
                    self._clients[region] = self._make(region)
                return self._clients[region]
        except botocore.exceptions.BotoCoreError as error:
            # No region configured, an invalid one, unreadable AWS config: a SageMakerError like any
            # other, so it shows in the object's status instead of escaping as a crash.
            metrics.sagemaker_failed()
            raise _error("client", region or "", error) from error

    def _make(self, region: str | None) -> Any:
        config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": self.settings.max_attempts},
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            max_pool_connections=self.settings.max_connections,
            user_agent_extra="mce-operator",
        )
        client = self.session.client(
            self.service, region_name=region, endpoint_url=self.settings.endpoint_url, config=config
        )
        client.meta.events.register(f"before-send.{self.service}", self._before_send)
        client.meta.events.register(f"response-received.{self.service}", _response_received)
        cache_user_agent(client)
        return client

    def _before_send(self, **_: Any) -> None:
        # Every HTTP attempt, retries included, takes a token: retries count against the quota too.
        self._limiter.acquire()


# Distinct feature sets a client's requests carry: a handful in practice (one per operation or so).
_USER_AGENTS_KEPT = 64


def cache_user_agent(client: Any) -> bool:
    """Make ``client`` build each distinct User-Agent header once, not twice per request.

    Why: botocore builds the header from scratch for every request, twice (in ``_convert_to_request_dict``
    and again in its ``request-created`` handler), sanitising a dozen components character by character:
    ~65 us a build here, a tenth of the CPU of a whole call against the emulator (DescribeEndpoint,
    ListTags, CreateModel: 12-20% less CPU per call with this cache, measured in one process with the
    clients' batches interleaved). What it reads is fixed once the client exists (platform, session, client
    config, the client's features) except the feature ids registered in botocore's context by the request
    under way, so the string is kept per (client features, request features) pair: the header sent is
    byte for byte botocore's own (tests/integration/test_adapter.py compares them).

    Guarded, since ``_user_agent_creator`` is botocore's private: only a ``UserAgentString`` with a
    ``to_string`` method (botocore 1.44's shape) is touched, by shadowing that method on this client's own
    copy of it (``rebuild_and_replace_user_agent_handler`` calls it too). Anything else is left as botocore
    made it, and False returned."""
    creator = getattr(client, "_user_agent_creator", None)
    build = getattr(creator, "to_string", None)
    if _context is None or not isinstance(creator, botocore.useragent.UserAgentString) or not callable(build):
        return False
    if "to_string" in getattr(creator, "__dict__", {}):
        return True  # cached already
    strings: dict[tuple[frozenset[str], frozenset[str]], str] = {}

    def to_string() -> str:
        context = _context.get_context()
        features = getattr(context, "features", None)
        if context is not None and not isinstance(features, set):
            return str(build())  # a context of another shape: no safe key
        key = (frozenset(getattr(creator, "_client_features", None) or ()), frozenset(features or ()))
        found = strings.get(key)
        if found is None:
            found = str(build())
            if len(strings) < _USER_AGENTS_KEPT:
                strings[key] = found
        return found

    try:
        creator.to_string = to_string
    except AttributeError:  # slots: nowhere to put it
        return False
    return True


def _response_received(event_name: str, parsed_response: Any = None, **_: Any) -> None:
    # Every HTTP attempt: throttles that botocore retries successfully show nowhere else.
    details = (parsed_response or {}).get("Error") or {}
    code = str(details.get("Code") or "")
    if code and classify(code, str(details.get("Message") or "")).reason == THROTTLED:
        metrics.throttled_attempt(event_name.rsplit(".", 1)[-1])


def call(client: Any, operation: str, name: str, **params: Any) -> dict[str, Any]:
    """One API call, reported to the metrics by operation and outcome; any failure as a SageMakerError."""
    started = time.monotonic()
    try:
        result: dict[str, Any] = getattr(client, _method(operation))(**params)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        failure = _error(operation, name, error)
        metrics.sagemaker_call(operation, _outcome(failure), time.monotonic() - started)
        raise failure from error
    metrics.sagemaker_call(operation, metrics.SUCCESS, time.monotonic() - started)
    return result


class SageMaker:
    def __init__(
        self,
        settings: SageMakerSettings = SageMakerSettings(),
        session: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._session = session or boto3.session.Session()
        self._clients = Clients("sagemaker", settings, self._session)
        self._clock = clock

    def default_region(self) -> str | None:
        """The region of objects without spec.region: the setting, else boto3's own resolution."""
        region: str | None = self.client(None).meta.region_name
        return region

    def start(self) -> None:
        """Make the default region's client now (loading botocore's SageMaker model takes a fifth of a
        second), not in the first look, which would keep every other look waiting on it."""
        self.client(None)

    def _region(self, region: str | None) -> str | None:
        # One client per actual region: an object without spec.region and its own ARN's region are one.
        return region or self.settings.region or self._session.region_name or None

    def client(self, region: str | None) -> Any:
        return self._clients.get(self._region(region))

    # --- observing ------------------------------------------------------------------------------

    def _tags(self, client: Any, arn: str, name: str) -> dict[str, str] | None:
        tags: dict[str, str] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"ResourceArn": arn, "MaxResults": 100}
            if token:
                params["NextToken"] = token
            try:
                page = call(client, "ListTags", name, **params)
            except SageMakerError as error:
                if error.kind is ErrorKind.NOT_FOUND:
                    return None
                raise
            tags.update({item["Key"]: item["Value"] for item in page.get("Tags", [])})
            token = page.get("NextToken")
            if not token:
                return tags

    def _listed(self, client: Any, operation: str, key: str, endpoint_name: str) -> Iterator[tuple[str, str]]:
        prefix = naming.name_prefix(endpoint_name)
        token: str | None = None
        name_key, arn_key = key.removesuffix("s") + "Name", key.removesuffix("s") + "Arn"
        while True:
            params: dict[str, Any] = {"NameContains": prefix, "MaxResults": 100}
            if token:
                params["NextToken"] = token
            page = call(client, operation, prefix, **params)
            for item in page.get(key, []):
                if naming.is_child_name(endpoint_name, item[name_key]):
                    yield item[name_key], item[arn_key]
            token = page.get("NextToken")
            if not token:
                return

    def _tagged(self, client: Any, operation: str, key: str, endpoint_name: str) -> list[Tagged]:
        found = []
        for name, arn in self._listed(client, operation, key, endpoint_name):
            tags = self._tags(client, arn, name)
            if tags is not None:
                found.append(Tagged(name=name, arn=arn, tags=tags))
        return found

    def _describe(self, client: Any, name: str) -> dict[str, Any] | None:
        try:
            return call(client, "DescribeEndpoint", name, EndpointName=name)
        except SageMakerError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise
        return None

    def observe(
        self,
        desired: Desired,
        recall: Recall | None = None,
        *,
        deleting: bool = False,
        untouched: bool = False,
    ) -> Observed:
        """The endpoint, and the models and configs named after it.

        Without ``recall``, everything is read. With it, only the endpoint is described when the rest can
        be trusted (see :class:`Recall`), and what is read is remembered. ``untouched``: the operator has
        never acted for this object (its status names no endpoint), so when there is no endpoint nothing
        of its own can exist and nothing is listed. ``deleting``: every owned model and config may be
        deleted, so what the endpoint serves is always read in full."""
        client = self.client(desired.region)
        described = self._describe(client, desired.endpoint_name)
        recall = recall if recall is not None else Recall()
        recall.fresh, recall.listed = set(), False
        now = self._clock()
        key = _key(desired, self._region(desired.region))
        if not recall.valid and untouched and described is None:
            recall._restart(key, now)
            recall.valid = True
        full = not recall.valid or now >= recall.due_at
        if full:
            recall.valid = False  # until every read below has succeeded
        same = not full and self._same_endpoint(recall, described)
        endpoint = self._endpoint(client, described, recall, trust=same)
        identity = desired.identity
        owned = endpoint is not None and naming.names_owner(
            endpoint.tags, identity.namespace, identity.name, identity.uid, adopt=identity.adopt
        )
        if endpoint is not None and owned and (endpoint.status in BUSY or deleting):
            # The only possible decisions are to wait or to delete the endpoint (or, for a foreign one, to
            # refuse): listing models and configs and reading their tags would be wasted calls.
            self._remember_endpoint(recall, described, endpoint)
            return Observed(endpoint=endpoint)
        if full:
            recall._restart(key, now)
            self._list(client, desired, recall, trust=False)
        elif recall.key != key or not same or not self._configs_known(recall, described):
            self._list(client, desired, recall, trust=True)
            recall.key = key
        self._remember_endpoint(recall, described, endpoint)
        recall.valid = True
        models, configs = list(recall.models.values()), list(recall.configs.values())
        served: set[str] = set()
        if described is not None:
            keep = set() if deleting else {desired.model_name.lower(), desired.config_name.lower()}
            served = self._served(client, described, keep, [*models, *configs], recall, cached=not full)
        return Observed(endpoint=endpoint, models=models, configs=configs, served=frozenset(served))

    @staticmethod
    def _same_endpoint(recall: Recall, described: Mapping[str, Any] | None) -> bool:
        """Whether the endpoint is the one remembered (or gone as expected)."""
        known = recall.endpoint
        if described is None:
            return known is None or known.deleting
        if known is None or described.get("EndpointArn") != known.arn:
            return False
        created = str(described.get("CreationTime"))
        if known.created is None:
            known.created = created  # the one this process made: first described now
        return known.created == created

    @staticmethod
    def _configs_known(recall: Recall, described: Mapping[str, Any] | None) -> bool:
        """Whether every config the endpoint uses or moves to is remembered."""
        if described is None:
            return True
        pending = described.get("PendingDeploymentSummary") or {}
        names = {described.get("EndpointConfigName") or "", pending.get("EndpointConfigName") or ""}
        return all(name.lower() in recall.configs for name in names if name)

    def _endpoint(
        self, client: Any, described: Mapping[str, Any] | None, recall: Recall, *, trust: bool
    ) -> ObservedEndpoint | None:
        if described is None:
            return None
        if trust and recall.endpoint is not None:
            tags: dict[str, str] | None = recall.endpoint.tags
        else:
            tags = self._tags(client, described["EndpointArn"], described["EndpointName"])
            recall.fresh.add(described["EndpointArn"])
        if tags is None:
            return None
        return ObservedEndpoint(
            name=described["EndpointName"],
            arn=described["EndpointArn"],
            status=described["EndpointStatus"],
            config_name=described.get("EndpointConfigName", ""),
            failure_reason=described.get("FailureReason", "") or "",
            tags=dict(tags),
            variants=_variants(described),
            deployment_phase=_deployment_phase(described),
        )

    @staticmethod
    def _remember_endpoint(
        recall: Recall, described: Mapping[str, Any] | None, endpoint: ObservedEndpoint | None
    ) -> None:
        if described is None or endpoint is None:
            recall.endpoint = None
            return
        known = recall.endpoint
        created = str(described.get("CreationTime"))
        deleting = (
            known is not None and known.deleting and known.arn == endpoint.arn and known.created == created
        )
        recall.endpoint = _Known(
            arn=endpoint.arn, created=created, tags=dict(endpoint.tags), deleting=deleting
        )

    def _list(self, client: Any, desired: Desired, recall: Recall, *, trust: bool) -> None:
        """List the models and configs; read the tags of those not remembered (of all unless ``trust``)."""
        for operation, key, known in (
            ("ListModels", "Models", recall.models),
            ("ListEndpointConfigs", "EndpointConfigs", recall.configs),
        ):
            found: dict[str, Tagged] = {}
            for name, arn in self._listed(client, operation, key, desired.endpoint_name):
                remembered = known.get(name.lower())
                if trust and remembered is not None and remembered.arn == arn:
                    found[name.lower()] = remembered
                    continue
                tags = self._tags(client, arn, name)
                recall.fresh.add(arn)
                if tags is not None:
                    found[name.lower()] = Tagged(name=name, arn=arn, tags=tags)
            known.clear()
            known.update(found)
        recall.served_by = {k: v for k, v in recall.served_by.items() if k in recall.configs}
        recall.listed = True

    def _served(
        self,
        client: Any,
        described: Mapping[str, Any],
        keep: set[str],
        listed: Sequence[Tagged],
        recall: Recall,
        *,
        cached: bool,
    ) -> set[str]:
        """The configs (current and pending) the endpoint uses and the models in them, lowercase. The
        configs' models are read only when something besides what is kept anyway (the desired model
        and config) exists, i.e. when the core might delete something: a steady object costs no call;
        and, with ``cached``, only when not remembered."""
        configs = {described.get("EndpointConfigName") or ""}
        pending = described.get("PendingDeploymentSummary") or {}
        configs.add(pending.get("EndpointConfigName") or "")
        configs.discard("")
        served = {name.lower() for name in configs}
        if all(item.name.lower() in keep | served for item in listed):
            return served
        for config in configs:
            remembered = recall.served_by.get(config.lower()) if cached else None
            if remembered is not None:
                served |= remembered
                continue
            try:
                page = call(client, "DescribeEndpointConfig", config, EndpointConfigName=config)
            except SageMakerError as error:
                if error.kind is ErrorKind.NOT_FOUND:
                    continue
                raise
            models = frozenset(
                str(variant.get("ModelName", "")).lower() for variant in page.get("ProductionVariants", [])
            )
            recall.served_by[config.lower()] = models
            served |= models
        return served

    def variant_instance_types(self, region: str | None, config: str) -> dict[str, str] | None:
        """The instance type of each production variant of an endpoint config; None if it is gone."""
        try:
            page = call(self.client(region), "DescribeEndpointConfig", config, EndpointConfigName=config)
        except SageMakerError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return {
            str(variant["VariantName"]): str(variant.get("InstanceType", ""))
            for variant in page.get("ProductionVariants", [])
        }

    def decide(
        self,
        desired: Desired,
        recall: Recall | None,
        decide: Callable[[Observed], Decision],
        *,
        deleting: bool = False,
        untouched: bool = False,
    ) -> tuple[Observed, Decision]:
        """Observe, let ``decide`` choose, and confirm the owner of whatever the decision changes; when a
        confirmation fails, observe everything afresh and choose again (that second decision stands on
        fresh reads only)."""
        for _ in range(3):
            observed = self.observe(desired, recall, deleting=deleting, untouched=untouched)
            decision = decide(observed)
            if self.confirm(desired.region, decision.actions, recall):
                return observed, decision
        # Only if owners change between two reads of one look, again and again.
        raise SageMakerError("confirm", desired.endpoint_name, "OwnersChanging", "tags kept changing")

    def confirm(self, region: str | None, actions: Sequence[Action], recall: Recall | None) -> bool:
        """Before changing anything this look did not read: read its tags (its owner) again. False when
        they are not what was remembered: the recall is dropped, and the look must be made again."""
        if recall is None:
            return True
        client = self.client(region)
        for action in actions:
            arn = self._target(action, recall)
            if arn is None or arn in recall.fresh:
                continue
            tags = self._tags(client, arn, action.name)
            if tags is None or tags != recall._tags_of(arn):
                recall.forget()
                return False
            recall.fresh.add(arn)
        return True

    @staticmethod
    def _target(action: Action, recall: Recall) -> str | None:
        """The ARN of what an action changes, as remembered (None: a creation, or nothing remembered). An
        Application Auto Scaling call changes the endpoint's variants: the endpoint's owner is read."""
        if action.operation in CREATES and action.service == SAGEMAKER:
            return None
        if "ResourceArn" in action.params:
            return str(action.params["ResourceArn"])
        if action.operation in ("UpdateEndpoint", "DeleteEndpoint") or action.service != SAGEMAKER:
            return recall.endpoint.arn if recall.endpoint is not None else None
        items = recall.models if action.operation == "DeleteModel" else recall.configs
        item = items.get(action.name.lower())
        return item.arn if item is not None else None

    # --- acting ---------------------------------------------------------------------------------

    def execute(self, region: str | None, action: Action, recall: Recall | None = None) -> None:
        """Carry out one action, and remember its outcome in ``recall``. Repeating it after a crash is
        safe: a delete that finds nothing counts as done, and so does a create that finds its own name
        taken when this look listed what exists (else the name may be someone else's: the recall is
        dropped and the "already exists" error raised, for a look that reads everything)."""
        client = self.client(region)
        try:
            result = call(client, action.operation, action.name, **dict(action.params))
        except SageMakerError as error:
            if error.kind is ErrorKind.NOT_FOUND and action.operation.startswith("Delete"):
                self._remember(recall, action, {})
                return
            if recall is not None:
                # Whatever happened (it may even have been done), it is not known: read it all again.
                recall.forget()
            listed = recall is None or recall.listed
            if error.kind is ErrorKind.EXISTS and action.operation in CREATES and listed:
                return
            raise
        self._remember(recall, action, result)

    @staticmethod
    def _remember(recall: Recall | None, action: Action, result: Mapping[str, Any]) -> None:
        """What the action made true, as a read would now show it."""
        if recall is None:
            return
        params, name = action.params, action.name.lower()
        tags = {item["Key"]: item["Value"] for item in params.get("Tags") or []}
        operation = action.operation
        if operation == "CreateModel":
            recall.models[name] = Tagged(name=action.name, arn=str(result["ModelArn"]), tags=tags)
        elif operation == "CreateEndpointConfig":
            arn = str(result["EndpointConfigArn"])
            recall.configs[name] = Tagged(name=action.name, arn=arn, tags=tags)
            variants = params.get("ProductionVariants") or []
            recall.served_by[name] = frozenset(str(v.get("ModelName", "")).lower() for v in variants)
        elif operation == "CreateEndpoint":
            recall.endpoint = _Known(arn=str(result["EndpointArn"]), created=None, tags=tags)
        elif operation == "DeleteEndpoint" and recall.endpoint is not None:
            recall.endpoint.deleting = True
        elif operation == "DeleteModel":
            recall.models.pop(name, None)
        elif operation == "DeleteEndpointConfig":
            recall.configs.pop(name, None)
            recall.served_by.pop(name, None)
        elif operation in ("AddTags", "DeleteTags"):
            arn = str(params["ResourceArn"])
            current = recall._tags_of(arn)
            if current is None:
                recall.forget()
                return
            if operation == "AddTags":
                current.update(tags)
            else:
                for key in params.get("TagKeys") or []:
                    current.pop(key, None)
            recall._set_tags(arn, dict(current))
            recall.fresh.add(arn)

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
