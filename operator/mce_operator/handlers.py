"""kopf wiring — the only module that imports kopf.

One schedule for all objects (:mod:`mce_operator.scheduler`), in which every object always has its next
visit booked: a look (``_look``) while it lives, a deletion step (``_delete_step``) once it is being
deleted, each returning when it wants the next. A look parses the object, observes SageMaker, asks the
core what to do, does it and writes the status. Nothing here asks whether the object was created or
changed: a new object, a change, a restart and a timer all lead to the same look.

kopf delivers the watch events, logs in, posts Events and runs the peering; it runs no handler of its
own for the objects but ``notice``, which hands each event's body to the schedule and asks for a visit now
when the object changed in a way the last visit did not see. kopf's change handlers, daemons and
deletion handlers are not used: their progress lives in patches kopf only makes again when another
event arrives (a failed patch, a 409, an "essence unchanged" verdict could leave an object that nothing
looks at any more), and a daemon per object costs a task, kopf's state and a copy of the body per object
(about a third of the operator's CPU at 500 objects). The operator's own writes (status, its finalizer)
go through the Kubernetes adapter; one that fails is made again at the next visit.

Deletion: the finalizer is the operator's own, added before anything is created in SageMaker. Once the
object is being deleted, its visits delete what the status says the operator manages (never a name
SageMaker cannot parse), honour the release annotation, and remove the finalizer when done.

Peering: kopf pauses its watches while a peer of higher priority lives; the schedule pauses with it,
decided from the same peering objects (:class:`mce_operator.peering.Standby`).

SageMaker and Kubernetes calls are blocking; visits run in ``max_workers`` threads, one per object at a
time, while waits cost no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from mce_operator import api, core, credentials, metrics, naming, peering
from mce_operator.autoscaling import AutoScaling
from mce_operator.errors import ErrorKind
from mce_operator.kube import Kube, KubeError
from mce_operator.sagemaker import Recall, SageMaker, SageMakerError
from mce_operator.scheduler import MAX_WORKERS, Entry, Scheduler

RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
FINALIZER = f"{api.GROUP}/finalizer"
# Set to "true" on an object being deleted: remove the finalizer without deleting anything in SageMaker
# (for when SageMaker cannot be reached or refuses, and a person decides to clean up by hand).
RELEASE_ANNOTATION = f"{api.GROUP}/release-finalizer"
# A look that failed for a reason of Kubernetes' own (a refused or lost status write) is made again
# after this long, whatever the object's pace.
KUBE_RETRY = 1.0
# How often a replica with peering reads the peering objects to know whether kopf paused it.
PEERING_POLL = 1.0


@dataclass(frozen=True)
class OperatorConfig:
    """Operator-wide settings, put into kopf's memo by whoever starts the operator."""

    timing: core.Timing = field(default_factory=core.Timing)
    peering: str | None = None
    # With peering, the replica of the highest priority acts and the others stand by. kopf pauses *all*
    # replicas of equal priority, so each gets its own unless one is given.
    peering_priority: int | None = None
    # A kopf.ConnectionInfo's fields, for an API server kopf cannot find by itself (tests, the demo).
    connection: Mapping[str, Any] | None = None
    max_workers: int = MAX_WORKERS
    watch_server_timeout: float = 300.0
    # e.g. "http://0.0.0.0:8080/healthz" for the Deployment's liveness probe.
    liveness_endpoint: str | None = None


def _config(memo: Any) -> OperatorConfig:
    config = getattr(memo, "config", None)
    return config if isinstance(config, OperatorConfig) else OperatorConfig()


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf keeps the last handled spec (an annotation) to tell its create, update and resume handlers
    apart. This operator has none — its looks compare the spec with SageMaker — so nothing is kept: no
    annotation written, and no watch event caused, for every spec change. kopf then sees every event as
    a creation with no handler for it; deletion does not depend on it."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def build(
        self, *, body: kopf.Body, extra_fields: Any = None
    ) -> kopf.BodyEssence:  # kopf computes it for every event, to diff it with nothing
        return cast(kopf.BodyEssence, {})

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    config = _config(memo)
    # kopf keeps no finalizer here (no kopf handler needs one): the operator's own is FINALIZER, which kopf
    # would remove as unneeded if it were kopf's too.
    settings.persistence.diffbase_storage = _NoDiffBase()
    if config.peering:
        settings.peering.name = config.peering
        settings.peering.mandatory = True
        settings.peering.priority = memo.peering_priority
        logger.info(f"Peering as {config.peering!r} with priority {settings.peering.priority}.")
    else:
        settings.peering.standalone = True
    # Ask the API server to end watches regularly, so a silently dropped connection is noticed.
    # timeoutSeconds must be an integer: a real apiserver refuses "300.0" (400 Bad Request) and no
    # watch would ever start.
    settings.watching.server_timeout = int(config.watch_server_timeout)
    settings.watching.client_timeout = int(config.watch_server_timeout) + 30
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.INFO
    # kopf's task per object, which keeps the object's last event (managedFields and all) while it
    # lives, ends this soon after the object's last event (5 s by default: most of a burst's objects).
    settings.queueing.idle_timeout = 1.0
    settings.posting.loggers = False  # Events are posted explicitly, one per SageMaker action or failure.
    settings.execution.max_workers = 1  # kopf runs no sync handler: the visits have their own threads
    settings.queueing.error_delays = (1, 2, 5, 10, 30, 60)
    if not hasattr(memo, "sagemaker"):
        memo.sagemaker = SageMaker()
    if not hasattr(memo, "autoscaling"):
        memo.autoscaling = AutoScaling.like(memo.sagemaker)
    memo.settings = settings  # for the loggers of the visits
    try:
        memo.sagemaker.start()
    except SageMakerError as error:
        # Said again, in each object's status, by the looks that need SageMaker.
        logger.warning(f"No SageMaker client yet: {error}")


@kopf.on.cleanup()
async def stop_visits(memo: kopf.Memo, **_: Any) -> None:
    """kopf is stopping: the visits stop too (kopf would wait 5 s for tasks it did not start to end)."""
    scheduler = getattr(memo, "scheduler", None)
    if isinstance(scheduler, Scheduler):
        await scheduler.stop()


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf logs in as the operator's adapter does (:mod:`mce_operator.credentials`), not with kopf's own
    logins: its ``login_via_client`` needs the ``kubernetes`` package (44 MB), its kubeconfig login runs no
    exec plugin (EKS)."""
    connection = _config(memo).connection
    if connection:
        return kopf.ConnectionInfo(**connection)
    session: credentials.Session = memo.kopf_login
    # kopf logs in again only when the API server refused its connection (401) or it expired.
    refused = session.current
    if refused is None:
        return kopf.ConnectionInfo(**session.connection().fields())
    fresh = session.renew(refused)
    if fresh is None:
        # kopf tries this handler again after a while (and would refuse the same connection anyway).
        raise credentials.LoginError("the API server refused the credentials, and there are no others yet")
    return kopf.ConnectionInfo(**fresh.fields())


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
    # Not exclude_none below: status is merge-patched, and only an explicit null removes an old field.
    scaled = report.autoscaling.model_dump(by_alias=True) if report.autoscaling is not None else None
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "endpointName": report.endpoint_name or None,
        "endpointArn": report.endpoint_arn,
        "endpointStatus": report.endpoint_status,
        "modelName": report.model_name or None,
        "endpointConfigName": report.endpoint_config_name or None,
        "failureReason": report.failure_reason,
        "containerCount": container_count,
        "desiredInstanceCount": report.desired_instance_count,
        "currentInstanceCount": report.current_instance_count,
        "autoscaling": scaled,
        "conditions": _conditions(list(current.get("conditions") or []), report, generation),
    }
    if last_deployment is not None:
        # Not exclude_none: status is merge-patched, and only an explicit null removes an old field.
        status["lastDeployment"] = last_deployment.model_dump(by_alias=True)
    return status


def _without_nulls(value: Any) -> Any:
    """What a merge patch leaves stored: a null removes the field, so it never compares equal to one."""
    if isinstance(value, Mapping):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _status_patch(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Only what changed, so a steady object causes no Kubernetes write at all."""
    return {
        key: value for key, value in new.items() if _without_nulls(current.get(key)) != _without_nulls(value)
    }


# --- memory ----------------------------------------------------------------------------------------


class _ObjectState:
    """Per object, in this process: what its visits must share (the schedule makes one at a time)."""

    __slots__ = ("confirmed", "gone", "looked_at", "recall", "released", "written_status")

    def __init__(self, drift: float, *, confirmed: float = 0.0) -> None:
        # Set once the finalizer is removed: this object's visits end (a late event of the object makes a
        # new state, whose first deletion step finds it gone).
        self.released = False
        # When (time.monotonic) the body the visits use was last known current: an event's is; one held
        # through a peering pause, or for a drift interval without any event, is read again (see _visit).
        self.confirmed = confirmed
        # Set when a write found the object gone: its DELETED event can be missed (a watch that lost
        # its place lists the objects again, and says nothing of those that went meanwhile).
        self.gone = False
        # What the last visit saw of the object (see ``_trigger``).
        self.looked_at: tuple[Any, ...] | None = None
        # The status this process last wrote: an event (and so the body a visit gets) may lag that
        # write, and the memory it holds (e.g. of an update that rolled back) must not be lost.
        self.written_status: dict[str, Any] = {}
        # What its looks read and did in SageMaker, so that the next one reads only what it must.
        self.recall = Recall(drift=drift)


def _trigger(meta: Mapping[str, Any]) -> tuple[Any, ...]:
    """What, when it changes, calls for a look now rather than at the booked time: the spec (its
    generation), the operator's annotations, the start of deletion. Status writes change none of it."""
    annotations = meta.get("annotations") or {}
    return (
        meta.get("generation"),
        annotations.get(naming.ADOPT_ANNOTATION),
        annotations.get(RELEASE_ANNOTATION),
        meta.get("deletionTimestamp"),
    )


# --- one look --------------------------------------------------------------------------------------


Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


class _Look:
    """One object's look: its snapshot, and where its status goes."""

    def __init__(
        self,
        obj: Mapping[str, Any],
        memo: Any,
        state: _ObjectState,
        logger: Log,
        live: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.obj = obj
        # The object's latest body, as the events bring it (None: none): for the finalizer only.
        self.live = live
        self.meta: Mapping[str, Any] = obj.get("metadata") or {}
        # The metadata of the object as stored after this look's own status write (None: no write yet).
        self.stored_meta: Mapping[str, Any] | None = None
        self.memo = memo
        self.logger = logger
        self.state = state
        self.config = _config(memo)
        self.timing = self.config.timing
        self.kube: Kube = memo.kube
        self.sagemaker: SageMaker = memo.sagemaker
        self.autoscaling: AutoScaling = memo.autoscaling
        body_status = obj.get("status")
        self.actual: Mapping[str, Any] = body_status if isinstance(body_status, Mapping) else {}
        self.status: dict[str, Any] = {**self.actual, **self.state.written_status}
        self.identity = core.identity_of(self.meta)

    def with_targets(
        self, desired: core.Desired, observed: core.Observed, memory: core.Memory
    ) -> core.Observed:
        """``observed`` with the endpoint's scalable targets, when the spec or the status has autoscaling."""
        remembered = memory.autoscaling is not None
        return self.autoscaling.observe(desired, observed, remembered=remembered, sagemaker=self.sagemaker)

    def publish(self, new: Mapping[str, Any]) -> bool:
        """Write what changed in the status; False if Kubernetes refused or the object is gone."""
        # Every look reports to the metrics, written or not: after a restart a steady object writes
        # nothing, and must still be counted.
        metrics.status_published(self.identity.uid, {**self.status, **new})
        patch = _status_patch(self.status, new)
        if not patch:
            return True
        try:
            stored = self.kube.patch_status(self.identity.namespace, self.identity.name, patch)
        except KubeError as error:
            if error.gone:
                self.state.gone = True
            else:
                self.logger.warning(f"Could not write the status (retried in {KUBE_RETRY:g} s): {error}")
            return False
        stored_meta = stored.get("metadata")
        if isinstance(stored_meta, Mapping) and stored_meta.get("uid") != self.identity.uid:
            # Another object of the same name (this one's deletion went unseen): not this object's.
            self.logger.warning("The object was deleted and made again meanwhile; its visits end.")
            self.state.gone = True
            return False
        self.state.written_status = {**self.state.written_status, **new}
        self.stored_meta = stored_meta if isinstance(stored_meta, Mapping) else None
        return True

    def blocked(self, reason: str, message: str, desired: core.Desired | None = None) -> bool:
        """Degraded for a reason of the operator's own (invalid spec, SageMaker unreadable): status keeps
        what was last observed, and one Warning Event is posted when the reason appears."""
        status = self.status
        report = core.Report(
            endpoint_name=desired.endpoint_name if desired else str(status.get("endpointName") or ""),
            endpoint_arn=status.get("endpointArn"),
            endpoint_status=status.get("endpointStatus"),
            model_name=desired.model_name if desired else str(status.get("modelName") or ""),
            endpoint_config_name=desired.config_name
            if desired
            else str(status.get("endpointConfigName") or ""),
            failure_reason=message,
            ready=core.Cond(False, reason, message),
            progressing=core.NOT_PROGRESSING,
            degraded=core.Cond(True, reason, message),
            # What was last observed stays: the scalable target's record is what brings a later look to
            # it, should autoscaling leave the spec meanwhile.
            desired_instance_count=status.get("desiredInstanceCount"),
            current_instance_count=status.get("currentInstanceCount"),
            autoscaling=core.memory_of(status, self.identity.generation).autoscaling,
        )
        count = desired.container_count if desired else status.get("containerCount")
        last = status.get("lastDeployment")
        deployment = api.LastDeployment.model_validate(last) if isinstance(last, dict) else None
        new_status = _status(status, report, self.identity.generation, count, deployment)
        if _newly_degraded(status, report, self.identity.generation):
            _post(self.obj, warning=True, reason=reason, message=message)
        return self.publish(new_status)


def _parse(spec: Any) -> api.MultiContainerEndpointSpec:
    if not isinstance(spec, Mapping):
        # Possible wherever the CRD's schema is bypassed; nothing else can be read from it.
        raise api.SpecError([f"spec: must be an object, not {type(spec).__name__}"])
    return api.parse_spec(dict(spec))


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
    region = _arn_region(arn)
    wanted = desired.region or sagemaker.default_region()
    if region and wanted and region != wanted:
        problems.append(
            f"spec.region: is immutable: this object's endpoint is in {region!r}, not {wanted!r}; "
            "create a new object for another region"
        )
    return problems


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] or None if len(parts) >= 6 and parts[0] == "arn" else None


def _act(look: _Look, desired: core.Desired, decision: core.Decision) -> SageMakerError | None:
    """Each action in order, by the adapter of its service; stops at the first failure. One Event each."""
    obj, logger = look.obj, look.logger
    for action in decision.actions:
        try:
            if action.service == core.AUTOSCALING:
                look.autoscaling.execute(desired.region, action)
            else:
                look.sagemaker.execute(desired.region, action, look.state.recall)
        except SageMakerError as error:
            logger.warning(f"{action.operation} {action.name} failed: {error.code}: {error.message}")
            _post(
                obj,
                warning=True,
                reason=f"{action.operation}Failed",
                message=f"{error.code}: {error.message}",
            )
            return error
        logger.info(action.message)
        _post(obj, reason=action.operation, message=action.message)
    return None


# Calls whose refusal means "this spec cannot be deployed": remembered until the spec changes.
DEPLOYING = frozenset({"CreateModel", "CreateEndpointConfig", "CreateEndpoint", "UpdateEndpoint"})


def _ensure_finalizer(look: _Look) -> bool:
    """The finalizer goes on before anything is created in SageMaker, or a deletion could skip the
    cleanup; it is the operator's own, written by this look and made again by the next if refused."""
    if FINALIZER in (look.meta.get("finalizers") or []):
        return True
    # The freshest view of the object is what this look's status write answered (a new object's first
    # look writes its status just before): its resourceVersion is current, so the write rarely meets a
    # 409 (each costs a read). Else the latest body the events brought.
    latest = look.live() if look.live is not None else None
    meta = look.stored_meta or (latest.get("metadata") if latest is not None else None) or look.meta
    if FINALIZER in (meta.get("finalizers") or []):
        return True
    try:
        current = {"metadata": copy.deepcopy(dict(meta))}
        if look.kube.set_finalizer(current, FINALIZER, present=True) is None:
            look.state.gone = True
            return False
        return True
    except KubeError as error:
        look.logger.warning(f"Could not add the finalizer (retried in {KUBE_RETRY:g} s): {error}")
        return False


def _look(
    obj: Mapping[str, Any],
    memo: Any,
    state: _ObjectState,
    logger: Log,
    live: Callable[[], Mapping[str, Any]] | None = None,
) -> float:
    """One look at the object; returns the seconds until the next."""
    with metrics.reconcile():
        return _look_at(_Look(obj, memo, state, logger, live))


def _look_at(look: _Look) -> float:
    timing, identity, status = look.timing, look.identity, look.status
    try:
        parsed = _parse(look.obj.get("spec"))
    except api.SpecError as error:
        message = "The spec is invalid: " + "; ".join(error.messages)
        return timing.steady if look.blocked(core.REASON_INVALID_SPEC, message) else KUBE_RETRY

    desired = core.desired_state(parsed, identity)
    immutable = _immutable_changes(status, desired, look.sagemaker)
    if immutable:
        message = "The spec is invalid: " + "; ".join(immutable)
        # Not ``desired``: status must keep naming the endpoint this object manages, or the next look
        # would compare the new name with itself and follow it.
        return timing.steady if look.blocked(core.REASON_INVALID_SPEC, message) else KUBE_RETRY

    memory = core.memory_of(status, identity.generation)
    # No status naming an endpoint: the operator never acted for this object (see below).
    untouched = not status.get("endpointName")
    try:
        observed, decision = look.sagemaker.decide(
            desired,
            look.state.recall,
            lambda observed: core.reconcile(
                desired, look.with_targets(desired, observed, memory), memory, timing
            ),
            untouched=untouched,
        )
    except SageMakerError as error:
        look.logger.warning(f"Could not read SageMaker's state: {error}")
        if error.kind is not ErrorKind.TERMINAL:
            return timing.busy
        # The operator cannot even look (access denied, bad region): say so; look again slowly.
        message = (
            f"Cannot read SageMaker's state: {error.code}: {error.message}. Check the operator's AWS "
            f"permissions and region; retried every {timing.steady:g} s."
        )
        return timing.steady if look.blocked(error.rule.reason, message, desired) else KUBE_RETRY

    if decision.actions and untouched:
        # The status names the endpoint before anything is created for the object: without one, a later
        # look (in another process too) knows there is nothing of this object's to list in SageMaker.
        # A creation's lastDeployment (no "from") is written with it: it can never read as a rollback.
        intent = decision.last_deployment
        if intent is None or intent.from_endpoint_config_name is not None:
            intent = memory.last_deployment
        early = _status(status, decision.report, identity.generation, desired.container_count, intent)
        if not look.publish(early):
            return KUBE_RETRY
        status = look.status = {**status, **look.state.written_status}
    # After that status write, whose answer is the object's freshest metadata. Also when there is nothing
    # to do but the status names an endpoint (the finalizer removed by hand, say): its deletion must
    # still clean up.
    if (decision.actions or not untouched) and not _ensure_finalizer(look):
        return KUBE_RETRY
    failure = _act(look, desired, decision)
    if failure is not None and failure.kind is ErrorKind.EXISTS:
        # A name this look did not know was taken (by a crashed look, or by someone else): look again at
        # once, reading everything (the recall is forgotten), which tells whose it is.
        return 0.0
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
        # Warning Event when it appears, not one per look.
        _post(look.obj, warning=True, reason=report.degraded.reason, message=report.degraded.message)
    return delay if look.publish(new_status) else min(delay, KUBE_RETRY)


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


def _post(obj: Mapping[str, Any], *, reason: str, message: str, warning: bool = False) -> None:
    """A Kubernetes Event about the object (kopf queues it; posting never blocks a look)."""
    body = kopf.Body(cast(kopf.RawBody, dict(obj)))
    if warning:
        kopf.warn(body, reason=reason, message=message)
    else:
        kopf.info(body, reason=reason, message=message)


# --- the schedule ----------------------------------------------------------------------------------


def _slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a visit needs of an event's body: all but ``managedFields`` (kept for every object, they
    would be most of its size). The parts are kopf's parsed JSON, which nothing changes afterwards."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {key: value for key, value in meta.items() if key != "managedFields"},
        "spec": body.get("spec"),
        "status": body.get("status"),
    }


@kopf.on.event(*RESOURCE)
async def notice(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Hand the object's latest body to the schedule; a visit now if it is new to this process, or
    changed in a way its last visit did not see. Only a wake-up call: if one is lost, the booked visit
    still comes."""
    scheduler: Scheduler = memo.scheduler
    meta = body.get("metadata") or {}
    uid = str(meta.get("uid"))
    if type == "DELETED":
        scheduler.drop(uid)
        metrics.forget(uid)
        return
    # The visits run in tasks made here, the first time: in kopf's context for an object's handler, which
    # is what posting Events needs (kopf keeps its queue of Events in context variables).
    scheduler.start()
    drift = _config(memo).timing.drift
    entry = scheduler.get(uid)
    changed = entry is not None and _trigger(meta) != entry.state.looked_at
    # An event's body is current: a new state takes it as confirmed now.
    scheduler.saw(
        uid, _slim(body), state=lambda: _ObjectState(drift, confirmed=time.monotonic()), now=changed
    )


OBJECT_LOGGER = logging.getLogger("mce_operator.objects")


def _logger(memo: Any, obj: Mapping[str, Any]) -> Log:
    """A logger naming the object, as kopf's own per-object one does (kopf's formats read ``k8s_ref``);
    only to the log: the Events are posted explicitly (``_post``)."""
    meta = obj.get("metadata") or {}
    reference = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "namespace": meta.get("namespace"),
    }
    extra = {"settings": memo.settings, "k8s_skip": True, "k8s_ref": reference}
    return logging.LoggerAdapter(OBJECT_LOGGER, extra)


async def _visit(memo: Any, entry: Entry) -> float | None:
    """The object's next visit: a look, or once it is being deleted a deletion step; the seconds until
    the next, or None when the object is gone."""
    obj = entry.body
    state: _ObjectState = entry.state
    if state.released:
        return None
    logger = _logger(memo, obj)
    meta = obj.get("metadata") or {}
    uid = str(meta.get("uid"))
    # Here, not in the thread: an event that arrives meanwhile is compared with what this visit sees.
    state.looked_at = _trigger(meta)
    timing = _config(memo).timing
    delay: float | None
    stale = time.monotonic() - state.confirmed > timing.drift
    if stale and not meta.get("deletionTimestamp"):
        # A body held through a peering pause (the other replica may have changed or deleted the object)
        # or for a whole drift interval without an event (its DELETED may have gone unseen: a watch that
        # lists again says nothing of objects deleted meanwhile) is read again first. (A deletion step
        # reads the object again anyway.)
        try:
            fresh = await _in_thread(memo, _read_again, memo, obj)
        except KubeError as error:
            logger.warning(f"Could not read the object (retried in {KUBE_RETRY:g} s): {error}")
            return KUBE_RETRY
        if fresh is not None:
            state.confirmed = time.monotonic()
            if entry.body is obj:
                entry.body = fresh
            obj, meta = fresh, fresh["metadata"]
            state.looked_at = _trigger(meta)
    else:
        fresh = obj
    if fresh is None:
        delay = None
    elif meta.get("deletionTimestamp"):
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        step = await _in_thread(memo, _delete_step, namespace, name, uid, memo, state, logger)
        delay = None if step.finished else step.delay
    else:
        delay = await _in_thread(memo, _look, obj, memo, state, logger, lambda: entry.body)
        if state.gone:
            delay = None
    if delay is None or entry.dropped:
        metrics.forget(uid)  # also when its DELETED event came during the visit, which then reported
    return delay


def _read_again(memo: Any, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The object as it is now (slimmed), or None when it is gone or another of the same name."""
    meta = obj.get("metadata") or {}
    kube: Kube = memo.kube
    current = kube.get(str(meta.get("namespace")), str(meta.get("name")))
    if current is None or (current.get("metadata") or {}).get("uid") != meta.get("uid"):
        return None
    return _slim(current)


async def _in_thread(memo: Any, function: Callable[..., Any], *args: Any) -> Any:
    """In one of the operator's ``max_workers`` threads, with this task's context variables (kopf's
    Events queue), as ``asyncio.to_thread`` would."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(memo.executor, context.run, function, *args)


# --- deletion --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    finished: bool
    delay: float = 0.0


def _deletion_target(obj: Mapping[str, Any], sagemaker: SageMaker) -> core.Desired | None:
    """What deleting this object must clean up: the endpoint the status says the operator manages, else
    the one the spec would have made. None when nothing can have been made (an invalid spec that never
    deployed), so the finalizer can go without asking SageMaker about a name it cannot parse."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec")
    raw_status = obj.get("status")
    status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
    identity = core.identity_of(meta)
    desired: core.Desired | None
    try:
        desired = core.desired_state(_parse(spec), identity)
    except api.SpecError:
        desired = None
    managed = status.get("endpointName")
    region = _arn_region(str(status.get("endpointArn") or "")) or (desired.region if desired else None)
    if desired is not None and (not managed or str(managed).lower() == desired.endpoint_name.lower()):
        return dataclasses.replace(desired, region=region)
    if not managed:
        return None
    # An unreadable policy must not strand the finalizer; Delete is the documented default.
    policy = api.DeletionPolicy.DELETE
    if isinstance(spec, Mapping):
        with contextlib.suppress(ValueError):
            policy = api.DeletionPolicy(spec.get("deletionPolicy") or api.DeletionPolicy.DELETE.value)
    return core.Desired(
        identity=identity,
        endpoint_name=str(managed),
        region=region,
        model_name="",
        config_name="",
        model_request={},
        config_request={},
        tags=naming.ownership_tags(identity.namespace, identity.name, identity.uid),
        deletion_policy=policy,
        container_count=0,
    )


def _release(look: _Look, note: str, *, by_hand: bool = False) -> _Step:
    """Remove the finalizer; Kubernetes then deletes the object."""
    try:
        look.kube.set_finalizer(look.obj, FINALIZER, present=False)
    except KubeError as error:
        look.logger.warning(f"Could not remove the finalizer (retried in {KUBE_RETRY:g} s): {error}")
        return _Step(False, KUBE_RETRY)
    look.logger.info(note)
    look.state.released = True
    metrics.forget(look.identity.uid)
    _post(look.obj, warning=by_hand, reason="Released" if by_hand else "Deleted", message=note)
    return _Step(True)


def _stuck(look: _Look, reason: str, message: str, delay: float) -> _Step:
    """Deletion cannot proceed: say why and how to let the object go, and try again later."""
    message = (
        f"{message} The finalizer {FINALIZER} stays until this succeeds (retried every {delay:g} s); "
        f"to let the object go and clean up SageMaker by hand, annotate it {RELEASE_ANNOTATION}=true."
    )
    look.blocked(reason, message)
    return _Step(False, delay)


def _delete_step(namespace: str, name: str, uid: str, memo: Any, state: _ObjectState, logger: Log) -> _Step:
    """One step of deleting the object, on the object as it is now (read again: the release annotation
    is honoured at once)."""
    timing = _config(memo).timing
    if state.released:
        return _Step(True)
    with metrics.reconcile():
        kube: Kube = memo.kube
        try:
            obj = kube.get(namespace, name)
        except KubeError as error:
            logger.warning(f"Could not read the object being deleted (retried in {KUBE_RETRY:g} s): {error}")
            return _Step(False, KUBE_RETRY)
        current = (obj.get("metadata") or {}) if obj is not None else {}
        if obj is None or current.get("uid") != uid or FINALIZER not in (current.get("finalizers") or []):
            return _Step(True)  # gone (a new object of the same name is not this one), or released
        state.looked_at = _trigger(obj.get("metadata") or {})
        look = _Look(obj, memo, state, logger)
        annotations = look.meta.get("annotations") or {}
        if str(annotations.get(RELEASE_ANNOTATION, "")).lower() == "true":
            where = look.status.get("endpointName") or "none recorded"
            note = (
                f"Released by the {RELEASE_ANNOTATION} annotation: nothing was deleted in SageMaker "
                f"(managed endpoint: {where})"
            )
            return _release(look, note, by_hand=True)
        desired = _deletion_target(obj, look.sagemaker)
        if desired is None:
            return _release(look, "Deleted: nothing had been created in SageMaker for this object")
        memory = core.memory_of(look.status, look.identity.generation)
        try:
            _, decision = look.sagemaker.decide(
                desired,
                state.recall,
                lambda observed: core.finalize(
                    desired, look.with_targets(desired, observed, memory), timing, memory
                ),
                deleting=True,
            )
        except SageMakerError as error:
            delay = timing.busy if error.kind is not ErrorKind.TERMINAL else timing.steady
            message = f"Cannot read SageMaker's state to delete {desired.endpoint_name}: {error}."
            return _stuck(look, "DeletionBlocked", message, delay)
        for note in decision.notes:
            logger.info(note)
            _post(obj, reason="Retained", message=note)
        failure = _act(look, desired, decision)
        if failure is not None:
            delay = timing.busy if failure.kind is not ErrorKind.TERMINAL else timing.steady
            message = f"SageMaker refused {failure.operation} {failure.name}: {failure}."
            return _stuck(look, "DeletionBlocked", message, delay)
        if decision.finished:
            # No status first: the object is gone the moment the finalizer is; the Event says it all.
            return _release(look, decision.report.ready.message)
        look.publish(_status(look.status, decision.report, look.identity.generation, None, None))
        return _Step(False, decision.requeue_after)


# --- running ---------------------------------------------------------------------------------------


def operator(
    *,
    sagemaker: SageMaker,
    config: OperatorConfig,
    kube: Kube | None = None,
    autoscaling: AutoScaling | None = None,
    namespaces: list[str] | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> Any:
    """The operator as a coroutine (for ``asyncio.run`` or a thread of its own).

    No namespaces: the whole cluster. Without ``kube``, the operator's own writes use the connection in
    ``config`` or else the environment (in-cluster service account, then kubeconfig). kopf logs in with the
    connection in ``config``, else with ``kube``'s credentials."""
    if kube is None:
        kube = Kube.from_connection(config.connection) if config.connection else Kube.from_environment()
    # Application Auto Scaling with SageMaker's settings and credentials unless given.
    autoscaling = autoscaling or AutoScaling.like(sagemaker)
    priority = (
        config.peering_priority
        if config.peering_priority is not None
        else random.randint(1, 2**31 - 1)  # a tie-breaker, not a secret
    )
    identity = peering.own_identity()
    return _operate(
        kopf.Memo(
            sagemaker=sagemaker,
            autoscaling=autoscaling,
            config=config,
            kube=kube,
            kopf_login=credentials.Session(kube.credentials),
            peering_priority=priority,
        ),
        identity=identity,
        namespaces=namespaces or [],
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


async def _operate(
    memo: kopf.Memo, *, identity: str, namespaces: list[str], stop_flag: Any, ready_flag: Any
) -> None:
    config: OperatorConfig = memo.config
    executor = ThreadPoolExecutor(config.max_workers, thread_name_prefix="visit")
    memo.executor = executor
    memo.scheduler = Scheduler(
        lambda entry: _visit(memo, entry), workers=config.max_workers, on_error_delay=config.timing.busy
    )
    standby = None
    if config.peering:
        memo.scheduler.pause(True)  # until the peering object says otherwise, as kopf does
        standby = asyncio.create_task(
            _follow_peering(
                memo.scheduler,
                peering.Standby(memo.kube, config.peering, identity, memo.peering_priority, namespaces),
                drift=config.timing.drift,
            ),
            name="peering standby",
        )
    try:
        await kopf.operator(
            memo=memo,
            namespaces=namespaces,
            clusterwide=not namespaces,
            standalone=config.peering is None,
            peering_name=config.peering,
            priority=memo.peering_priority if config.peering else None,
            identity=cast(Any, identity),
            liveness_endpoint=config.liveness_endpoint,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        if standby is not None:
            standby.cancel()
        await memo.scheduler.stop()
        # Visits in progress finish their SageMaker call and status write (each is safe to repeat, but a
        # half-done one is no use); nothing new starts.
        await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)


async def _follow_peering(scheduler: Scheduler, standby: peering.Standby, *, drift: float) -> None:
    """Pause the schedule while kopf's peering pauses this replica (see :class:`peering.Standby`).

    It starts paused, as kopf does until it has seen the peering object."""
    log = logging.getLogger("mce_operator.peering")
    failure = ""
    acted = False  # the pause at start is no pause: what the events brought since is current
    while True:
        try:
            paused = await asyncio.to_thread(standby.paused)
        except Exception as error:  # whatever it is: the schedule stays as it is, and says so
            if str(error) != failure:  # once, not every second
                log.warning(f"Could not read the peering object (the schedule stays as it is): {error}")
            failure = str(error)
        else:
            failure = ""
            if paused != scheduler.paused:
                log.info(
                    "Pausing: a peer of higher or equal priority acts, or the peering object is missing."
                    if paused
                    else "Acting: no peer of higher or equal priority."
                )
                if not paused and acted:
                    # Another replica acted meanwhile: what this one remembers of SageMaker and of the
                    # statuses it wrote may be stale, and so may the bodies it holds (the watch stopped):
                    # each object's next visit reads it again first.
                    scheduler.reset_states(lambda: _ObjectState(drift))
                acted = acted or not paused
                scheduler.pause(paused)
        await asyncio.sleep(PEERING_POLL)


def configure_logging(*, verbose: bool = False, json: bool = True) -> None:
    """Structured (JSON) logs by default, each line naming the object it is about."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if json else kopf.LogFormat.FULL)
    if not verbose:
        # kopf says "Handler 'notice' succeeded." for every event of every object: not worth a line (or
        # the CPU to make the record) unless asked for with --verbose. The visits log under their own
        # name (``OBJECT_LOGGER``); kopf's warnings and errors about objects still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
