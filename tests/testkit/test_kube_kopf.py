"""The real kopf operator works against the in-memory Kubernetes API, and reacts quickly."""

import logging
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import Any

import kopf
import pytest
from widgets import GROUP, PLURAL, VERSION, widget

from mce_operator.testkit import KubeServer, OperatorThread

FINALIZER = "sagemaker.mce.dev/finalizer"


class ErrorRecords(logging.Handler):
    """Collects what kopf logs at ERROR: a misbehaving API shows up there first."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kopf_errors() -> Iterator[ErrorRecords]:
    handler = ErrorRecords()
    logging.getLogger("kopf").addHandler(handler)
    yield handler
    logging.getLogger("kopf").removeHandler(handler)


def make_operator(
    kube: KubeServer, calls: list[tuple[str, float, Any]], *, clusterwide: bool = False
) -> OperatorThread:
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(**kube.connection_info())

    @kopf.on.create(*resource, registry=registry)
    def created(spec: Any, body: Any, patch: kopf.Patch, **_: Any) -> None:
        calls.append(("create", time.monotonic(), dict(spec)))
        patch.status["phase"] = "Created"
        kopf.info(body, reason="Created", message="The widget was created.")

    @kopf.on.update(*resource, field="spec", registry=registry)
    def updated(spec: Any, meta: Any, patch: kopf.Patch, **_: Any) -> None:
        calls.append(("update", time.monotonic(), dict(spec)))
        patch.status["observedGeneration"] = meta["generation"]

    @kopf.timer(*resource, interval=0.3, registry=registry)
    def tick(status: Any, patch: kopf.Patch, **_: Any) -> None:
        calls.append(("timer", time.monotonic(), None))
        patch.status["ticks"] = int(status.get("ticks", 0)) + 1

    @kopf.on.delete(*resource, registry=registry)
    def deleted(**_: Any) -> None:
        calls.append(("delete", time.monotonic(), None))

    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = 1  # reconnect often: every reconnection resumes from a resourceVersion
    settings.watching.client_timeout = 5
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="sagemaker.mce.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="sagemaker.mce.dev")
    settings.posting.level = logging.INFO

    def run(stop_flag: threading.Event, ready_flag: threading.Event) -> Awaitable[None]:
        return kopf.operator(  # type: ignore[no-any-return]
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=clusterwide,
            namespaces=[] if clusterwide else ["default"],
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )

    return OperatorThread(run)


def first(calls: list[tuple[str, float, Any]], kind: str, after: float = 0.0) -> tuple[str, float, Any]:
    return next(call for call in calls if call[0] == kind and call[1] >= after)


def test_kopf_lifecycle_against_the_emulator(kube: KubeServer, kopf_errors: ErrorRecords) -> None:
    calls: list[tuple[str, float, Any]] = []
    latencies: dict[str, float] = {}
    with make_operator(kube, calls):
        t0 = time.monotonic()
        kube.create(widget("w1", size=1))
        obj = kube.wait_for(PLURAL, "default", "w1", lambda o: o.get("status", {}).get("phase") == "Created")
        latencies["create -> handler"] = first(calls, "create")[1] - t0
        latencies["create -> status written"] = time.monotonic() - t0
        assert FINALIZER in obj["metadata"]["finalizers"]
        assert obj["metadata"]["generation"] == 1

        event = next(e for e in kube.events("default") if e["reason"] == "Created")
        latencies["create -> event posted"] = time.monotonic() - t0
        assert event["involvedObject"]["name"] == "w1"
        assert event["message"] == "The widget was created."

        t1 = time.monotonic()
        patched = kube.patch(PLURAL, "default", "w1", {"spec": {"size": 3}})
        assert patched["metadata"]["generation"] == 2
        obj = kube.wait_for(PLURAL, "default", "w1", lambda o: o["status"].get("observedGeneration") == 2)
        assert first(calls, "update", after=t1)[2] == {"size": 3}
        latencies["patch -> update handler"] = first(calls, "update", after=t1)[1] - t1
        assert obj["metadata"]["generation"] == 2  # status writes do not bump it

        kube.wait_for(PLURAL, "default", "w1", lambda o: o["status"].get("ticks", 0) >= 2)

        time.sleep(1.2)  # past the server-side watch timeout: kopf has reconnected from a resourceVersion
        t3 = time.monotonic()
        kube.patch(PLURAL, "default", "w1", {"spec": {"size": 4}})
        kube.wait_for(PLURAL, "default", "w1", lambda o: o["status"].get("observedGeneration") == 3)
        latencies["patch after a watch reconnect -> update handler"] = (
            first(calls, "update", after=t3)[1] - t3
        )

        t2 = time.monotonic()
        kube.delete(PLURAL, "default", "w1")
        kube.wait_gone(PLURAL, "default", "w1")
        latencies["delete -> gone (finalizer released)"] = time.monotonic() - t2
        assert first(calls, "delete", after=t2)

    resumed = [
        r for r in list(kube.emulator._requests) if r.params.get("watch") and r.params.get("resourceVersion")
    ]
    assert resumed, "kopf never reconnected a watch from a resourceVersion"
    print("\nkopf reaction latencies: " + ", ".join(f"{k}: {v * 1000:.0f} ms" for k, v in latencies.items()))
    assert all(latency < 2.0 for latency in latencies.values()), latencies
    assert not kopf_errors.records, [r.getMessage() for r in kopf_errors.records]


def test_kopf_clusterwide_handles_objects_that_existed_before_it_started(kube: KubeServer) -> None:
    kube.create(widget("early"))
    calls: list[tuple[str, float, Any]] = []
    with make_operator(kube, calls, clusterwide=True):
        kube.wait_for(PLURAL, "default", "early", lambda o: o.get("status", {}).get("phase") == "Created")
        kube.delete(PLURAL, "default", "early")
        kube.wait_gone(PLURAL, "default", "early")
    assert [c[0] for c in calls if c[0] != "timer"] == ["create", "delete"]
