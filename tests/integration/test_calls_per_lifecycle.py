"""The SageMaker calls of one create -> update -> delete: exactly the minimal mutating sequence, and
docs/calls-per-lifecycle.md states the current numbers."""

from __future__ import annotations

from pathlib import Path

import calls_per_lifecycle as lifecycle

DOC = Path(__file__).parents[2] / "docs" / "calls-per-lifecycle.md"


def test_mutating_calls_are_the_minimum() -> None:
    run = lifecycle.measure(lifecycle.TIMING.busy, lifecycle.TIMING.busy, lifecycle.TIMING.busy)
    assert run.mutating_sequence == lifecycle.minimal_sequence()
    # Two looks per change at best, plus the update's confirming look after its cleanup.
    assert run.looks == {"create": 2, "update": 3, "delete": 2}


def test_the_autoscaled_lifecycle_is_the_minimum_plus_one_deregistration() -> None:
    run = lifecycle.measure_autoscaled(lifecycle.TIMING.busy, lifecycle.TIMING.busy, lifecycle.TIMING.busy)
    assert run.mutating_sequence == lifecycle.autoscaled_sequence()
    minimum = sum(n for op, (n, _) in lifecycle.MINIMUM_AUTOSCALED.items() if lifecycle.is_mutating(op))
    # The one call beyond the minimum: the deregistration before DeleteEndpoint (see the document).
    assert len(run.mutating_sequence) == minimum + 1
    # The instance type changes only after the deregistration, and the target comes back after the update.
    operations = [op for op, _ in run.mutating_sequence]
    second_update = [i for i, op in enumerate(operations) if op == "UpdateEndpoint"][1]
    assert operations[second_update - 2] == "DeregisterScalableTarget"
    assert operations[second_update + 2 : second_update + 4] == ["RegisterScalableTarget", "PutScalingPolicy"]


def test_the_document_is_current() -> None:
    assert DOC.read_text() == lifecycle.generate(), (
        "docs/calls-per-lifecycle.md is stale: run "
        ".venv/bin/python tests/integration/calls_per_lifecycle.py > docs/calls-per-lifecycle.md"
    )
