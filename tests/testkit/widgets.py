"""The test kit's own small CRD and objects (a module with a unique name: several test packages have a
conftest.py, so importing names from "conftest" would pick whichever pytest loaded first)."""

from typing import Any

GROUP, VERSION, PLURAL = "testkit.mce.dev", "v1", "widgets"


def widget_crd(*, status_subresource: bool = True) -> dict[str, Any]:
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if status_subresource:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
                "categories": ["testkit"],
            },
            "versions": [version],
        },
    }


def widget(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {"size": 1},
    }
