"""Prometheus metrics, served by the operator itself (``mce-operator run --metrics-port``).

Names follow Prometheus' conventions: the ``mce_operator_`` prefix, ``_total`` on counters, base units
(``_seconds``), and only labels with a bounded set of values (SageMaker operation names, outcomes,
condition types, SageMaker's endpoint statuses) — never an object's name or namespace, which would make
one series per object. Per-object detail is in the objects' status and Events.

The adapter (``sagemaker.py``) reports every SageMaker call; the handlers report each reconcile
(:func:`reconcile`), each status they publish (:func:`status_published`) and each object whose deletion
finished (:func:`forget`). Everything here is thread-safe: the visits run in a pool of threads.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = prometheus_client.REGISTRY  # the default one: it also carries process_* and python_* metrics
# The text format's *_created series would double the series count for a value nobody queries.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

# --- SageMaker calls ---------------------------------------------------------------------------------

SUCCESS: Final = "success"
# Answers that are part of normal work, not failures: a describe of an endpoint not created yet, a
# create repeated after a crash. Counted apart so that an error-rate alert does not fire on every create.
NOT_FOUND: Final = "not_found"
ALREADY_EXISTS: Final = "already_exists"
THROTTLED: Final = "throttled"
ERROR: Final = "error"
OUTCOMES: Final = (SUCCESS, NOT_FOUND, ALREADY_EXISTS, THROTTLED, ERROR)

SAGEMAKER_REQUESTS = prometheus_client.Counter(
    "mce_operator_sagemaker_requests_total",
    "SageMaker API calls by operation and outcome (success, not_found, already_exists, throttled, error), "
    "each counted once after botocore's retries.",
    ["operation", "outcome"],
    registry=REGISTRY,
)
SAGEMAKER_DURATION = prometheus_client.Histogram(
    "mce_operator_sagemaker_request_duration_seconds",
    "Duration of SageMaker API calls by operation, botocore's retries and the client-side rate limit "
    "included.",
    ["operation"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
SAGEMAKER_THROTTLED_ATTEMPTS = prometheus_client.Counter(
    "mce_operator_sagemaker_throttled_attempts_total",
    "HTTP attempts SageMaker throttled, by operation, including those botocore retried successfully: "
    "how close the operator runs to its API quota.",
    ["operation"],
    registry=REGISTRY,
)
# Exported as a timestamp, as Prometheus recommends for "time since": `time() - this` in a query. No sample
# until the first success, so that a fresh replica is not mistaken for one that lost SageMaker.
LAST_SUCCESS_NAME: Final = "mce_operator_sagemaker_last_success_timestamp_seconds"

# --- reconciles ---------------------------------------------------------------------------------------

RECONCILE_SUCCESS: Final = "success"
# A SageMaker call failed (throttled or error after botocore's retries), or no client could be made.
RECONCILE_ERROR: Final = "error"
# Something else escaped: a bug, or the Kubernetes API failing under kopf.
RECONCILE_EXCEPTION: Final = "exception"

RECONCILES = prometheus_client.Counter(
    "mce_operator_reconcile_total",
    "Reconciles (one look at SageMaker and what followed, deletion steps included) by result: success, "
    "error (a SageMaker call failed), exception (an unexpected error).",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = prometheus_client.Histogram(
    "mce_operator_reconcile_duration_seconds",
    "Duration of one reconcile, its SageMaker calls included.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
TIME_TO_READY = prometheus_client.Histogram(
    "mce_operator_time_to_ready_seconds",
    "Seconds from this replica first seeing a generation of an object's spec (a creation or a change) to "
    "that generation being Ready.",
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0),
    registry=REGISTRY,
)

# --- objects ------------------------------------------------------------------------------------------

CONDITIONS: Final = ("Ready", "Progressing", "Degraded")
# SageMaker's EndpointStatus values (DescribeEndpoint), plus "None" for an object without an endpoint. The
# status is reported verbatim; a value SageMaker adds later is counted as "Other" to keep the set bounded.
ENDPOINT_STATUSES: Final = (
    "OutOfService",
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "InService",
    "Deleting",
    "Failed",
    "UpdateRollbackFailed",
)
NO_ENDPOINT: Final = "None"
OTHER_STATUS: Final = "Other"


@dataclass
class _Object:
    conditions: frozenset[str] = frozenset()
    endpoint_status: str = NO_ENDPOINT
    # The generation last seen, when it was first seen (time.monotonic()), whether its Ready was observed.
    generation: int | None = None
    generation_seen: float = 0.0
    ready_counted: bool = False


@dataclass(eq=False)  # the registry keys collectors by identity
class _Objects(Collector):
    """What the handlers last published for each object, counted at scrape time."""

    objects: dict[str, _Object] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def collect(self) -> Iterable[Any]:
        with self.lock:
            states = list(self.objects.values())
        by_condition = GaugeMetricFamily(
            "mce_operator_objects",
            "MultiContainerEndpoint objects this replica reconciles whose condition (Ready, Progressing, "
            "Degraded) is True.",
            labels=["condition"],
        )
        for condition in CONDITIONS:
            by_condition.add_metric([condition], sum(condition in s.conditions for s in states))
        by_status = GaugeMetricFamily(
            "mce_operator_objects_by_endpoint_status",
            "MultiContainerEndpoint objects this replica reconciles, by their SageMaker endpoint's status "
            "(None: no endpoint; Other: a status this version does not know).",
            labels=["endpoint_status"],
        )
        for status in (*ENDPOINT_STATUSES, NO_ENDPOINT, OTHER_STATUS):
            by_status.add_metric([status], sum(s.endpoint_status == status for s in states))
        yield by_condition
        yield by_status
        stamp = _last_success.get()
        if stamp is not None:
            last = GaugeMetricFamily(
                LAST_SUCCESS_NAME,
                "Unix time of the last SageMaker API call that succeeded (for alerting: time() - this).",
            )
            last.add_metric([], stamp)
            yield last


class _Stamp:
    def __init__(self) -> None:
        self._value: float | None = None
        self._lock = threading.Lock()

    def set(self, value: float) -> None:
        with self._lock:
            self._value = value

    def get(self) -> float | None:
        with self._lock:
            return self._value


_last_success = _Stamp()
_objects = _Objects()
REGISTRY.register(_objects)


# --- what the adapter and the handlers call -------------------------------------------------------------


@dataclass
class _Reconcile:
    started: float = field(default_factory=time.monotonic)
    failed: bool = False


_current: contextvars.ContextVar[_Reconcile | None] = contextvars.ContextVar("mce_reconcile", default=None)


def sagemaker_call(operation: str, outcome: str, seconds: float) -> None:
    """One SageMaker API call ended (after botocore's retries) with ``outcome``, one of OUTCOMES."""
    SAGEMAKER_REQUESTS.labels(operation=operation, outcome=outcome).inc()
    SAGEMAKER_DURATION.labels(operation=operation).observe(seconds)
    if outcome in (SUCCESS, NOT_FOUND, ALREADY_EXISTS):
        # SageMaker answered as it should: it is reachable and the operator may use it.
        _last_success.set(time.time())
    else:
        sagemaker_failed()


def sagemaker_failed() -> None:
    """The reconcile under way could not use SageMaker (a failed call, or no client could be made)."""
    scope = _current.get()
    if scope is not None:
        scope.failed = True


def throttled_attempt(operation: str) -> None:
    SAGEMAKER_THROTTLED_ATTEMPTS.labels(operation=operation).inc()


@contextlib.contextmanager
def reconcile() -> Iterator[None]:
    """Time one reconcile and count its result; the SageMaker calls made inside decide between success
    and error. Wrap only the reconcile itself: any exception escaping counts as an error or exception."""
    scope = _Reconcile()
    token = _current.set(scope)
    try:
        yield
    except BaseException:
        RECONCILES.labels(result=RECONCILE_ERROR if scope.failed else RECONCILE_EXCEPTION).inc()
        raise
    else:
        RECONCILES.labels(result=RECONCILE_ERROR if scope.failed else RECONCILE_SUCCESS).inc()
    finally:
        RECONCILE_DURATION.observe(time.monotonic() - scope.started)
        _current.reset(token)


def _true_conditions(status: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(
        str(c.get("type"))
        for c in status.get("conditions") or []
        if c.get("status") == "True" and c.get("type") in CONDITIONS
    )


def status_published(uid: str, status: Mapping[str, Any]) -> None:
    """The handlers published ``status`` (the whole of it, as the object should now show it) for the
    object ``uid``: update the object gauges, and observe the time to Ready when a generation gets there."""
    generation = status.get("observedGeneration")
    conditions = _true_conditions(status)
    endpoint_status = str(status.get("endpointStatus") or NO_ENDPOINT)
    if endpoint_status not in (*ENDPOINT_STATUSES, NO_ENDPOINT):
        endpoint_status = OTHER_STATUS
    ready = "Ready" in conditions and any(
        c.get("type") == "Ready" and c.get("observedGeneration") == generation
        for c in status.get("conditions") or []
    )
    now = time.monotonic()
    scope = _current.get()
    # A generation is first seen by the reconcile that publishes its first status: from its start.
    seen = scope.started if scope is not None else now
    elapsed: float | None = None
    with _objects.lock:
        state = _objects.objects.get(uid)
        first_sight = state is None
        if state is None:
            state = _objects.objects[uid] = _Object()
        if generation != state.generation:
            state.generation, state.generation_seen = generation, seen
            # Ready when this replica first sees the object (e.g. after a restart): the change happened
            # before, how long it took is unknown, so it is not observed.
            state.ready_counted = ready and first_sight
        if ready and not state.ready_counted:
            state.ready_counted = True
            elapsed = now - state.generation_seen
        state.conditions, state.endpoint_status = conditions, endpoint_status
    if elapsed is not None:
        TIME_TO_READY.observe(elapsed)


def forget(uid: str) -> None:
    """The object is gone (its deletion finished): it no longer counts."""
    with _objects.lock:
        _objects.objects.pop(uid, None)


def serve(port: int, address: str = "0.0.0.0") -> WSGIServer:
    """Serve ``/metrics`` on ``address:port`` from a daemon thread; port 0 picks a free one
    (``server.server_port`` tells which). ``server.shutdown()`` stops it."""
    server, _thread = prometheus_client.start_http_server(port, addr=address, registry=REGISTRY)
    return server
