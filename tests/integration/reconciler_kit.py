"""Core + adapters against the emulator, driven the way the operator's handlers drive them.

``Harness.converge`` is the handler's loop without Kubernetes (``handlers._look_at``): observe
(SageMaker with the object's ``Recall``, then Application Auto Scaling), reconcile and confirm
(``SageMaker.decide``) -> execute each action by its service's adapter -> remember ``lastDeployment``
once every action succeeded, or a terminal failure for this generation, and the scalable target observed
(``core.memory_of``). Like the handler, it says the object is no longer untouched (the status names its
endpoint) before the first action, and looks again at once after an "already exists" its recall did not
expect. It can stop after the k-th mutating call, as if the operator had crashed there: the next
converge is then a new process (nothing recalled) starting from what the status would hold.
``pass_time`` moves the SageMaker adapter's clock, e.g. past the drift interval.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
import botocore.config

from mce_operator import core
from mce_operator.api import parse_spec
from mce_operator.autoscaling import AutoScaling
from mce_operator.emulator import Emulator
from mce_operator.errors import ErrorKind
from mce_operator.sagemaker import Recall, SageMaker, SageMakerError, SageMakerSettings

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}"
ENDPOINT = "fraud-prod"
IDENTITY = core.Identity(namespace="ml", name="fraud", uid="uid-1", generation=1)
# The handler's timing, scaled down: the emulator's lifecycle delays are 0.1 s.
TIMING = core.Timing(busy=0.05, steady=300.0)

MUTATING_PREFIXES = ("Create", "Update", "Delete", "Add", "Register", "Deregister", "Put")


def is_mutating(operation: str) -> bool:
    return operation.startswith(MUTATING_PREFIXES)


def spec(**overrides: Any) -> dict[str, Any]:
    """A two-container Direct spec; keyword arguments replace top-level fields."""
    raw: dict[str, Any] = {
        "endpointName": ENDPOINT,
        "executionRoleArn": ROLE,
        "mode": "Direct",
        "containers": [
            {"containerHostname": "features", "image": IMAGE.format(name="features:1.4")},
            {"containerHostname": "scorer", "image": IMAGE.format(name="scorer:2.0")},
        ],
        "instanceType": "ml.m5.large",
        "tags": {"team": "risk"},
    }
    raw.update(copy.deepcopy(overrides))
    return raw


def with_scorer(image: str, **overrides: Any) -> dict[str, Any]:
    raw = spec(**overrides)
    raw["containers"][1]["image"] = IMAGE.format(name=image)
    return raw


def desired(raw: Mapping[str, Any], identity: core.Identity = IDENTITY) -> core.Desired:
    return core.desired_state(parse_spec(dict(raw)), identity)


def next_generation(memory: core.Memory) -> core.Memory:
    """What ``handlers._memory`` reads for a new generation: a terminal failure belongs to the old one."""
    return core.Memory(last_deployment=memory.last_deployment)


class Crash(Exception):
    """The operator died right after a SageMaker call; ``memory`` is what its status held then."""

    def __init__(self, memory: core.Memory) -> None:
        super().__init__("crashed")
        self.memory = memory


@dataclass
class Result:
    decision: core.Decision
    memory: core.Memory
    rounds: int
    # emulator snapshots taken after every round, for "when did what exist" assertions
    history: list[dict[str, Any]] = field(default_factory=list)
    # every round's decision, in order
    decisions: list[core.Decision] = field(default_factory=list)

    @property
    def conditions(self) -> dict[str, str]:
        report = self.decision.report
        return {
            "Ready": f"{report.ready.status}/{report.ready.reason}",
            "Progressing": f"{report.progressing.status}/{report.progressing.reason}",
            "Degraded": f"{report.degraded.status}/{report.degraded.reason}",
        }


@dataclass
class Harness:
    emu: Emulator
    sagemaker: SageMaker
    client: Any
    autoscaling: AutoScaling
    scaling_client: Any
    timing: core.Timing = TIMING
    # How to wait for the next look: real sleep, or advancing the emulator's manual clock.
    sleep: Callable[[float], None] = time.sleep
    # Mutating calls executed by converge/finalize so far (the crash counter).
    executed: int = 0
    # The process's memory of this object's SageMaker resources (a crash starts a new one).
    recall: Recall = field(default_factory=Recall)
    # Whether the status names an endpoint (written before the first action, and never lost).
    touched: bool = False
    # Added to time.monotonic() for the adapter (see make_harness).
    offset: float = 0.0

    def __post_init__(self) -> None:
        self.recall.drift = self.timing.drift

    def restart(self) -> None:
        """A new operator process: nothing recalled."""
        self.recall = Recall(drift=self.timing.drift)

    def pass_time(self, seconds: float) -> None:
        """Move the adapter's clock (not the emulator's) forward."""
        self.offset += seconds

    def _run(
        self,
        decide: Callable[[core.Desired, core.Observed, core.Memory], core.Decision],
        target: core.Desired,
        memory: core.Memory,
        *,
        rounds: int,
        crash_after: int | None,
        done: Callable[[core.Decision], bool],
        deleting: bool = False,
    ) -> Result:
        history: list[dict[str, Any]] = []
        decisions: list[core.Decision] = []
        for round_number in range(1, rounds + 1):
            try:
                _, decision = self.sagemaker.decide(
                    target,
                    self.recall,
                    lambda observed: decide(target, self._scaled(target, observed, memory), memory),  # noqa: B023
                    deleting=deleting,
                    untouched=not self.touched and not deleting,
                )
            except SageMakerError as error:
                assert error.kind is ErrorKind.RETRY, error
                self.sleep(self.timing.busy)
                continue
            decisions.append(decision)
            if decision.actions and not self.touched:
                self.touched = True
                intent = decision.last_deployment
                if intent is not None and intent.from_endpoint_config_name is None:
                    memory = replace(memory, last_deployment=intent)
            failure: SageMakerError | None = None
            for action in decision.actions:
                try:
                    if action.service == core.AUTOSCALING:
                        self.autoscaling.execute(target.region, action)
                    else:
                        self.sagemaker.execute(target.region, action, self.recall)
                except SageMakerError as error:
                    failure = error
                    break
                self.executed += 1
                if crash_after is not None and self.executed >= crash_after:
                    self.restart()
                    raise Crash(memory)
            if failure is not None and failure.kind is ErrorKind.EXISTS:
                continue  # the handler looks again at once, reading everything
            # status.autoscaling: what the look observed (or remembered), written whatever happened.
            memory = replace(memory, autoscaling=decision.report.autoscaling)
            if failure is None:
                memory = replace(memory, last_deployment=decision.last_deployment or memory.last_deployment)
            elif failure.kind is ErrorKind.TERMINAL:
                memory = replace(memory, terminal_failure=str(failure), terminal_reason=failure.rule.reason)
            history.append(self.emu.snapshot())
            if failure is None and done(decision):
                return Result(decision, memory, round_number, history, decisions)
            self.sleep(min(decision.requeue_after, self.timing.busy))
        raise AssertionError(f"did not converge in {rounds} rounds; last decision: {decision}")

    def converge(
        self,
        raw: Mapping[str, Any],
        identity: core.Identity = IDENTITY,
        memory: core.Memory | None = None,
        *,
        rounds: int = 80,
        crash_after: int | None = None,
    ) -> Result:
        """Reconcile until the world is at rest (no calls to make, nothing to wait for)."""

        def at_rest(decision: core.Decision) -> bool:
            return not decision.actions and decision.requeue_after >= self.timing.steady

        return self._run(
            lambda d, o, m: core.reconcile(d, o, m, self.timing),
            desired(raw, identity),
            memory or core.Memory(),
            rounds=rounds,
            crash_after=crash_after,
            done=at_rest,
        )

    def finalize(
        self,
        raw: Mapping[str, Any],
        identity: core.Identity = IDENTITY,
        *,
        rounds: int = 80,
        memory: core.Memory | None = None,
    ) -> Result:
        """The delete handler's loop until the finalizer may go (``memory``: what the status holds)."""
        return self._run(
            lambda d, o, m: core.finalize(d, o, self.timing, m),
            desired(raw, identity),
            memory or core.Memory(),
            rounds=rounds,
            crash_after=None,
            done=lambda decision: decision.finished,
            deleting=True,
        )

    def observe(self, target: core.Desired, memory: core.Memory, *, deleting: bool = False) -> core.Observed:
        """Everything, read afresh (no recall)."""
        return self._scaled(target, self.sagemaker.observe(target, deleting=deleting), memory)

    def _scaled(self, target: core.Desired, observed: core.Observed, memory: core.Memory) -> core.Observed:
        return self.autoscaling.observe(
            target, observed, remembered=memory.autoscaling is not None, sagemaker=self.sagemaker
        )

    # --- SageMaker's real state, read with plain boto3 ---------------------------------------------

    def models(self) -> set[str]:
        return {m["ModelName"] for m in self.client.list_models(MaxResults=100)["Models"]}

    def configs(self) -> set[str]:
        return {
            c["EndpointConfigName"]
            for c in self.client.list_endpoint_configs(MaxResults=100)["EndpointConfigs"]
        }

    def endpoints(self) -> set[str]:
        return {e["EndpointName"] for e in self.client.list_endpoints(MaxResults=100)["Endpoints"]}

    def endpoint(self, name: str = ENDPOINT) -> dict[str, Any]:
        result: dict[str, Any] = self.client.describe_endpoint(EndpointName=name)
        return result

    def tags(self, arn: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.client.list_tags(ResourceArn=arn)["Tags"]}

    def mutating_calls(self) -> list[tuple[str, str | None]]:
        return [(c.operation, c.name) for c in self.emu.calls if is_mutating(c.operation)]

    def targets(self) -> dict[str, dict[str, Any]]:
        """Application Auto Scaling's scalable targets by ResourceId, each with its policies by name."""
        found = self.scaling_client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        policies = self.scaling_client.describe_scaling_policies(ServiceNamespace="sagemaker")[
            "ScalingPolicies"
        ]
        return {
            t["ResourceId"]: {
                "min": t["MinCapacity"],
                "max": t["MaxCapacity"],
                "policies": {
                    p["PolicyName"]: p.get("TargetTrackingScalingPolicyConfiguration")
                    for p in policies
                    if p["ResourceId"] == t["ResourceId"]
                },
            }
            for t in found
        }

    def instance_counts(self, name: str = ENDPOINT) -> tuple[int, int]:
        (variant,) = self.endpoint(name)["ProductionVariants"]
        return variant["DesiredInstanceCount"], variant["CurrentInstanceCount"]


# One session for every test: its loader caches botocore's SageMaker model, which takes ~0.2 s to load.
_SESSION = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")


def make_harness(
    emu: Emulator,
    *,
    timing: core.Timing = TIMING,
    sleep: Callable[[float], None] = time.sleep,
    **settings: Any,
) -> Harness:
    """The adapter as the operator builds it (standard retries; no rate limit unless given) and a plain
    boto3 client for assertions."""
    settings.setdefault("calls_per_second", 0)
    sagemaker = SageMaker(
        SageMakerSettings(region="us-east-1", endpoint_url=emu.url, **settings),
        session=_SESSION,
        clock=lambda: time.monotonic() + harness.offset,
    )
    plain = botocore.config.Config(retries={"mode": "standard", "max_attempts": 1})
    client = _SESSION.client("sagemaker", endpoint_url=emu.url, config=plain)
    scaling_client = _SESSION.client("application-autoscaling", endpoint_url=emu.url, config=plain)
    harness = Harness(
        emu,
        sagemaker,
        client,
        AutoScaling.like(sagemaker),
        scaling_client,
        timing=timing,
        sleep=sleep,
    )
    return harness
