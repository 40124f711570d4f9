"""The HTTP semantics of the in-memory Kubernetes API that operators depend on, checked over plain HTTP."""

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from widgets import GROUP, PLURAL, widget, widget_crd

from mce_operator.testkit import KubeApiError, KubeServer

WIDGETS = f"/apis/{GROUP}/v1/namespaces/default/{PLURAL}"


def watch(kube: KubeServer, path: str, **params: str) -> list[dict[str, Any]]:
    """All events of a watch-stream that the server closes after timeoutSeconds (default: 1)."""
    query = "&".join(f"{k}={v}" for k, v in {"watch": "true", "timeoutSeconds": "1", **params}.items())
    with urllib.request.urlopen(f"{kube.url}{path}?{query}", timeout=5) as rsp:
        return [json.loads(line) for line in rsp if line.strip()]


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def test_create_sets_system_fields_and_takes_the_namespace_from_the_url(kube: KubeServer) -> None:
    body = widget("w1")
    del body["metadata"]["namespace"]
    body["status"] = {"dropped": True}
    obj = kube.request("POST", WIDGETS, body)
    meta = obj["metadata"]
    assert meta["namespace"] == "default"
    assert meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["resourceVersion"].isdigit()
    assert "status" not in obj  # the CRD has the status subresource: status is ignored on create
    assert kube.get(PLURAL, "default", "w1") == obj


def test_create_conflicts_and_mismatches(kube: KubeServer) -> None:
    kube.create(widget("w1"))
    with pytest.raises(KubeApiError) as exc:
        kube.create(widget("w1"))
    assert exc.value.status == 409 and exc.value.body["reason"] == "AlreadyExists"
    with pytest.raises(KubeApiError) as exc:
        kube.request("POST", WIDGETS, widget("w2", namespace="other"))
    assert exc.value.status == 400
    with pytest.raises(KubeApiError) as exc:
        kube.request("POST", WIDGETS, {"metadata": {}, "spec": {}})
    assert exc.value.status == 422


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_dry_run_is_refused_and_writes_nothing(kube: KubeServer, method: str) -> None:
    existing = kube.create(widget("w1"))
    path = WIDGETS if method == "POST" else f"{WIDGETS}/w1"
    body = {"POST": widget("w2"), "PUT": existing, "PATCH": {"spec": {"size": 9}}, "DELETE": None}[method]
    kind = "application/merge-patch+json" if method == "PATCH" else "application/json"
    with pytest.raises(KubeApiError) as refused:
        kube.request(method, path, body, params={"dryRun": "All"}, content_type=kind)
    assert refused.value.status == 400 and "dryRun is not supported" in refused.value.body["message"]
    assert kube.list(PLURAL, "default") == [existing]  # nothing created, changed or deleted


def test_generate_name_gives_distinct_names(kube: KubeServer) -> None:
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "kopf-event-"}, "reason": "X"}
    names = {kube.create(event)["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3 and all(name.startswith("kopf-event-") for name in names)
    assert [e["reason"] for e in kube.events("default")] == ["X", "X", "X"]


def test_resource_version_bumps_on_every_write_but_not_on_no_op_writes(kube: KubeServer) -> None:
    obj = kube.create(widget("w1", size=1))
    labelled = kube.patch(PLURAL, "default", "w1", {"metadata": {"labels": {"a": "b"}}})
    assert rv(labelled) > rv(obj)
    again = kube.patch(PLURAL, "default", "w1", {"metadata": {"labels": {"a": "b"}}})
    assert rv(again) == rv(labelled)
    status = kube.patch(PLURAL, "default", "w1", {"status": {"phase": "Ready"}}, subresource="status")
    assert rv(status) > rv(labelled)


def test_generation_follows_spec_changes_only(kube: KubeServer) -> None:
    kube.create(widget("w1", size=1))
    assert kube.patch(PLURAL, "default", "w1", {"spec": {"size": 2}})["metadata"]["generation"] == 2
    assert (
        kube.patch(PLURAL, "default", "w1", {"metadata": {"labels": {"x": "y"}}})["metadata"]["generation"]
        == 2
    )
    obj = kube.patch(PLURAL, "default", "w1", {"status": {"seen": 2}}, subresource="status")
    assert obj["metadata"]["generation"] == 2 and obj["status"] == {"seen": 2}
    ops = [{"op": "replace", "path": "/spec/size", "value": 5}]
    assert kube.patch(PLURAL, "default", "w1", ops, json_patch=True)["metadata"]["generation"] == 3


def test_status_subresource_separates_status_from_the_rest(kube: KubeServer) -> None:
    kube.create(widget("w1", size=1))
    kube.patch(PLURAL, "default", "w1", {"status": {"phase": "A"}}, subresource="status")
    # The main resource ignores status; the status subresource ignores everything else.
    obj = kube.patch(PLURAL, "default", "w1", {"spec": {"size": 2}, "status": {"phase": "B"}})
    assert obj["spec"] == {"size": 2} and obj["status"] == {"phase": "A"}
    patch = {"spec": {"size": 3}, "metadata": {"labels": {"l": "v"}}, "status": {"phase": "C"}}
    obj = kube.patch(PLURAL, "default", "w1", patch, subresource="status")
    assert obj["spec"] == {"size": 2} and "labels" not in obj["metadata"] and obj["status"] == {"phase": "C"}
    assert kube.get(PLURAL, "default", "w1", subresource="status") == obj


def test_without_the_status_subresource_status_is_part_of_the_object() -> None:
    with KubeServer(crds=[widget_crd(status_subresource=False)]) as kube:
        kube.create({**widget("w1"), "status": {"phase": "kept"}})
        obj = kube.patch(PLURAL, "default", "w1", {"status": {"phase": "B"}})
        assert obj["status"] == {"phase": "B"} and obj["metadata"]["generation"] == 2
        with pytest.raises(KubeApiError) as exc:
            kube.patch(PLURAL, "default", "w1", {"status": {}}, subresource="status")
        assert exc.value.status == 404


def test_json_patch_test_failure_is_422_and_stale_resource_version_is_409(kube: KubeServer) -> None:
    obj = kube.create(widget("w1"))
    stale = obj["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": stale},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]
    assert kube.patch(PLURAL, "default", "w1", ops, json_patch=True)["metadata"]["finalizers"] == ["x/y"]
    with pytest.raises(KubeApiError) as exc:
        kube.patch(PLURAL, "default", "w1", ops, json_patch=True)
    assert exc.value.status == 422
    with pytest.raises(KubeApiError) as exc:
        kube.patch(PLURAL, "default", "w1", {"metadata": {"resourceVersion": stale}, "spec": {"size": 9}})
    assert exc.value.status == 409
    with pytest.raises(KubeApiError) as exc:
        kube.request("PATCH", f"{WIDGETS}/w1", {"spec": {}}, content_type="application/apply-patch+yaml")
    assert exc.value.status == 415


def test_put_replaces_the_object(kube: KubeServer) -> None:
    obj = kube.create(widget("w1", size=1, color="red"))
    obj["spec"] = {"size": 2}
    replaced = kube.request("PUT", f"{WIDGETS}/w1", obj)
    assert replaced["spec"] == {"size": 2} and replaced["metadata"]["generation"] == 2
    with pytest.raises(KubeApiError) as exc:
        kube.request("PUT", f"{WIDGETS}/w1", obj)  # the resourceVersion is stale now
    assert exc.value.status == 409


def test_deletion_waits_for_finalizers(kube: KubeServer) -> None:
    obj = kube.create({**widget("w1"), "metadata": {"name": "w1", "finalizers": ["a/b"]}})
    deleting = kube.delete(PLURAL, "default", "w1")
    assert deleting["metadata"]["deletionTimestamp"]
    assert kube.get(PLURAL, "default", "w1")["metadata"]["deletionTimestamp"]
    with pytest.raises(KubeApiError) as exc:
        kube.patch(PLURAL, "default", "w1", {"metadata": {"finalizers": ["a/b", "c/d"]}})
    assert exc.value.status == 422
    kube.patch(PLURAL, "default", "w1", {"metadata": {"finalizers": None}})
    assert kube.find(PLURAL, "default", "w1") is None
    events = watch(kube, WIDGETS, resourceVersion=obj["metadata"]["resourceVersion"])
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    with pytest.raises(KubeApiError) as exc:
        kube.delete(PLURAL, "default", "w1")
    assert exc.value.status == 404
    kube.create(widget("w1"))  # the name is free again


def test_lists_have_kind_api_version_resource_version_and_selectors(kube: KubeServer) -> None:
    kube.create({**widget("a"), "metadata": {"name": "a", "labels": {"tier": "x"}}})
    kube.create({**widget("b"), "metadata": {"name": "b", "labels": {"tier": "y"}}})
    kube.create(widget("c", namespace="other"))
    answer = kube.request("GET", f"/apis/{GROUP}/v1/{PLURAL}")
    assert answer["kind"] == "WidgetList" and answer["apiVersion"] == f"{GROUP}/v1"
    assert int(answer["metadata"]["resourceVersion"]) >= max(rv(item) for item in answer["items"])
    assert [item["metadata"]["name"] for item in answer["items"]] == ["a", "b", "c"]
    assert [o["metadata"]["name"] for o in kube.list(PLURAL, "default")] == ["a", "b"]
    assert [o["metadata"]["name"] for o in kube.list("wd", "default", label_selector="tier=y")] == ["b"]
    assert [o["metadata"]["name"] for o in kube.list("wd", label_selector="tier notin (y),tier,!nope")] == [
        "a"
    ]
    with pytest.raises(KubeApiError) as exc:
        kube.request("GET", f"/apis/{GROUP}/v1/{PLURAL}", params={"fieldSelector": "spec.size=1"})
    assert exc.value.status == 400


def test_namespaces_are_a_resource_and_are_created_on_demand(kube: KubeServer) -> None:
    assert [ns["metadata"]["name"] for ns in kube.request("GET", "/api/v1/namespaces")["items"]] == [
        "default"
    ]
    kube.create(widget("w1", namespace="team-a"))
    assert kube.request("GET", "/api/v1/namespaces/team-a")["status"] == {"phase": "Active"}
    with KubeServer(crds=[widget_crd()], auto_create_namespaces=False) as strict:
        with pytest.raises(KubeApiError) as exc:
            strict.create(widget("w1", namespace="team-a"))
        assert exc.value.status == 404


def test_watch_resumes_from_a_resource_version(kube: KubeServer) -> None:
    listed = kube.request("GET", WIDGETS)["metadata"]["resourceVersion"]
    kube.create(widget("w1"))
    kube.patch(PLURAL, "default", "w1", {"spec": {"size": 2}})
    kube.create(widget("elsewhere", namespace="other"))
    kube.delete(PLURAL, "default", "w1")
    events = watch(kube, WIDGETS, resourceVersion=listed)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
        ("DELETED", "w1"),
    ]
    assert [rv(e["object"]) for e in events] == sorted(rv(e["object"]) for e in events)
    # Without a resourceVersion, the watch starts with the current objects, as ADDED.
    initial = watch(kube, f"/apis/{GROUP}/v1/{PLURAL}", sendInitialEvents="true")
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in initial] == [
        ("ADDED", "elsewhere"),
        ("BOOKMARK", None),
    ]
    assert initial[-1]["type"] == "BOOKMARK"


def test_watch_streams_live_events_promptly(kube: KubeServer) -> None:
    events: list[tuple[float, dict[str, Any]]] = []

    def consume() -> None:
        url = f"{kube.url}{WIDGETS}?watch=true&timeoutSeconds=2"
        with urllib.request.urlopen(url, timeout=5) as rsp:
            for line in rsp:
                events.append((time.monotonic(), json.loads(line)))
                if len(events) == 2:
                    return

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(0.2)  # let the watch connect
    t0 = time.monotonic()
    kube.create(widget("w1"))
    kube.patch(PLURAL, "default", "w1", {"spec": {"size": 7}})
    consumer.join(5)
    assert [e["type"] for _, e in events] == ["ADDED", "MODIFIED"]
    assert events[-1][0] - t0 < 0.5


def test_watch_from_a_forgotten_resource_version_is_410() -> None:
    with KubeServer(crds=[widget_crd()], event_history=2) as kube:
        for i in range(4):
            kube.create(widget(f"w{i}"))
        events = watch(kube, WIDGETS, resourceVersion="1")
        assert [e["type"] for e in events] == ["ERROR"] and events[0]["object"]["code"] == 410


def test_discovery_and_crds_created_through_the_api(kube: KubeServer) -> None:
    version = kube.request("GET", f"/apis/{GROUP}/v1")
    names = {r["name"] for r in version["resources"]}
    assert names == {PLURAL, f"{PLURAL}/status"}
    assert {"list", "watch", "patch"} <= set(version["resources"][0]["verbs"])
    assert {"namespaces", "events"} <= {r["name"] for r in kube.request("GET", "/api/v1")["resources"]}
    gadgets = widget_crd()
    gadgets["metadata"]["name"] = f"gadgets.{GROUP}"
    gadgets["spec"]["names"] = {"plural": "gadgets", "kind": "Gadget"}
    kube.create(gadgets)
    kube.create({"apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {}})
    assert [g["metadata"]["name"] for g in kube.list("gadgets")] == ["g"]
    crds = {c["metadata"]["name"] for c in kube.list("crd")}
    assert crds == {f"{PLURAL}.{GROUP}", f"gadgets.{GROUP}"}


def test_connection_info_and_kubeconfig(kube: KubeServer, tmp_path: Path) -> None:
    info = kube.connection_info()
    assert info == {"server": kube.url, "insecure": True, "default_namespace": "default"}
    config = yaml.safe_load(kube.write_kubeconfig(tmp_path / "kubeconfig").read_text())
    assert config["clusters"][0]["cluster"]["server"] == kube.url
    assert config["current-context"] == "emulator"


def test_request_log_is_bounded() -> None:
    with KubeServer(crds=[widget_crd()], request_history=5) as kube:
        for _ in range(30):
            kube.find(PLURAL, "default", "missing")
        assert len(kube.emulator._requests) <= 10


def test_requests_are_counted_by_verb_resource_and_subresource() -> None:
    # Counted even when the request log keeps almost nothing (benchmarks count writes this way).
    with KubeServer(crds=[widget_crd()], request_history=1) as kube:
        kube.create(widget("w1"))
        for _ in range(3):
            kube.patch(PLURAL, "default", "w1", {"status": {"ok": True}}, subresource="status")
        kube.find(PLURAL, "default", "w1")
        counts = kube.emulator.request_counts
        assert counts["POST", PLURAL, None] == 1
        assert counts["PATCH", PLURAL, "status"] == 3
        assert counts["GET", PLURAL, None] == 1
        assert len(kube.emulator._requests) <= 2
