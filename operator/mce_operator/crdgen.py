"""Generate the CustomResourceDefinition from the pydantic models: ``python -m mce_operator.crdgen``.

pydantic emits JSON Schema with ``$ref``s, ``anyOf: [X, null]`` for optional fields and titles; the
apiserver wants a structural OpenAPI v3 schema: everything inlined, one type per node, no nulls.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic import BaseModel

from mce_operator import api

_DROP = {"title"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express {node} as a structural schema")
        merged = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        if merged.get("default", ...) is None:
            del merged["default"]
        return _structural(merged, defs)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "properties":
            result[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "default" and value is None:
            continue
        else:
            result[key] = _structural(value, defs)
    # The apiserver forbids additionalProperties beside properties; it prunes unknown fields instead,
    # and kubectl's strict field validation reports them to the user.
    if result.get("additionalProperties") is False:
        del result["additionalProperties"]
    if "enum" in result and "type" not in result:
        result["type"] = "string"
    if result.get("type") == "object" and "properties" not in result and "additionalProperties" not in result:
        result["x-kubernetes-preserve-unknown-fields"] = True
    return result


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural(raw, raw.get("$defs", {}))
    return schema


def _sort_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _sort_keys(node[key]) for key in sorted(node)}
    if isinstance(node, list):
        return [_sort_keys(item) for item in node]
    return node


def build_crd() -> dict[str, Any]:
    """The CRD as a dict, deterministic for a given set of models."""
    spec_schema = _schema(api.MultiContainerEndpointSpec)
    status_schema = _schema(api.MultiContainerEndpointStatus)
    # Status is written by the operator only; the apiserver should not prune what a newer operator adds.
    status_schema["x-kubernetes-preserve-unknown-fields"] = True
    root = {
        "type": "object",
        "description": (api.MultiContainerEndpoint.__doc__ or "").strip().replace("\n    ", " "),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "The API version: sagemaker.mce.dev/v1alpha1."},
            "kind": {"type": "string", "description": "MultiContainerEndpoint."},
            # The apiserver supplies ObjectMeta's schema (and its `kubectl explain` text) and refuses a CRD
            # whose root metadata says anything but its type (or name/generateName rules).
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    columns = [
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        # JSONPath cannot count a list, so the operator publishes the count in status.
        {"name": "Containers", "type": "integer", "jsonPath": ".status.containerCount"},
        {"name": "Status", "type": "string", "jsonPath": ".status.endpointStatus"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpointName"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "annotations": {"mce.dev/generated-by": "python -m mce_operator.crdgen (make crds)"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": list(api.CATEGORIES),
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": _sort_keys(root)},
                }
            ],
        },
    }


def render() -> str:
    header = (
        "# Generated from the pydantic models in operator/mce_operator/api.py by `make crds`. Do not edit.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
