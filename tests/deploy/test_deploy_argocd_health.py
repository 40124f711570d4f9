"""deploy/argocd-health.lua, run with lupa (Lua in Python) on sample objects as Argo CD would run it:
the object in the global ``obj``, the script's result a table with ``status`` and ``message``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

lupa = pytest.importorskip("lupa")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (ROOT / "deploy" / "argocd-health.lua").read_text()


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return str(result["status"]), str(result["message"])


def cond(kind: str, status: bool, reason: str = "", message: str = "", generation: int = 2) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def mce(
    *conditions: dict[str, Any], generation: int = 2, observed: int | None = 2, **meta: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {"endpointStatus": "InService", "conditions": list(conditions)}
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "apiVersion": "sagemaker.mce.dev/v1alpha1",
        "kind": "MultiContainerEndpoint",
        "metadata": {"name": "fraud", "namespace": "ml", "generation": generation, **meta},
        "spec": {"mode": "Direct"},
        "status": status,
    }


READY = cond("Ready", True, "InService", "The endpoint serves the desired config")
NOT_PROGRESSING = cond("Progressing", False, "Idle")
NOT_DEGRADED = cond("Degraded", False, "AsExpected")


def test_ready() -> None:
    assert health(mce(READY, NOT_PROGRESSING, NOT_DEGRADED)) == (
        "Healthy",
        "The endpoint serves the desired config",
    )


def test_degraded_with_its_message() -> None:
    degraded = cond(
        "Degraded", True, "EndpointFailed", "SageMaker: image not found. Fix spec.containers[1].image"
    )
    obj = mce(cond("Ready", False, "EndpointFailed"), NOT_PROGRESSING, degraded)
    assert health(obj) == ("Degraded", "SageMaker: image not found. Fix spec.containers[1].image")


def test_progressing() -> None:
    progressing = cond("Progressing", True, "Updating", "Updating to config fraud-prod-3f9c")
    obj = mce(cond("Ready", False, "Updating"), progressing, NOT_DEGRADED)
    assert health(obj) == ("Progressing", "Updating to config fraud-prod-3f9c")


def test_deleting_is_progressing_whatever_the_conditions() -> None:
    obj = mce(READY, NOT_PROGRESSING, NOT_DEGRADED, deletionTimestamp="2024-06-01T00:00:00Z")
    status, message = health(obj)
    assert status == "Progressing" and "Deleting" in message


def test_stale_generation_is_progressing_even_if_ready() -> None:
    status, message = health(mce(READY, NOT_PROGRESSING, NOT_DEGRADED, generation=3, observed=2))
    assert status == "Progressing" and "generation 3" in message
    # A missing observedGeneration is stale too.
    assert health(mce(READY, generation=3, observed=None))[0] == "Progressing"


def test_conditions_of_an_older_generation_are_ignored() -> None:
    old_ready = cond("Ready", True, "InService", generation=1)
    assert health(mce(old_ready, NOT_PROGRESSING, NOT_DEGRADED))[0] == "Progressing"


def test_no_status_yet_and_nothing_decided_are_progressing() -> None:
    fresh = mce()
    del fresh["status"]
    assert health(fresh)[0] == "Progressing"
    assert health(mce(cond("Ready", False, "Creating"), NOT_PROGRESSING, NOT_DEGRADED))[0] == "Progressing"


def test_degraded_without_message_falls_back_to_the_reason() -> None:
    obj = mce(cond("Ready", False), NOT_PROGRESSING, cond("Degraded", True, "AccessDenied"))
    assert health(obj) == ("Degraded", "AccessDenied")


def test_readme_snippet_is_the_script() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    key = "resource.customizations.health.sagemaker.mce.dev_MultiContainerEndpoint"
    assert f"{key}: |" in readme
    match = re.search(re.escape(key) + r": \|\n((?:    .*\n|\n)+)", readme)
    assert match
    snippet = "\n".join(line[4:] for line in match[1].splitlines()).strip()
    assert snippet == SCRIPT.strip()
