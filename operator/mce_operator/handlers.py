"""kopf wiring — the only module that imports kopf.

Each handler parses the object, observes SageMaker, asks the core what to do, does it, and writes status.
The same ``_reconcile`` serves create, update, resume and the timer: nothing here asks which of them
it is. While SageMaker is busy the change handlers raise ``TemporaryError(delay=...)`` so kopf looks
again soon; otherwise the timer looks when the object's next check is due (drift at the steady pace,
retries, waits no change handler covers), rescheduling itself in memory in between.

Change and deletion handlers are sync (boto3 is blocking; kopf runs them in a thread pool); the timer
is async so that a check that is not due costs no thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from mce_operator import api, core, metrics, naming
from mce_operator.errors import ErrorKind
from mce_operator.sagemaker import SageMaker, SageMakerError

RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
# The timer's interval while a change handler is polling an object, and its first delay; otherwise it
# reschedules itself to the object's next check. kopf fixes timer intervals when handlers are
# registered (at import), hence an environment variable rather than a CLI flag.
TIMER_TICK = float(os.environ.get("MCE_TIMER_TICK", "5"))
FINALIZER = f"{api.GROUP}/finalizer"


@dataclass(frozen=True)
class OperatorConfig:
    """Operator-wide settings, put into kopf's memo by whoever starts the operator."""

    timing: core.Timing = field(default_factory=core.Timing)
    peering: str | None = None
    # A kopf.ConnectionInfo's fields, for an API server kopf cannot find by itself (tests, the demo).
    connection: Mapping[str, Any] | None = None
    max_workers: int = 20
    watch_server_timeout: float = 300.0
    # e.g. "http://0.0.0.0:8080/healthz" for the Deployment's liveness probe.
    liveness_endpoint: str | None = None


def _config(memo: Any) -> OperatorConfig:
    config = getattr(memo, "config", None)
    return config if isinstance(config, OperatorConfig) else OperatorConfig()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = _config(memo)
    # Everything the operator stores on objects is named after its API group, not kopf's defaults.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.GROUP, key="last-handled-configuration"
    )
    # Several replicas may run; with a peering object only the one with the highest priority acts.
    if config.peering:
        settings.peering.name = config.peering
        settings.peering.mandatory = True
    else:
        settings.peering.standalone = True
    # Ask the API server to end watches regularly, so a silently dropped connection is noticed.
    settings.watching.server_timeout = config.watch_server_timeout
    settings.watching.client_timeout = config.watch_server_timeout + 30
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.INFO
    settings.posting.loggers = False  # Events are posted explicitly, one per SageMaker action or failure.
    settings.execution.max_workers = config.max_workers
    settings.queueing.error_delays = (1, 2, 5, 10, 30, 60)
    if not hasattr(memo, "sagemaker"):
        memo.sagemaker = SageMaker()


@kopf.on.login()
def login(memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> kopf.ConnectionInfo | None:
    connection = _config(memo).connection
    if connection:
        return kopf.ConnectionInfo(**connection)
    return kopf.login_via_client(logger=logger, **kwargs) or kopf.login_with_service_account(
        logger=logger, **kwargs
    )


# --- status ----------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conditions(previous: list[dict[str, Any]], report: core.Report, generation: int) -> list[dict[str, Any]]:
    """Ready/Progressing/Degraded, keeping lastTransitionTime while a condition's status holds.

    Reconciling and Stalled repeat Progressing and Degraded under the names kstatus (Flux, kpt) reads:
    without them kstatus calls a resource "Current" while SageMaker is still creating it.
    """
    old = {item.get("type"): item for item in previous}
    now = _now()
    result = []
    for kind, cond in (
        ("Ready", report.ready),
        ("Progressing", report.progressing),
        ("Degraded", report.degraded),
        ("Reconciling", report.progressing),
        ("Stalled", report.degraded),
    ):
        status = "True" if cond.status else "False"
        before = old.get(kind, {})
        since = before.get("lastTransitionTime") if before.get("status") == status else None
        result.append(
            {
                "type": kind,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    return result


def _status(
    current: Mapping[str, Any],
    report: core.Report,
    generation: int,
    container_count: int | None,
    last_deployment: api.LastDeployment | None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "endpointName": report.endpoint_name,
        "endpointArn": report.endpoint_arn,
        "endpointStatus": report.endpoint_status,
        "modelName": report.model_name or None,
        "endpointConfigName": report.endpoint_config_name or None,
        "failureReason": report.failure_reason,
        "containerCount": container_count,
        "conditions": _conditions(list(current.get("conditions") or []), report, generation),
    }
    if last_deployment is not None:
        # Not exclude_none: status is merge-patched, and only an explicit null removes an old
        # fromEndpointConfigName.
        status["lastDeployment"] = last_deployment.model_dump(by_alias=True)
    return status


def _known_status(memo: Any, actual: Mapping[str, Any]) -> dict[str, Any]:
    """The object's status as this process knows it: the body's, overlaid with what it last wrote."""
    return {**actual, **(_state(memo).written_status or {})}


def _publish(memo: Any, patch: kopf.Patch, actual: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    _write_status(patch, actual, new)
    state = _state(memo)
    state.written_status = {**(state.written_status or {}), **new}


def _write_status(patch: kopf.Patch, current: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Patch only what changed, so a steady object causes no Kubernetes write at all."""
    changed = False
    for key, value in new.items():
        if current.get(key) != value:
            patch.status[key] = value
            changed = True
    return changed


# --- memory ----------------------------------------------------------------------------------------


def _memory(status: Mapping[str, Any], generation: int) -> core.Memory:
    last = status.get("lastDeployment")
    deployment = api.LastDeployment.model_validate(last) if isinstance(last, dict) else None
    for item in status.get("conditions") or []:
        terminal = (
            item.get("type") == "Degraded"
            and item.get("status") == "True"
            and item.get("reason") in core.TERMINAL_REASONS
            and item.get("observedGeneration") == generation
        )
        if terminal:
            return core.Memory(
                deployment, terminal_failure=item.get("message"), terminal_reason=item.get("reason")
            )
    return core.Memory(deployment)


class _ObjectState:
    """Per-object, in-process: serialises handler and timer, and says when the next check is due."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_check = 0.0
        # Set by the deletion handler: from then on the reconcile must not create anything.
        self.deleting = False
        # A change handler is retrying while SageMaker works: the timer leaves the polling to it.
        self.handler_active = False
        # The status this process last wrote. A timer can run on a body that does not show that write
        # yet; its memory (e.g. of an update that rolled back) must come from here, or it would be lost.
        self.written_status: dict[str, Any] | None = None


_STATE_LOCK = threading.Lock()


def _state(memo: Any) -> _ObjectState:
    # kopf gives every object its own shallow copy of the operator's memo; the handler and the timer
    # may ask for the state at the same moment, so it is made under a lock.
    with _STATE_LOCK:
        state = getattr(memo, "object_state", None)
        if not isinstance(state, _ObjectState):
            state = _ObjectState()
            memo.object_state = state
        return state


# --- the reconcile ---------------------------------------------------------------------------------


def _identity(meta: Mapping[str, Any]) -> core.Identity:
    return core.Identity(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 1),
        adopt=(meta.get("annotations") or {}).get(naming.ADOPT_ANNOTATION, "").lower() == "true",
    )


def _blocked(
    body: kopf.Body,
    memo: Any,
    patch: kopf.Patch,
    actual: Mapping[str, Any],
    status: Mapping[str, Any],
    generation: int,
    reason: str,
    message: str,
    desired: core.Desired | None = None,
) -> None:
    """Degraded for a reason of the operator's own (invalid spec, SageMaker unreadable): status keeps
    what was last observed, and one Warning Event is posted when the reason appears."""
    report = core.Report(
        endpoint_name=desired.endpoint_name if desired else str(status.get("endpointName") or ""),
        endpoint_arn=status.get("endpointArn"),
        endpoint_status=status.get("endpointStatus"),
        model_name=desired.model_name if desired else str(status.get("modelName") or ""),
        endpoint_config_name=desired.config_name if desired else str(status.get("endpointConfigName") or ""),
        failure_reason=message,
        ready=core.Cond(False, reason, message),
        progressing=core.NOT_PROGRESSING,
        degraded=core.Cond(True, reason, message),
    )
    count = desired.container_count if desired else status.get("containerCount")
    last = status.get("lastDeployment")
    deployment = api.LastDeployment.model_validate(last) if isinstance(last, dict) else None
    new_status = _status(status, report, generation, count, deployment)
    if _newly_degraded(status, report, generation):
        kopf.warn(body, reason=reason, message=message)
    _publish(memo, patch, actual, new_status)
    metrics.status_published(str(body.get("metadata", {}).get("uid", "")), new_status)


def _immutable_changes(status: Mapping[str, Any], desired: core.Desired, sagemaker: SageMaker) -> list[str]:
    """The CRD's CEL rules make endpointName and region immutable; if they were bypassed (an old CRD,
    ``--validate=false``), following the change would orphan the endpoint this object manages."""
    arn = str(status.get("endpointArn") or "")
    if not arn.startswith("arn:"):
        return []
    problems = []
    recorded = status.get("endpointName")
    if recorded and str(recorded).lower() != desired.endpoint_name.lower():
        problems.append(
            f"spec.endpointName: is immutable: this object manages endpoint {recorded!r}; "
            "create a new object for another endpoint"
        )
    region = arn.split(":")[3] if arn.count(":") >= 5 else ""
    wanted = desired.region or sagemaker.default_region()
    if region and wanted and region != wanted:
        problems.append(
            f"spec.region: is immutable: this object's endpoint is in {region!r}, not {wanted!r}; "
            "create a new object for another region"
        )
    return problems


def _act(
    body: kopf.Body,
    sagemaker: SageMaker,
    desired: core.Desired,
    decision: core.Decision,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> SageMakerError | None:
    for action in decision.actions:
        try:
            sagemaker.execute(desired.region, action)
        except SageMakerError as error:
            logger.warning(
                f"SageMaker {action.operation} {action.name} failed: {error.code}: {error.message}"
            )
            kopf.warn(body, reason=f"{action.operation}Failed", message=f"{error.code}: {error.message}")
            return error
        logger.info(action.message)
        kopf.info(body, reason=action.operation, message=action.message)
    return None


# Calls whose refusal means "this spec cannot be deployed": remembered until the spec changes.
DEPLOYING = frozenset({"CreateModel", "CreateEndpointConfig", "CreateEndpoint", "UpdateEndpoint"})


def _reconcile(
    body: kopf.Body,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    actual: Mapping[str, Any],
    patch: kopf.Patch,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> float:
    """One reconcile; returns the seconds until the next look. ``actual`` is the body's status."""
    status = _known_status(memo, actual)
    config = _config(memo)
    timing = config.timing
    identity = _identity(meta)
    sagemaker: SageMaker = memo.sagemaker
    try:
        parsed = api.parse_spec(dict(spec))
    except api.SpecError as error:
        message = "The spec is invalid: " + "; ".join(error.messages)
        _blocked(body, memo, patch, actual, status, identity.generation, core.REASON_INVALID_SPEC, message)
        return timing.steady

    desired = core.desired_state(parsed, identity)
    immutable = _immutable_changes(status, desired, sagemaker)
    if immutable:
        message = "The spec is invalid: " + "; ".join(immutable)
        # Not ``desired``: status must keep naming the endpoint this object manages, or the next check
        # would compare the new name with itself and follow it.
        _blocked(body, memo, patch, actual, status, identity.generation, core.REASON_INVALID_SPEC, message)
        return timing.steady

    memory = _memory(status, identity.generation)
    try:
        observed = sagemaker.observe(desired)
    except SageMakerError as error:
        logger.warning(f"Could not read SageMaker's state: {error}")
        if error.kind is not ErrorKind.TERMINAL:
            return timing.busy
        # The operator cannot even look (access denied, bad region): say so; look again slowly.
        message = (
            f"Cannot read SageMaker's state: {error.code}: {error.message}. Check the operator's AWS "
            f"permissions and region; retried every {timing.steady:g} s."
        )
        _blocked(body, memo, patch, actual, status, identity.generation, error.rule.reason, message, desired)
        return timing.steady

    decision = core.reconcile(desired, observed, memory, timing)
    failure = _act(body, sagemaker, desired, decision, logger)
    report, last_deployment = decision.report, memory.last_deployment
    delay = decision.requeue_after
    observed_status = observed.endpoint.status if observed.endpoint else None
    if failure is None:
        last_deployment = decision.last_deployment or last_deployment
    elif failure.kind is ErrorKind.TERMINAL:
        reason = failure.rule.reason
        if reason == core.REASON_REJECTED and failure.operation not in DEPLOYING:
            # Refused housekeeping (a delete, a tag) does not mean the spec cannot be deployed.
            reason = f"{failure.operation}Rejected"
        remembered = reason in core.TERMINAL_REASONS
        retry = (
            "it is retried when the spec changes."
            if remembered
            else f"it is retried every {timing.steady:g} s."
        )
        message = (
            f"SageMaker refused {failure.operation} {failure.name}: {failure.code}: {failure.message}. "
            f"Fix the spec (or the operator's permissions); {retry}"
        )
        report = dataclasses.replace(
            report,
            ready=core.Cond(False, reason, message),
            progressing=core.NOT_PROGRESSING,
            degraded=core.Cond(True, reason, message),
            failure_reason=message,
            endpoint_status=observed_status,
        )
        delay = timing.steady
    else:
        report = dataclasses.replace(
            report,
            endpoint_status=observed_status,
            failure_reason=f"{failure.code}: {failure.message} (retrying)",
        )
        delay = timing.busy

    new_status = _status(status, report, identity.generation, desired.container_count, last_deployment)
    if failure is None and _newly_degraded(status, report, identity.generation):
        # A failure SageMaker reports (Failed, a rolled-back update) rather than one of our calls: one
        # Warning Event when it appears, not one per check.
        kopf.warn(body, reason=report.degraded.reason, message=report.degraded.message)
    _publish(memo, patch, actual, new_status)
    metrics.status_published(identity.uid, new_status)
    return delay


def _newly_degraded(status: Mapping[str, Any], report: core.Report, generation: int) -> bool:
    if not report.degraded.status:
        return False
    before: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Degraded"), {}
    )
    return (
        before.get("status") != "True"
        or before.get("reason") != report.degraded.reason
        or before.get("observedGeneration") != generation
    )


def _run_guarded(memo: Any, run: Callable[[], float], *, blocking: bool = True) -> float | None:
    """Run one reconcile of this object unless another is running (timer) or it is being deleted;
    return the seconds until the next look (None: nothing was run)."""
    state = _state(memo)
    if not state.lock.acquire(blocking=blocking):
        return None
    try:
        if state.deleting:
            return None
        with metrics.reconcile():
            delay = run()
        state.next_check = time.monotonic() + delay
        return delay
    finally:
        state.lock.release()


WAITING = "Waiting for SageMaker"


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """React to a new, changed or (after a restart) resumed object at once, and keep looking at the
    busy pace (kopf's TemporaryError: no sleeping) until SageMaker is done with the change."""
    state = _state(memo)
    delay = _run_guarded(memo, lambda: _reconcile(body, spec, meta, status, patch, memo, logger))
    state.handler_active = delay is not None and delay < _config(memo).timing.steady
    if state.handler_active:
        raise kopf.TemporaryError(f"{WAITING}: looking again in {delay:g} s", delay=delay)


@kopf.timer(*RESOURCE, interval=TIMER_TICK, initial_delay=TIMER_TICK)
async def recheck(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Drift detection and every wait that no change handler covers (out-of-band deletions and
    changes, retries after errors). The timer sleeps exactly until the object's next check is due:
    its TemporaryError reschedules it in memory — no Kubernetes write, no SageMaker call, no thread."""
    state = _state(memo)
    if meta.get("deletionTimestamp") or state.deleting or state.handler_active:
        return  # the deletion or change handler is looking already; come back after a tick
    timing = _config(memo).timing
    if time.monotonic() >= state.next_check:
        if state.lock.locked():
            raise kopf.TemporaryError(f"{WAITING}: a reconcile is running", delay=timing.busy)
        await asyncio.to_thread(
            _run_guarded,
            memo,
            lambda: _reconcile(body, spec, meta, status, patch, memo, logger),
            blocking=False,
        )
    wait = state.next_check - time.monotonic()
    if wait > 0:
        raise kopf.TemporaryError(f"{WAITING}: next check in {wait:.3g} s", delay=wait)


@kopf.on.delete(*RESOURCE)
def delete(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    config = _config(memo)
    identity = _identity(meta)
    desired = _deletion_target(spec, identity)
    sagemaker: SageMaker = memo.sagemaker
    state = _state(memo)
    with state.lock, metrics.reconcile():
        state.deleting = True
        try:
            observed = sagemaker.observe(desired)
        except SageMakerError as error:
            raise kopf.TemporaryError(
                f"Could not observe SageMaker: {error}", delay=config.timing.busy
            ) from error
        decision = core.finalize(desired, observed, config.timing)
        for note in decision.notes:
            logger.info(note)
            kopf.info(body, reason="Retained", message=note)
        failure = _act(body, sagemaker, desired, decision, logger)
        new_status = _status(status, decision.report, identity.generation, None, None)
        _write_status(patch, status, new_status)
        metrics.status_published(identity.uid, new_status)
    if failure is not None:
        raise kopf.TemporaryError(f"Deleting: {failure}", delay=config.timing.busy)
    if not decision.finished:
        raise kopf.TemporaryError(
            "Waiting for SageMaker to delete the endpoint", delay=decision.requeue_after
        )
    metrics.forget(identity.uid)


def _deletion_target(spec: Mapping[str, Any], identity: core.Identity) -> core.Desired:
    """What to delete, even when the spec no longer validates: only the endpoint name and policy matter."""
    try:
        return core.desired_state(api.parse_spec(dict(spec)), identity)
    except api.SpecError:
        name = spec.get("endpointName") or naming.default_endpoint_name(identity.namespace, identity.name)
        try:
            policy = api.DeletionPolicy(spec.get("deletionPolicy") or api.DeletionPolicy.DELETE.value)
        except ValueError:
            # An unreadable policy must not strand the finalizer; Delete is the documented default.
            policy = api.DeletionPolicy.DELETE
        return core.Desired(
            identity=identity,
            endpoint_name=str(name),
            region=spec.get("region"),
            model_name="",
            config_name="",
            model_request={},
            config_request={},
            tags=naming.ownership_tags(identity.namespace, identity.name, identity.uid),
            deletion_policy=policy,
            container_count=0,
        )


def operator(
    *,
    sagemaker: SageMaker,
    config: OperatorConfig,
    namespaces: list[str] | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> Any:
    """The operator as a coroutine (for ``asyncio.run`` or a thread of its own).

    No namespaces: the whole cluster."""
    memo = kopf.Memo(sagemaker=sagemaker, config=config)
    return kopf.operator(
        memo=memo,
        namespaces=namespaces or [],
        clusterwide=not namespaces,
        standalone=config.peering is None,
        peering_name=config.peering,
        liveness_endpoint=config.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


class WaitingIsNotAnError(logging.Filter):
    """kopf logs every TemporaryError at ERROR level; waiting for SageMaker is normal: DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and WAITING in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


# On kopf's per-object logger itself, so that every handler (and test capture) sees the real level.
logging.getLogger("kopf.objects").addFilter(WaitingIsNotAnError())


def configure_logging(*, verbose: bool = False, json: bool = True) -> None:
    """Structured (JSON) logs by default, each line naming the object it is about."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if json else kopf.LogFormat.FULL)
