"""The operator's /metrics, scraped over HTTP during real lifecycles (the operator between the in-memory
Kubernetes API and the emulated SageMaker): every value moves as what happened says it should.

The registry is the process's, shared with other tests: every assertion compares two scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import e2e_harness
import pytest
from e2e_harness import IMAGE, Harness, condition, manifest, wait
from metrics_scrape import Delta, scrape

from mce_operator import metrics
from mce_operator.sagemaker import SageMakerSettings

pytestmark = pytest.mark.e2e

REQUESTS = "mce_operator_sagemaker_requests_total"
THROTTLED_ATTEMPTS = "mce_operator_sagemaker_throttled_attempts_total"
RECONCILES = "mce_operator_reconcile_total"
OBJECTS = "mce_operator_objects"
BY_STATUS = "mce_operator_objects_by_endpoint_status"
TIME_TO_READY = "mce_operator_time_to_ready_seconds"
LAST_SUCCESS = "mce_operator_sagemaker_last_success_timestamp_seconds"


@pytest.fixture
def metrics_url() -> Iterator[str]:
    server = metrics.serve(0, "127.0.0.1")
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_a_lifecycle_moves_every_metric(running: Harness, metrics_url: str) -> None:
    start = scrape(metrics_url)
    started_at = time.time()

    running.create(manifest("scraped"))
    ready = running.wait_ready("scraped")
    created = Delta(start, scrape(metrics_url))
    for operation in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint"):
        assert created(REQUESTS, operation=operation, outcome="success") == 1, operation
    # The endpoint did not exist yet: SageMaker said so, which is not an error.
    assert created(REQUESTS, operation="DescribeEndpoint", outcome="not_found") >= 1
    assert created(REQUESTS, operation="DescribeEndpoint", outcome="success") >= 1
    assert created.total(REQUESTS, outcome="error") == created.total(REQUESTS, outcome="throttled") == 0
    duration_count = "mce_operator_sagemaker_request_duration_seconds_count"
    assert created(duration_count, operation="CreateEndpoint") == 1
    assert created("mce_operator_sagemaker_request_duration_seconds_sum", operation="CreateEndpoint") > 0
    assert created.after.value(LAST_SUCCESS) >= started_at

    assert created(RECONCILES, result="success") >= 2  # the create, then at least one look while Creating
    assert created(RECONCILES, result="error") == created(RECONCILES, result="exception") == 0
    assert created("mce_operator_reconcile_duration_seconds_count") == created.total(RECONCILES)

    assert created(OBJECTS, condition="Ready") == 1
    assert created(OBJECTS, condition="Progressing") == created(OBJECTS, condition="Degraded") == 0
    assert created(BY_STATUS, endpoint_status="InService") == 1
    assert created.total(BY_STATUS) == 1  # counted once, under one status
    assert created(f"{TIME_TO_READY}_count") == 1
    # The create took at least the emulator's 0.2 s in Creating.
    assert created(f"{TIME_TO_READY}_sum") >= 0.2

    # A new image: a new model and config, UpdateEndpoint, Ready again on the new config.
    containers = ready["spec"]["containers"]
    containers[1]["image"] = IMAGE.format("scorer-v2")
    running.patch("scraped", {"spec": {"containers": containers}})
    running.wait_ready("scraped", config_not=ready["status"]["endpointConfigName"])
    updated = Delta(start, scrape(metrics_url))
    assert updated(REQUESTS, operation="UpdateEndpoint", outcome="success") == 1
    assert updated(REQUESTS, operation="CreateModel", outcome="success") == 2
    assert updated(f"{TIME_TO_READY}_count") == 2
    assert updated(OBJECTS, condition="Ready") == 1
    assert updated(BY_STATUS, endpoint_status="InService") == 1
    # The superseded model and config are deleted once the endpoint serves the new one.
    wait(
        "the superseded config to be deleted",
        lambda: not running.left_in_sagemaker("e2e-scraped")["configs"][1:],
    )
    cleaned = Delta(start, scrape(metrics_url))
    assert cleaned(REQUESTS, operation="DeleteEndpointConfig", outcome="success") == 1
    assert cleaned(REQUESTS, operation="DeleteModel", outcome="success") == 1

    running.delete("scraped")
    wait("the object to be gone", lambda: running.find("scraped") is None)
    deleted = Delta(start, scrape(metrics_url))
    assert deleted(REQUESTS, operation="DeleteEndpoint", outcome="success") == 1
    assert deleted(REQUESTS, operation="DeleteModel", outcome="success") == 2
    # The object no longer counts anywhere.
    for name in ("Ready", "Progressing", "Degraded"):
        assert deleted(OBJECTS, condition=name) == 0, name
    assert deleted.total(BY_STATUS) == 0
    assert deleted.total(REQUESTS, outcome="error") == 0
    # No label carries an object's or an endpoint's name.
    assert "scraped" not in deleted.after.text


def test_throttling_and_refusals_are_counted_apart(
    e2e: Harness, metrics_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two tries per call: a call throttled once succeeds on botocore's retry, one throttled twice fails.
    monkeypatch.setattr(
        e2e_harness, "SageMakerSettings", lambda **kwargs: SageMakerSettings(**{**kwargs, "max_attempts": 2})
    )
    e2e.start_operator()
    start = scrape(metrics_url)
    e2e.emulator.throttle(count=1, operations=["CreateModel"])
    e2e.emulator.throttle(count=2, operations=["CreateEndpointConfig"])
    e2e.create(manifest("throttled-metrics"))
    e2e.wait_ready("throttled-metrics")
    throttled = Delta(start, scrape(metrics_url))
    assert throttled(THROTTLED_ATTEMPTS, operation="CreateModel") == 1
    assert throttled(REQUESTS, operation="CreateModel", outcome="throttled") == 0  # retried by botocore
    assert throttled(REQUESTS, operation="CreateModel", outcome="success") == 1
    assert throttled(THROTTLED_ATTEMPTS, operation="CreateEndpointConfig") == 2
    assert throttled(REQUESTS, operation="CreateEndpointConfig", outcome="throttled") == 1
    assert throttled(REQUESTS, operation="CreateEndpointConfig", outcome="success") == 1
    assert throttled(RECONCILES, result="error") >= 1  # the reconcile whose CreateEndpointConfig failed
    assert throttled.total(REQUESTS, outcome="error") == 0

    fault = e2e.emulator.deny(["DescribeEndpoint"])
    wait(
        "Degraded (AccessDenied)",
        lambda: condition(e2e.get("throttled-metrics"), "Degraded").get("reason") == "AccessDenied",
    )
    denied = Delta(start, scrape(metrics_url))
    assert denied(REQUESTS, operation="DescribeEndpoint", outcome="error") >= 1
    assert denied(OBJECTS, condition="Degraded") == 1
    assert denied(OBJECTS, condition="Ready") == 0
    # The endpoint itself still serves: its last known status is kept.
    assert denied(BY_STATUS, endpoint_status="InService") == 1

    e2e.emulator.remove_fault(fault)
    e2e.wait_ready("throttled-metrics")
    recovered = Delta(start, scrape(metrics_url))
    assert recovered(OBJECTS, condition="Degraded") == 0
    assert recovered(OBJECTS, condition="Ready") == 1
    # Ready again at the same generation is not a new time to Ready.
    assert recovered(f"{TIME_TO_READY}_count") == 1
