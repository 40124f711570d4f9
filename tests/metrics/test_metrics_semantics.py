"""What each metric means, case by case, through the functions the adapter and the handlers call and the
exposition Prometheus reads (the end-to-end tests scrape a running operator)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mce_operator import metrics

ALLOWED_LABELS = {"operation", "outcome", "result", "condition", "endpoint_status"}


def exposition() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.REGISTRY).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(name: str, **labels: str) -> float:
    return exposition().get((name, frozenset(labels.items())), 0.0)


def status(
    generation: int, *, ready: bool, endpoint: str | None = "InService", **conds: bool
) -> dict[str, Any]:
    flags = {"Ready": ready, "Progressing": not ready, "Degraded": False, **conds}
    return {
        "observedGeneration": generation,
        "endpointStatus": endpoint,
        "conditions": [
            {"type": kind, "status": "True" if flag else "False", "observedGeneration": generation}
            for kind, flag in flags.items()
        ],
    }


@pytest.fixture
def uid() -> Iterator[str]:
    name = f"unit-{uuid.uuid4()}"
    yield name
    metrics.forget(name)


READY_COUNT = "mce_operator_time_to_ready_seconds_count"


def test_time_to_ready_is_observed_once_per_generation(uid: str) -> None:
    before = value(READY_COUNT)
    with metrics.reconcile():
        metrics.status_published(uid, status(1, ready=False, endpoint="Creating"))
    with metrics.reconcile():
        metrics.status_published(uid, status(1, ready=True))
    assert value(READY_COUNT) == before + 1
    # Drift, then Ready again at the same generation: not a spec change.
    metrics.status_published(uid, status(1, ready=False, endpoint="Updating"))
    metrics.status_published(uid, status(1, ready=True))
    assert value(READY_COUNT) == before + 1
    # A change SageMaker applies in place (tags) is Ready in the reconcile that first sees it.
    with metrics.reconcile():
        metrics.status_published(uid, status(2, ready=True))
    assert value(READY_COUNT) == before + 2


def test_an_object_ready_when_first_seen_is_not_a_time_to_ready(uid: str) -> None:
    """After a restart the operator finds steady objects: when their change happened is unknown."""
    before = value(READY_COUNT)
    metrics.status_published(uid, status(3, ready=True))
    metrics.status_published(uid, status(3, ready=True))
    assert value(READY_COUNT) == before


def test_objects_are_counted_by_condition_and_endpoint_status_until_forgotten(uid: str) -> None:
    before = exposition()

    def moved(name: str, **labels: str) -> float:
        return value(name, **labels) - before.get((name, frozenset(labels.items())), 0.0)

    metrics.status_published(uid, status(1, ready=False, endpoint=None))
    assert moved("mce_operator_objects", condition="Progressing") == 1
    assert moved("mce_operator_objects_by_endpoint_status", endpoint_status="None") == 1
    metrics.status_published(uid, status(1, ready=False, endpoint="Failed", Degraded=True, Progressing=False))
    assert moved("mce_operator_objects", condition="Degraded") == 1
    assert moved("mce_operator_objects", condition="Progressing") == 0
    assert moved("mce_operator_objects_by_endpoint_status", endpoint_status="Failed") == 1
    assert moved("mce_operator_objects_by_endpoint_status", endpoint_status="None") == 0
    # A status SageMaker may add one day stays in a bounded label set.
    metrics.status_published(uid, status(1, ready=False, endpoint="Hibernating"))
    assert moved("mce_operator_objects_by_endpoint_status", endpoint_status="Other") == 1
    metrics.forget(uid)
    for condition in metrics.CONDITIONS:
        assert moved("mce_operator_objects", condition=condition) == 0


def test_a_reconcile_is_an_error_when_a_sagemaker_call_failed_and_an_exception_when_code_failed() -> None:
    def count(result: str) -> float:
        return value("mce_operator_reconcile_total", result=result)

    before = {result: count(result) for result in ("success", "error", "exception")}
    with metrics.reconcile():
        metrics.sagemaker_call("DescribeEndpoint", metrics.NOT_FOUND, 0.01)  # an answer, not a failure
    with metrics.reconcile():
        metrics.sagemaker_call("CreateModel", metrics.THROTTLED, 0.01)
    with pytest.raises(KeyError), metrics.reconcile():
        raise KeyError("a bug")
    with pytest.raises(RuntimeError), metrics.reconcile():
        metrics.sagemaker_call("DeleteEndpoint", metrics.ERROR, 0.01)
        raise RuntimeError("the failure, re-raised")
    assert {result: count(result) - before[result] for result in before} == {
        "success": 1,
        "error": 2,
        "exception": 1,
    }


def test_names_types_and_labels_follow_prometheus_conventions() -> None:
    metrics.sagemaker_call("ListTags", metrics.SUCCESS, 0.01)
    text = generate_latest(metrics.REGISTRY).decode()
    families = [f for f in text_string_to_metric_families(text) if f.name.startswith("mce_operator_")]
    kinds = {f.name: f.type for f in families}
    assert kinds == {
        "mce_operator_sagemaker_requests": "counter",
        "mce_operator_sagemaker_request_duration_seconds": "histogram",
        "mce_operator_sagemaker_throttled_attempts": "counter",
        "mce_operator_sagemaker_last_success_timestamp_seconds": "gauge",
        "mce_operator_reconcile": "counter",
        "mce_operator_reconcile_duration_seconds": "histogram",
        "mce_operator_time_to_ready_seconds": "histogram",
        "mce_operator_objects": "gauge",
        "mce_operator_objects_by_endpoint_status": "gauge",
    }
    for family in families:
        assert family.documentation, family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, sample
            if "outcome" in sample.labels:
                assert sample.labels["outcome"] in metrics.OUTCOMES
    # Gauges of objects always show every bounded value, so that dashboards see zeros, not gaps.
    conditions = {
        s.labels["condition"] for f in families if f.name == "mce_operator_objects" for s in f.samples
    }
    assert conditions == set(metrics.CONDITIONS)
