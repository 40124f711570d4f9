"""``kubectl mce diff``: what applying a manifest would cause, from the object in the cluster and SageMaker.

The verdict is the operator's own: the live object's identity and status memory (core.identity_of,
core.memory_of), SageMaker as the adapter observes it, and core.reconcile run step after step on a model
of SageMaker in which each call has done what it asks (SageMaker's waits skipped) until there is nothing
left to do. So the plan lists every call the operator will make, in order, clean-up included, and the
outcome is read from it:

    nothing                 no call, or only repairs of drift the operator makes anyway
    tags only               AddTags/DeleteTags; the endpoint is not updated
    new endpoint config     the same model on a new fleet: UpdateEndpoint to a new config (blue/green)
    new model and config    a new model on a new fleet: CreateModel, a new config, UpdateEndpoint
    new endpoint            CreateEndpoint: the endpoint is new, or Failed and recreated
    refused                 the apiserver refuses the change (an immutable field), or the operator would
                            (a SageMaker name owned by someone else)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from mce_operator import api, core
from mce_operator.cli_tools.crd_eval import CrdEvaluator, format_path
from mce_operator.cli_tools.manifests import FieldPath
from mce_operator.sagemaker import SageMaker

MAX_STEPS = 12


@dataclass(frozen=True)
class Outcome:
    name: str
    exit_code: int
    meaning: str


NOTHING = Outcome("nothing", 0, "nothing changes in SageMaker")
TAGS = Outcome("tags only", 10, "tags change in place (AddTags/DeleteTags); the endpoint is not updated")
NEW_CONFIG = Outcome(
    "new endpoint config",
    11,
    "a new endpoint config: the endpoint moves to a new fleet with the same model (blue/green)",
)
NEW_MODEL = Outcome(
    "new model and config",
    12,
    "a new model and endpoint config: the endpoint moves to a new fleet running the new model (blue/green)",
)
NEW_ENDPOINT = Outcome("new endpoint", 13, "the endpoint is created, or deleted and created again")
REFUSED = Outcome("refused", 14, "the change would be refused: nothing is applied")
# Ordered from the least to the most disruptive: a run over several objects exits with the last one's.
OUTCOMES = (NOTHING, TAGS, NEW_CONFIG, NEW_MODEL, NEW_ENDPOINT, REFUSED)
ERROR_EXIT = 1


@dataclass(frozen=True)
class Change:
    field: str
    live: Any
    manifest: Any


@dataclass
class Result:
    namespace: str
    name: str
    source: str
    line: int
    outcome: Outcome
    reasons: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    plan: list[core.Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    endpoint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "file": self.source,
            "line": self.line,
            "outcome": self.outcome.name,
            "exitCode": self.outcome.exit_code,
            "meaning": self.outcome.meaning,
            "reasons": self.reasons,
            "endpoint": self.endpoint,
            "changes": [{"field": c.field, "live": c.live, "manifest": c.manifest} for c in self.changes],
            "plan": [{"operation": a.operation, "name": a.name, "params": dict(a.params)} for a in self.plan],
            "notes": self.notes,
        }

    def text(self) -> str:
        out = [f"{self.namespace}/{self.name}: {self.outcome.name} ({self.source}:{self.line})"]
        out.append(f"  {self.outcome.meaning}")
        out += [f"  refused: {reason}" for reason in self.reasons]
        out += [f"  {c.field}: {_show(c.live)} -> {_show(c.manifest)}" for c in self.changes]
        if self.endpoint:
            out.append(f"  SageMaker: {self.endpoint}")
        out += [f"  note: {note}" for note in self.notes]
        if self.plan:
            out.append("  SageMaker calls, in order:")
            out += [f"    {describe(action)}" for action in self.plan]
        return "\n".join(out)


def worst(results: Sequence[Result]) -> Outcome:
    return max((r.outcome for r in results), key=OUTCOMES.index, default=NOTHING)


def describe(action: core.Action) -> str:
    params = action.params
    if action.operation == "UpdateEndpoint":
        return f"UpdateEndpoint {action.name} to {params['EndpointConfigName']}"
    if action.operation == "CreateEndpoint":
        return f"CreateEndpoint {action.name} with {params['EndpointConfigName']}"
    if action.operation == "AddTags":
        tags = ", ".join(f"{t['Key']}={t['Value']}" for t in params["Tags"])
        return f"AddTags {action.name}: {tags}"
    if action.operation == "DeleteTags":
        return f"DeleteTags {action.name}: {', '.join(params['TagKeys'])}"
    return f"{action.operation} {action.name}"


def _show(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value, ensure_ascii=False)


def changes(old: Any, new: Any, path: FieldPath = ("spec",)) -> Iterator[Change]:
    """Field by field, what the manifest changes in the live object's (defaulted) spec; None stands for
    an absent field (the apiserver drops nulls, so the two mean the same)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            yield from changes(old.get(key), new.get(key), (*path, key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from changes(a, b, (*path, index))
    elif old != new:
        yield Change(format_path(path), old, new)


class Differ:
    def __init__(self, sagemaker: SageMaker, crd: CrdEvaluator | None = None) -> None:
        self.sagemaker = sagemaker
        self.crd = crd or CrdEvaluator.from_models()

    def diff(
        self,
        obj: dict[str, Any],
        live: dict[str, Any] | None,
        *,
        default_namespace: str,
        source: str = "",
        line: int = 0,
    ) -> Result:
        """``obj`` must be valid (kubectl mce validate's rules); SageMakerError when SageMaker cannot be
        read."""
        meta = dict(obj.get("metadata") or {})
        meta.setdefault("namespace", default_namespace)
        result = Result(str(meta["namespace"]), str(meta.get("name")), source, line, NOTHING)
        spec = api.parse_spec(dict(obj["spec"]))
        status: Mapping[str, Any] = {}
        if live is None:
            # A new object: its uid is not known yet, so nothing in SageMaker can be its own (unless
            # adopted: the annotation matches by namespace and name).
            identity = core.identity_of({**meta, "uid": "", "generation": 1})
            result.notes.append("the object does not exist in the cluster yet")
        else:
            result.reasons = [str(p) for p in self.crd.update_problems(live, obj)]
            live_meta = dict(live.get("metadata") or {})
            old_spec = self.crd.prune_and_default(live).get("spec")
            new_spec = self.crd.prune_and_default(obj).get("spec")
            result.changes = list(changes(old_spec, new_spec))
            generation = int(live_meta.get("generation") or 1) + (1 if result.changes else 0)
            annotations = {**(live_meta.get("annotations") or {}), **(meta.get("annotations") or {})}
            identity = core.identity_of({**live_meta, "generation": generation, "annotations": annotations})
            status = live.get("status") or {}
        desired = core.desired_state(spec, identity)
        result.reasons += _managed_elsewhere(status, desired)
        if result.reasons:
            result.outcome = REFUSED
            return result

        observed = self.sagemaker.observe_all(desired)
        endpoint = observed.endpoint
        if endpoint is None:
            result.endpoint = f"no endpoint {desired.endpoint_name}"
        else:
            result.endpoint = f"endpoint {endpoint.name} is {endpoint.status} on {endpoint.config_name}"
            if endpoint.status in core.BUSY:
                result.notes.append(
                    f"SageMaker is working on the endpoint ({endpoint.status}): the operator acts once it is "
                    "done; shown as if it ended on its current config"
                )
                observed = dataclasses.replace(
                    observed, endpoint=dataclasses.replace(endpoint, status="InService")
                )
        first, plan = simulate(desired, observed, core.memory_of(status, identity.generation))
        result.plan = plan
        if first.report.degraded.status:
            result.notes.append(f"the operator would report Degraded: {first.report.degraded.message}")
        if first.report.degraded.reason == "NotOwned":
            result.outcome = REFUSED
            result.reasons.append(first.report.degraded.message)
            return result
        result.outcome = self._outcome(desired, endpoint, plan)
        return result

    def _outcome(
        self, desired: core.Desired, endpoint: core.ObservedEndpoint | None, plan: Sequence[core.Action]
    ) -> Outcome:
        operations = {action.operation for action in plan}
        if "CreateEndpoint" in operations:
            return NEW_ENDPOINT
        if "UpdateEndpoint" in operations and endpoint is not None:
            served = self._served_model(desired.region, endpoint.config_name)
            if served is None:
                return NEW_MODEL if "CreateModel" in operations else NEW_CONFIG
            return NEW_CONFIG if served.lower() == desired.model_name.lower() else NEW_MODEL
        if operations & {"AddTags", "DeleteTags"}:
            return TAGS
        return NOTHING

    def _served_model(self, region: str | None, config_name: str) -> str | None:
        """The model in the config the endpoint serves; None when that config is gone."""
        try:
            config = self.sagemaker.client(region).describe_endpoint_config(EndpointConfigName=config_name)
        except botocore.exceptions.ClientError:
            return None
        variants = config.get("ProductionVariants") or [{}]
        model: str | None = variants[0].get("ModelName")
        return model


def _managed_elsewhere(status: Mapping[str, Any], desired: core.Desired) -> list[str]:
    """The operator's own immutability check, for an object whose CRD rule was bypassed before: its
    status names the endpoint it manages."""
    recorded = status.get("endpointName")
    if status.get("endpointArn") and recorded and str(recorded).lower() != desired.endpoint_name.lower():
        return [
            f"spec.endpointName: this object manages endpoint {recorded!r}; the operator would not follow "
            f"the change to {desired.endpoint_name!r} (create a new object for another endpoint)"
        ]
    return []


# --- the operator's steps, on a SageMaker that does what it is asked at once ---------------------------


def simulate(
    desired: core.Desired, observed: core.Observed, memory: core.Memory
) -> tuple[core.Decision, list[core.Action]]:
    """The first decision, and every call of the reconciles until nothing is left to do."""
    first = core.reconcile(desired, observed, memory)
    decision, plan = first, list[core.Action]()
    for _ in range(MAX_STEPS):
        if not decision.actions:
            return first, plan
        plan += decision.actions
        for action in decision.actions:
            observed = _apply(observed, action)
        memory = dataclasses.replace(
            memory, last_deployment=decision.last_deployment or memory.last_deployment
        )
        decision = core.reconcile(desired, observed, memory)
    raise RuntimeError(f"the operator's plan does not settle after {MAX_STEPS} steps: {plan}")


def _tags(items: Sequence[Mapping[str, str]]) -> dict[str, str]:
    return {item["Key"]: item["Value"] for item in items}


def _retag(
    observed: core.Observed, arn: str, change: Callable[[Mapping[str, str]], dict[str, str]]
) -> core.Observed:
    endpoint = observed.endpoint
    if endpoint is not None and endpoint.arn == arn:
        endpoint = dataclasses.replace(endpoint, tags=change(endpoint.tags))
    return core.Observed(
        endpoint=endpoint,
        models=[dataclasses.replace(m, tags=change(m.tags)) if m.arn == arn else m for m in observed.models],
        configs=[
            dataclasses.replace(c, tags=change(c.tags)) if c.arn == arn else c for c in observed.configs
        ],
    )


def _apply(observed: core.Observed, action: core.Action) -> core.Observed:
    """SageMaker after one call, as the adapter would observe it. Built afresh, not copied: whatever else
    the adapter reports about the world before the call (e.g. what the endpoint serves) would be stale
    after it, and the simulation keeps only the endpoint, models and configs."""
    params = action.params
    operation = action.operation
    arn = f"simulated:{operation}:{action.name}"
    endpoint, models, configs = observed.endpoint, list(observed.models), list(observed.configs)
    if operation == "CreateModel":
        models.append(core.Tagged(action.name, arn, _tags(params.get("Tags") or [])))
    elif operation == "CreateEndpointConfig":
        configs.append(core.Tagged(action.name, arn, _tags(params.get("Tags") or [])))
    elif operation == "CreateEndpoint":
        tags = _tags(params.get("Tags") or [])
        endpoint = core.ObservedEndpoint(
            action.name, arn, "InService", params["EndpointConfigName"], "", tags
        )
    elif operation == "UpdateEndpoint" and endpoint is not None:
        endpoint = dataclasses.replace(
            endpoint, status="InService", config_name=params["EndpointConfigName"], failure_reason=""
        )
    elif operation == "DeleteEndpoint":
        endpoint = None
    elif operation == "DeleteModel":
        models = [m for m in models if m.name != action.name]
    elif operation == "DeleteEndpointConfig":
        configs = [c for c in configs if c.name != action.name]
    elif operation == "AddTags":
        added = _tags(params["Tags"])
        return _retag(observed, params["ResourceArn"], lambda tags: {**tags, **added})
    elif operation == "DeleteTags":
        dropped = set(params["TagKeys"])
        return _retag(
            observed, params["ResourceArn"], lambda tags: {k: v for k, v in tags.items() if k not in dropped}
        )
    else:
        raise ValueError(f"the plan has a call kubectl mce diff does not know: {operation}")
    return core.Observed(endpoint=endpoint, models=models, configs=configs)
