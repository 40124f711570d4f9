"""docs/metrics.md matches what the operator exports: the table lists every metric with its type, and the
alerting example's expressions only use metrics (and label values) that exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mce_operator import metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
SUFFIXES = ("_bucket", "_count", "_sum")


def exported() -> dict[str, str]:
    """Family name as documented (counters with _total) -> type."""
    metrics.sagemaker_call("DescribeEndpoint", metrics.SUCCESS, 0.01)  # so the timestamp gauge exists
    text = generate_latest(metrics.REGISTRY).decode()
    families = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("mce_operator_"):
            name = family.name + ("_total" if family.type == "counter" else "")
            families[name] = family.type
    return families


def test_the_table_lists_every_metric_with_its_type() -> None:
    rows = re.findall(r"^\| `(mce_operator_\w+)` \| (\w+) \|", DOC.read_text(), flags=re.MULTILINE)
    assert dict(rows) == exported()


def rule() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    (found,) = [yaml.safe_load(b) for b in blocks if "kind: PrometheusRule" in b]
    result: dict[str, Any] = found
    return result


def test_the_alerting_example_uses_only_exported_metrics_and_label_values() -> None:
    document = rule()
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    names = exported()
    values = {
        "outcome": set(metrics.OUTCOMES),
        "result": {metrics.RECONCILE_SUCCESS, metrics.RECONCILE_ERROR, metrics.RECONCILE_EXCEPTION},
        "condition": set(metrics.CONDITIONS),
    }
    rules = [r for group in document["spec"]["groups"] for r in group["rules"]]
    assert len(rules) >= 4
    for item in rules:
        assert item["alert"] and item["annotations"]["summary"], item
        expr = item["expr"]
        for used in re.findall(r"mce_operator_\w+", expr):
            base = next((used.removesuffix(s) for s in SUFFIXES if used.endswith(s)), used)
            assert used in names or (base in names and names[base] == "histogram"), used
        for label, value in re.findall(r'(\w+)="([^"]*)"', expr):
            assert value in values[label], (label, value)
