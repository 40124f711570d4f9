"""The emulated services behind the HTTP server (SageMaker and the Application Auto Scaling it uses): one lock
around their state, the faults and the call log."""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from . import autoscaling
from .autoscaling import AutoScalingState
from .errors import ServiceError, access_denied, runtime_validation, server_error, throttling
from .faults import Fault, FaultSet
from .runtime import MAX_BODY, Invocation, choose_variant, run
from .state import OPERATIONS, Delays, Json, SageMakerState, operation_method
from .validation import ShapeValidator

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
DEFAULT_DELAY = 0.5
SERVING = frozenset({"InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"})
_NAME_MEMBERS = ("EndpointName", "EndpointConfigName", "ModelName", "ResourceArn", "ResourceId")
# The JSON 1.1 target prefixes served, by the botocore service model that describes them.
SAGEMAKER = "sagemaker"
AUTOSCALING = "application-autoscaling"
TARGET_PREFIXES = {"SageMaker": SAGEMAKER, "AnyScaleFrontendService": AUTOSCALING}
# What IAM's refusals name (sagemaker:CreateModel, application-autoscaling:RegisterScalableTarget).
_OPERATIONS = {SAGEMAKER: OPERATIONS, AUTOSCALING: autoscaling.OPERATIONS}

_validators: dict[str, ShapeValidator] = {}
_validators_lock = threading.Lock()


def shared_validator(service: str = SAGEMAKER) -> ShapeValidator:
    """Loading a botocore service model takes a while: load each once per process."""
    with _validators_lock:
        if service not in _validators:
            _validators[service] = ShapeValidator(service)
        return _validators[service]


@dataclass(frozen=True)
class Call:
    """One call as the emulator saw it: ``outcome`` is "ok" or the error code answered; ``request`` is the
    control-plane request body as received (None for InvokeEndpoint, whose payload is not kept), so a test
    can compare what a client sent with what it meant to send."""

    operation: str
    name: str | None
    time: float
    outcome: str
    request: Json | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Service:
    """An emulated SageMaker account and region: control plane, runtime, faults, call log."""

    def __init__(
        self,
        *,
        account: str = DEFAULT_ACCOUNT,
        region: str = DEFAULT_REGION,
        delay: float = DEFAULT_DELAY,
        create_delay: float | None = None,
        update_delay: float | None = None,
        delete_delay: float | None = None,
        deployment_time_scale: float = 1.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        max_calls: int = 200_000,
    ) -> None:
        self.lock = threading.RLock()
        self.account = account
        self.region = region
        self.clock = clock
        self.delays = Delays()
        self.set_delay(
            delay,
            create=create_delay,
            update=update_delay,
            delete=delete_delay,
            deployment_time_scale=deployment_time_scale,
        )
        # What reset() returns to: the emulator as it was started, not the class defaults.
        self._initial_delays = Delays(**vars(self.delays))
        self._seed = seed
        self._faults = FaultSet(seed)
        self._rng = random.Random(seed)
        self._calls: deque[Call] = deque(maxlen=max_calls)
        self.validator = shared_validator()
        self.validators = {SAGEMAKER: self.validator, AUTOSCALING: shared_validator(AUTOSCALING)}
        self.state, self.autoscaling = self._new_state()

    def _new_state(self) -> tuple[SageMakerState, AutoScalingState]:
        state = SageMakerState(
            account=self.account,
            region=self.region,
            delays=self.delays,
            faults=self._faults,
            clock=self.clock,
        )
        scaling = AutoScalingState(state)
        state.autoscaling = scaling
        return state, scaling

    # -- serving ------------------------------------------------------------------------------------------

    def _record(self, operation: str, name: str | None, outcome: str, request: Json | None = None) -> None:
        self._calls.append(Call(operation, name, self.clock(), outcome, request))

    def _admit(
        self, operation: str, name: str | None, request: Json | None = None, service: str = SAGEMAKER
    ) -> None:
        """Latency, throttling, server errors and refusals injected for this call (sleeping outside the
        lock)."""
        with self.lock:
            latency = self._faults.latency(operation)
        if latency:
            time.sleep(latency)
        with self.lock:
            fault = self._faults.call_error(operation)
            if fault is not None:
                if fault.kind == "throttle":
                    error = throttling()
                elif fault.kind == "deny":
                    error = access_denied(self.account, operation, service)
                else:
                    error = server_error(fault.status)
                self._record(operation, name, error.code, request)
                raise error

    def control(self, operation: str, body: Any, service: str = SAGEMAKER) -> Json:
        """Serve one control-plane call of ``service`` (SageMaker, or Application Auto Scaling); raises
        ServiceError with the service's code and text."""
        name = None
        request: Json | None = None
        if isinstance(body, Mapping):
            name = next((str(body[m]) for m in _NAME_MEMBERS if isinstance(body.get(m), str)), None)
            request = copy.deepcopy(dict(body))
        validator = self.validators[service]
        if operation not in _OPERATIONS[service]:
            known = validator.has_operation(operation)
            error = ServiceError(
                "UnknownOperationException",
                f"The operation {operation} is not supported by the mce-emulator."
                if known
                else f"Unknown operation {operation}.",
            )
            with self.lock:
                self._record(operation, name, error.code, request)
            raise error
        self._admit(operation, name, request, service)
        with self.lock:
            try:
                if not isinstance(body, dict):
                    raise ServiceError("SerializationException", "The request body must be a JSON object.")
                validator.validate(operation, body)
                self.state.tick()
                target: Any = self.state if service == SAGEMAKER else self.autoscaling
                result: Json = getattr(target, operation_method(operation))(body)
            except ServiceError as error:
                self._record(operation, name, error.code, request)
                raise
            self._record(operation, name, "ok", request)
            return result

    def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        *,
        content_type: str | None = None,
        target_container: str | None = None,
        target_variant: str | None = None,
    ) -> Invocation:
        """Serve one InvokeEndpoint call; raises ServiceError (ValidationError, ModelError...)."""
        operation = "InvokeEndpoint"
        self._admit(operation, endpoint_name)
        try:
            with self.lock:
                self.state.tick()
                endpoint = self.state.endpoints.get(endpoint_name.lower())
                if endpoint is None:
                    raise runtime_validation(f"Endpoint {endpoint_name} of account {self.account} not found.")
                if endpoint.status not in SERVING or not endpoint.variants:
                    raise runtime_validation(
                        f"Endpoint {endpoint.name} of account {self.account} is not in service "
                        f"(status: {endpoint.status})."
                    )
                if len(body) > MAX_BODY:
                    raise runtime_validation(f"Request body exceeds the maximum size of {MAX_BODY} bytes.")
                fleet = self.state.serving(endpoint, self._rng.random())
                variant = choose_variant(fleet, target_variant, endpoint.name, self._rng)
            # The variant is a deployment snapshot that no later call mutates in place except its weights.
            result = run(endpoint.name, variant, target_container, body, content_type)
        except ServiceError as error:
            with self.lock:
                self._record(operation, endpoint_name, error.code)
            raise
        with self.lock:
            self._record(operation, endpoint_name, "ok")
        return result

    # -- faults -------------------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        with self.lock:
            # Lifecycles computed so far saw the world without this fault.
            self.state.tick()
            fault.since = self.clock()
            return self._faults.add(fault)

    def throttle(
        self, rate: float = 0.0, *, count: int | None = None, operations: Iterable[str] | None = None
    ) -> Fault:
        """Answer ThrottlingException ("Rate exceeded") to the next ``count`` calls or a ``rate`` share."""
        return self.add_fault(Fault("throttle", rate=rate, count=count, operations=_ops(operations)))

    def server_error(
        self,
        status: int = 500,
        *,
        rate: float = 0.0,
        count: int | None = None,
        operations: Iterable[str] | None = None,
    ) -> Fault:
        """Answer InternalFailure (500) or ServiceUnavailable (503) to the next ``count`` calls or a
        ``rate`` share of them."""
        return self.add_fault(
            Fault("server_error", rate=rate, count=count, status=status, operations=_ops(operations))
        )

    def deny(self, operations: Iterable[str] | None = None, *, count: int | None = None) -> Fault:
        """Refuse matching calls with AccessDeniedException ("... is not authorized to perform:
        sagemaker:<Operation> ..."), as IAM does: the next ``count`` of them, or (None) every one."""
        return self.add_fault(Fault("deny", count=count, operations=_ops(operations)))

    def add_latency(self, seconds: float, *, operations: Iterable[str] | None = None) -> Fault:
        return self.add_fault(Fault("latency", seconds=seconds, operations=_ops(operations)))

    def fail_endpoint_creation(
        self, endpoint: str = "*", *, reason: str, config: str | None = None, count: int | None = None
    ) -> Fault:
        """Endpoints created with a name matching the glob ``endpoint`` (and a config matching ``config``) end
        Failed with ``reason``."""
        return self.add_fault(
            Fault("fail_create", endpoint=endpoint, config=config, reason=reason, count=count)
        )

    def fail_endpoint_update(
        self, endpoint: str = "*", *, reason: str, config: str | None = None, count: int | None = None
    ) -> Fault:
        """Updates of matching endpoints (to a config matching ``config``) return InService on the old config
        with ``reason`` as FailureReason."""
        return self.add_fault(
            Fault("fail_update", endpoint=endpoint, config=config, reason=reason, count=count)
        )

    def alarm(self, name: str) -> Fault:
        """Put the CloudWatch alarm ``name`` into the ALARM state until the fault is removed: a guarded
        deployment listing it in its AutoRollbackConfiguration rolls back during its next baking period."""
        return self.add_fault(Fault("alarm", alarm=name))

    def remove_fault(self, fault: Fault | int) -> bool:
        with self.lock:
            return self._faults.remove(fault if isinstance(fault, int) else fault.id)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    @property
    def faults(self) -> list[dict[str, Any]]:
        with self.lock:
            return self._faults.describe()

    # -- the call log -------------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self.lock:
            return list(self._calls)

    def calls_to(self, operation: str | None = None, name: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if (operation is None or c.operation == operation)
            and (name is None or (c.name is not None and c.name.lower() == name.lower()))
        ]

    @property
    def deleted_while_served(self) -> list[str]:
        """Every model and endpoint config deleted while an endpoint used it (SageMaker allows that)."""
        with self.lock:
            return list(self.state.deleted_while_served)

    def clear_calls(self) -> None:
        with self.lock:
            self._calls.clear()

    # -- state, out of band -------------------------------------------------------------------------------

    def set_delay(
        self,
        delay: float | None = None,
        *,
        create: float | None = None,
        update: float | None = None,
        delete: float | None = None,
        deployment_time_scale: float | None = None,
    ) -> None:
        """How long endpoints stay Creating, Updating (also for weights) and Deleting, and the factor
        applied to the waits of a DeploymentConfig."""
        with self.lock:
            for phase, value in (("create", create), ("update", update), ("delete", delete)):
                chosen = value if value is not None else delay
                if chosen is not None:
                    if chosen < 0:
                        raise ValueError("delays must not be negative")
                    setattr(self.delays, phase, float(chosen))
            if deployment_time_scale is not None:
                if deployment_time_scale < 0:
                    raise ValueError("the deployment time scale must not be negative")
                self.delays.deployment_time_scale = float(deployment_time_scale)

    def set_endpoint_status(
        self,
        name: str,
        status: str,
        *,
        failure_reason: str | None = None,
        duration: float | None = None,
    ) -> None:
        """Put an endpoint in ``status`` now (e.g. SystemUpdating, Failed, OutOfService); with ``duration`` it
        returns to InService after that many seconds. Raises ServiceError if there is no such endpoint."""
        with self.lock:
            self.state.tick()
            self.state.force_status(name, status, failure_reason, duration)

    def scale_variant(self, endpoint: str, variant: str, count: int) -> None:
        """Move a variant's DesiredInstanceCount as Application Auto Scaling would: the variant must be
        registered as a scalable target and ``count`` within its bounds; the endpoint is Updating until the
        change is done (the update delay). Raises ValueError or ServiceError (a busy endpoint)."""
        with self.lock:
            self.state.tick()
            self.autoscaling.scale(endpoint, variant, count)

    def delete_endpoint_now(self, name: str) -> None:
        """Make an endpoint vanish at once, as if someone deleted it out of band long ago."""
        with self.lock:
            self.state.tick()
            self.state.remove_endpoint(name)

    def endpoint_status(self, name: str) -> str | None:
        with self.lock:
            self.state.tick()
            endpoint = self.state.endpoints.get(name.lower())
            return None if endpoint is None else endpoint.status

    def snapshot(self) -> Json:
        """Every resource's name, and each endpoint's status and config: for assertions and debugging."""
        with self.lock:
            self.state.tick()
            return {**self.state.snapshot(), "scalableTargets": self.autoscaling.snapshot()}

    def reset(self) -> None:
        """Back to the emulator as it was started: no resource, fault or logged call, the delays it was
        started with (changes made since by set_delay or POST /_emulator/config are forgotten too), and
        the seeded random choices from their beginning."""
        with self.lock:
            self._calls.clear()
            for phase, value in vars(self._initial_delays).items():
                setattr(self.delays, phase, value)
            self._faults = FaultSet(self._seed)
            self._rng = random.Random(self._seed)
            self.state, self.autoscaling = self._new_state()


def _ops(operations: Iterable[str] | None) -> frozenset[str] | None:
    if operations is None:
        return None
    if isinstance(operations, str):
        return frozenset([operations])
    return frozenset(operations)
