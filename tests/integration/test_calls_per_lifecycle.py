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


def test_the_document_is_current() -> None:
    assert DOC.read_text() == lifecycle.generate(), (
        "docs/calls-per-lifecycle.md is stale: run "
        ".venv/bin/python tests/integration/calls_per_lifecycle.py > docs/calls-per-lifecycle.md"
    )
