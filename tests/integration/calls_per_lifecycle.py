"""Count the SageMaker calls of one endpoint's create -> update -> delete, from the emulator's call log, and
those of an autoscaled endpoint's create -> new model -> new instance type -> delete (with Application Auto
Scaling's calls).

The operator's loop (core + adapter, as the handlers run it) drives the emulator on a manual clock, so the
counts are exact and repeatable: each wait advances the clock by the operator's busy interval instead of
sleeping. Two runs: SageMaker finishing each change within one busy interval (the fewest looks possible),
and SageMaker taking assumed, typical durations. Re-generate the document with

    .venv/bin/python tests/integration/calls_per_lifecycle.py > docs/calls-per-lifecycle.md

(test_calls_per_lifecycle.py fails when the committed document is stale).
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reconciler_kit import ENDPOINT, Harness, desired, is_mutating, make_harness, spec, with_scorer

from manual_clock import ManualClock
from mce_operator import core
from mce_operator.emulator import Emulator

PHASES = ("create", "update", "delete")
# The operator's defaults (mce-operator run --busy-interval / --steady-interval).
TIMING = core.Timing()
# Assumed SageMaker durations (seconds) for the second run; AWS publishes none. Change them here.
TYPICAL = {"create": 480.0, "update": 480.0, "delete": 120.0}

# Per operation: the fewest calls any operator needs for the lifecycle, and why this one makes more.
MINIMUM: dict[str, tuple[int, str]] = {
    "CreateModel": (2, "—"),
    "CreateEndpointConfig": (2, "—"),
    "CreateEndpoint": (1, "—"),
    "UpdateEndpoint": (1, "—"),
    "DeleteEndpointConfig": (2, "—"),
    "DeleteModel": (2, "—"),
    "DeleteEndpoint": (1, "—"),
    "DescribeEndpoint": (
        6,
        "The minimum is one look before and one after each change. The operator looks every busy "
        "interval while SageMaker works, and once more after the update's cleanup.",
    ),
    "ListTags": (
        6,
        "The minimum reads ownership only before changing what it did not just create: the endpoint "
        "before UpdateEndpoint and DeleteEndpoint, each model/config before deleting it. So does the "
        "operator: what it creates or tags it remembers, and it reads a resource's tags again before "
        "changing it. It also reads every tag in a full look (a new process, and once per drift interval: "
        "tag drift and ownership), and the tags of resources it finds and does not know.",
    ),
    "ListModels": (
        0,
        "A minimal operator could trust deterministic names and its memory. The operator lists when the "
        "spec names other resources than its last listing (names held by someone else, superseded "
        "models of any earlier spec), in a full look (a new process: half-done work after a crash; once "
        "per drift interval: out-of-band changes), and when the endpoint is not the one it remembers. "
        "Not for a new object: its status names the endpoint before anything is created for it, so "
        "with no such status nothing of its own can exist.",
    ),
    "ListEndpointConfigs": (0, "Likewise, for endpoint configs."),
    "DescribeEndpointConfig": (
        0,
        "Before deleting a superseded model or config, the operator needs which models the configs the "
        "endpoint serves use, so that nothing an endpoint still serves is deleted (what-users-hit #4), "
        "whatever the tags say. Only when there is something to delete, and read only for a config this "
        "process did not create itself (a config's content never changes).",
    ),
}


@dataclass
class Run:
    calls: dict[str, Counter[str]]
    looks: dict[str, int]
    mutating_sequence: list[tuple[str, str | None]]


class _Recording:
    """A lifecycle's calls and looks, phase by phase, from the emulator's call log."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.run = Run({}, {}, [])

    def __call__(self, phase: str, rounds: int) -> None:
        calls = self.emu.calls
        self.run.calls[phase] = Counter(call.operation for call in calls)
        self.run.looks[phase] = rounds
        self.run.mutating_sequence.extend((c.operation, c.name) for c in calls if is_mutating(c.operation))
        self.emu.clear_calls()


@contextlib.contextmanager
def _lifecycle(
    create: float, update: float, delete: float, timing: core.Timing
) -> Iterator[tuple[Emulator, Harness, ManualClock, _Recording]]:
    """The emulator on a manual clock with these durations, the operator's loop on it, and a recording."""
    clock = ManualClock()
    with Emulator(clock=clock, create_delay=create, update_delay=update, delete_delay=delete) as emu:
        yield emu, make_harness(emu, timing=timing, sleep=clock.advance), clock, _Recording(emu)


def measure(create: float, update: float, delete: float, timing: core.Timing = TIMING) -> Run:
    with _lifecycle(create, update, delete, timing) as (_, harness, _, record):
        first = spec()
        created = harness.converge(first, rounds=1000)
        record("create", created.rounds)
        second = with_scorer("scorer:2.1")
        updated = harness.converge(second, memory=created.memory, rounds=1000)
        record("update", updated.rounds)
        deleted = harness.finalize(second, rounds=1000)
        record("delete", deleted.rounds)
        assert harness.endpoints() == set() and harness.models() == set() and harness.configs() == set()
    return record.run


def minimal_sequence() -> list[tuple[str, str | None]]:
    first, second = desired(spec()), desired(with_scorer("scorer:2.1"))
    return [
        ("CreateModel", first.model_name),
        ("CreateEndpointConfig", first.config_name),
        ("CreateEndpoint", ENDPOINT),
        ("CreateModel", second.model_name),
        ("CreateEndpointConfig", second.config_name),
        ("UpdateEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", first.config_name),
        ("DeleteModel", first.model_name),
        ("DeleteEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", second.config_name),
        ("DeleteModel", second.model_name),
    ]


def _total(run: Run, operation: str) -> int:
    return sum(run.calls[phase][operation] for phase in PHASES)


def render(fast: Run, typical: Run) -> str:
    operations = sorted(
        {op for run in (fast, typical) for phase in PHASES for op in run.calls[phase]},
        key=lambda op: (not is_mutating(op), list(MINIMUM).index(op) if op in MINIMUM else 99, op),
    )
    lines = [
        "# SageMaker calls per endpoint lifecycle",
        "",
        "<!-- Generated by tests/integration/calls_per_lifecycle.py; do not edit by hand. -->",
        "",
        "One `MultiContainerEndpoint` (two containers, Direct mode) is created, updated once (a new image, "
        "so a new model and config) and deleted. The operator's own loop (`core` + the boto3 adapter, run "
        "as the kopf handlers run it) drives the SageMaker emulator; the counts come from the emulator's "
        "call log. The emulator runs on a manual clock that advances by the operator's busy interval "
        f"({TIMING.busy:g} s) at each wait, so the numbers are exact and repeatable.",
        "",
        "- **fast**: SageMaker finishes every create, update and delete within one busy interval: the "
        "fewest looks the operator can make.",
        f"- **typical**: SageMaker takes {TYPICAL['create']:g} s to create, {TYPICAL['update']:g} s to "
        f"update and {TYPICAL['delete']:g} s to delete (assumed; AWS publishes no figures).",
        "",
        "| operation | fast: create + update + delete | fast total | typical total | minimum | "
        "why the difference |",
        "|---|---|---|---|---|---|",
    ]
    for op in operations:
        per_phase = " + ".join(str(fast.calls[phase][op]) for phase in PHASES)
        minimum, why = MINIMUM.get(op, (0, "Not expected in this lifecycle."))
        lines.append(
            f"| {op} | {per_phase} | {_total(fast, op)} | {_total(typical, op)} | {minimum} | {why} |"
        )

    def sums(run: Run, mutating: bool) -> int:
        return sum(_total(run, op) for op in operations if is_mutating(op) is mutating)

    minimum_mutating = sum(n for op, (n, _) in MINIMUM.items() if is_mutating(op))
    minimum_reads = sum(n for op, (n, _) in MINIMUM.items() if not is_mutating(op))
    lines += [
        f"| **mutating calls** | | **{sums(fast, True)}** | **{sums(typical, True)}** | "
        f"**{minimum_mutating}** | |",
        f"| **reads** | | **{sums(fast, False)}** | **{sums(typical, False)}** | **{minimum_reads}** | |",
        "",
        f"Looks (observe + decide), fast: create {fast.looks['create']}, update {fast.looks['update']}, "
        f"delete {fast.looks['delete']}; typical: create {typical.looks['create']}, "
        f"update {typical.looks['update']}, delete {typical.looks['delete']}.",
        "",
        "## Reading the numbers",
        "",
        "- The mutating calls are exactly the minimum, in this order (asserted by "
        "`tests/integration/test_calls_per_lifecycle.py`):",
        "",
    ]
    lines += [f"  {i}. `{op}` {name}" for i, (op, name) in enumerate(fast.mutating_sequence, 1)]
    lines += [
        "",
        "  No tag call is made: the tags are given at creation. A tag-only change costs one `AddTags` "
        "and/or one `DeleteTags` per resource (endpoint, model, config) and nothing else.",
        "- Every look describes the endpoint. The rest is read only when what the process remembers of "
        "the object (`sagemaker.Recall`: what it last read, and what its own calls made) cannot be "
        "trusted. A **full look** reads `ListModels` + `ListEndpointConfigs` + one `ListTags` per "
        "resource found (6 reads for an endpoint at rest): in a new process, and at most one drift "
        f"interval (`--drift-interval`, {TIMING.drift:g} s, less up to a quarter at random so that objects "
        "created together spread out) after the last one. It **relists** (the two List calls, and the "
        "tags of what it does not know) when the spec names other resources, or the endpoint is not the "
        "one it remembers. Otherwise a look is `DescribeEndpoint` alone.",
        "- Before any call that changes what exists (UpdateEndpoint, a delete, a tag change), the "
        "operator reads the tags of its target unless this look just read them; if they are not what it "
        'remembered, it reads everything and decides again. A create needs no read: an "already '
        'exists" it did not expect makes it read everything and decide again.',
        "- After the cleanup that follows an update, the operator looks once more (busy interval) before "
        "settling on the steady interval; that confirming look is the update's last one.",
        f"- At rest: one look per steady interval ({TIMING.steady:g} s), `DescribeEndpoint` alone, and a "
        f"full look every {0.75 * TIMING.drift:g} to {TIMING.drift:g} s: "
        f"{1 + 5 * TIMING.steady / TIMING.drift:.2f} to {1 + 5 * TIMING.steady / (0.75 * TIMING.drift):.2f} "
        "reads per steady interval on average, no mutating call. A change made outside the operator to "
        "the endpoint (deleted, failed, moved to another config) is seen within a steady interval; to a "
        f"model, a config or a tag, within the drift interval and one steady interval "
        f"({(TIMING.drift + TIMING.steady) / 60:g} min at the defaults).",
        "- While SageMaker works, reads grow with its duration: one look per busy interval. A longer "
        "`--busy-interval` trades reaction time for fewer reads; the client-side rate limit "
        "(`--calls-per-second`) caps the total across all objects.",
        "",
    ]
    return "\n".join(lines)


# --- An autoscaled lifecycle ---------------------------------------------------------------------------

AUTOSCALED_PHASES = ("create", "new model", "new instance type", "delete")
SCALING = {"minCapacity": 1, "maxCapacity": 4, "targetTracking": {"invocationsPerInstance": 70}}
RESOURCE = f"endpoint/{ENDPOINT}/variant/AllTraffic"

MINIMUM_AUTOSCALED: dict[str, tuple[int, str]] = {
    "CreateModel": (2, "—"),
    "CreateEndpointConfig": (3, "—"),
    "CreateEndpoint": (1, "—"),
    "UpdateEndpoint": (2, "—"),
    "DeleteEndpointConfig": (3, "—"),
    "DeleteModel": (2, "—"),
    "DeleteEndpoint": (1, "—"),
    "RegisterScalableTarget": (2, "—"),
    "PutScalingPolicy": (2, "—"),
    "DeregisterScalableTarget": (
        1,
        "The minimum deregisters only before the update that changes the instance type, which SageMaker "
        "refuses while the variant is registered: DeleteEndpoint deregisters an endpoint's targets by "
        "itself when the caller may. The operator deregisters before deleting too, so that a refusal is "
        "its own Event and Degraded reason rather than a failed DeleteEndpoint.",
    ),
    "DescribeScalableTargets": (
        0,
        "A minimal operator could trust its memory. The operator reads the endpoint's targets on every "
        "look at an autoscaled endpoint that is not busy: what it finds missing (after a crash, a "
        "rollback, a refused update) is registered again.",
    ),
    "DescribeScalingPolicies": (0, "Likewise, once per registered target."),
}


def autoscaled_specs() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    first = spec(autoscaling=SCALING)
    second = with_scorer("scorer:2.1", autoscaling=SCALING)
    third = with_scorer("scorer:2.1", autoscaling=SCALING, instanceType="ml.m5.xlarge")
    return first, second, third


def measure_autoscaled(create: float, update: float, delete: float, timing: core.Timing = TIMING) -> Run:
    """Create with autoscaling; autoscaling scales out; a new image; a new instance type; delete."""
    with _lifecycle(create, update, delete, timing) as (emu, harness, clock, record):
        first, second, third = autoscaled_specs()
        created = harness.converge(first, rounds=1000)
        record("create", created.rounds)
        # Autoscaling scales out (not the operator's call); the operator only watches the endpoint finish.
        emu.scale_variant(ENDPOINT, "AllTraffic", 3)
        clock.advance(update)
        emu.clear_calls()
        model = harness.converge(second, memory=created.memory, rounds=1000)
        record("new model", model.rounds)
        instance = harness.converge(third, memory=model.memory, rounds=1000)
        record("new instance type", instance.rounds)
        assert harness.instance_counts() == (3, 3), "the count autoscaling chose is kept"
        deleted = harness.finalize(third, memory=instance.memory, rounds=1000)
        record("delete", deleted.rounds)
        assert harness.endpoints() == set() and harness.models() == set() and harness.configs() == set()
        assert harness.targets() == {}
    return record.run


def autoscaled_sequence() -> list[tuple[str, str | None]]:
    """The operator's mutating calls: the minimum, plus the deregistration before DeleteEndpoint."""
    first, second, third = (desired(raw) for raw in autoscaled_specs())
    return [
        ("CreateModel", first.model_name),
        ("CreateEndpointConfig", first.config_name),
        ("CreateEndpoint", ENDPOINT),
        ("RegisterScalableTarget", RESOURCE),
        ("PutScalingPolicy", RESOURCE),
        ("CreateModel", second.model_name),
        ("CreateEndpointConfig", second.config_name),
        ("UpdateEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", first.config_name),
        ("DeleteModel", first.model_name),
        ("DeregisterScalableTarget", RESOURCE),
        ("CreateEndpointConfig", third.config_name),
        ("UpdateEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", second.config_name),
        ("RegisterScalableTarget", RESOURCE),
        ("PutScalingPolicy", RESOURCE),
        ("DeregisterScalableTarget", RESOURCE),
        ("DeleteEndpoint", ENDPOINT),
        ("DeleteEndpointConfig", third.config_name),
        ("DeleteModel", third.model_name),
    ]


def render_autoscaled(fast: Run, typical: Run) -> str:
    phases = AUTOSCALED_PHASES

    def total(run: Run, operation: str) -> int:
        return sum(run.calls[phase][operation] for phase in phases)

    operations = sorted(
        {op for run in (fast, typical) for phase in phases for op in run.calls[phase]},
        key=lambda op: (
            not is_mutating(op),
            list(MINIMUM_AUTOSCALED).index(op) if op in MINIMUM_AUTOSCALED else 99,
            op,
        ),
    )
    lines = [
        "",
        "## An autoscaled lifecycle",
        "",
        "The same endpoint with `spec.autoscaling` (1 to 4 instances, 70 invocations per instance): "
        "created, scaled out to 3 instances by autoscaling (the emulator's `scale_variant`, not the "
        "operator), given a new image (a new model: the variant stays registered and `UpdateEndpoint` "
        "keeps the 3 instances), then a new instance type (SageMaker refuses that while the variant is "
        "registered: deregister, update, register again once InService), then deleted. Same clock and "
        "durations as above; the emulator serves SageMaker and Application Auto Scaling.",
        "",
        "| operation | fast: "
        + " + ".join(phases)
        + " | fast total | typical total | minimum | why the difference |",
        "|---|---|---|---|---|---|",
    ]
    for op in operations:
        per_phase = " + ".join(str(fast.calls[phase][op]) for phase in phases)
        minimum, why = MINIMUM_AUTOSCALED.get(op, (None, "As in the lifecycle above."))
        shown = "—" if minimum is None else str(minimum)
        lines.append(f"| {op} | {per_phase} | {total(fast, op)} | {total(typical, op)} | {shown} | {why} |")
    mutating_fast = sum(total(fast, op) for op in operations if is_mutating(op))
    mutating_typical = sum(total(typical, op) for op in operations if is_mutating(op))
    minimum_mutating = sum(n for op, (n, _) in MINIMUM_AUTOSCALED.items() if is_mutating(op))
    reads_fast = sum(total(fast, op) for op in operations if not is_mutating(op))
    reads_typical = sum(total(typical, op) for op in operations if not is_mutating(op))
    lines += [
        f"| **mutating calls** | | **{mutating_fast}** | **{mutating_typical}** | **{minimum_mutating}** | |",
        f"| **reads** | | **{reads_fast}** | **{reads_typical}** | | |",
        "",
        "Looks, fast: "
        + ", ".join(f"{phase} {fast.looks[phase]}" for phase in phases)
        + "; typical: "
        + ", ".join(f"{phase} {typical.looks[phase]}" for phase in phases)
        + ".",
        "",
        "The mutating calls, in this order (asserted by `tests/integration/test_calls_per_lifecycle.py`):",
        "",
    ]
    lines += [f"{i}. `{op}` {name}" for i, (op, name) in enumerate(fast.mutating_sequence, 1)]
    lines += [
        "",
        "The only call beyond the minimum is the deregistration before `DeleteEndpoint`. No "
        "`DeleteScalingPolicy` is made: deregistering a scalable target deletes its policies. An autoscaled "
        "endpoint at rest costs two more reads per look than a plain one (`DescribeScalableTargets`, "
        "`DescribeScalingPolicies`); a plain one costs none, unless its status still records a target.",
        "",
    ]
    return "\n".join(lines)


def generate() -> str:
    fast = measure(TIMING.busy, TIMING.busy, TIMING.busy)
    typical = measure(TYPICAL["create"], TYPICAL["update"], TYPICAL["delete"])
    scaled_fast = measure_autoscaled(TIMING.busy, TIMING.busy, TIMING.busy)
    scaled_typical = measure_autoscaled(TYPICAL["create"], TYPICAL["update"], TYPICAL["delete"])
    return render(fast, typical) + render_autoscaled(scaled_fast, scaled_typical)


if __name__ == "__main__":
    sys.stdout.write(generate())
