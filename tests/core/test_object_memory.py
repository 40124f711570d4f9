"""What the core reads from an object's metadata and status (core.identity_of, core.memory_of): the
operator's memory between reconciles, which kubectl mce diff reads the same way."""

from __future__ import annotations

from typing import Any

from mce_operator import api, core, naming


def test_identity_of_metadata() -> None:
    meta = {"namespace": "ml", "name": "fraud", "uid": "u-1", "generation": 4}
    assert core.identity_of(meta) == core.Identity("ml", "fraud", "u-1", 4, adopt=False)
    for value, adopt in [("true", True), ("True", True), ("TRUE", True), ("false", False), ("yes", False)]:
        annotated = {**meta, "annotations": {naming.ADOPT_ANNOTATION: value}}
        assert core.identity_of(annotated).adopt is adopt, value
    # A new object (no uid, no generation yet) is generation 1 and owns nothing by uid.
    assert core.identity_of({"namespace": "ml", "name": "new"}) == core.Identity("ml", "new", "", 1)


def _degraded(reason: str, generation: int, status: str = "True") -> dict[str, Any]:
    return {
        "type": "Degraded",
        "status": status,
        "reason": reason,
        "message": "refused",
        "observedGeneration": generation,
    }


def test_memory_of_status() -> None:
    deployment = {"endpointConfigName": "c-2", "fromEndpointConfigName": "c-1"}
    assert core.memory_of({}, 1) == core.Memory()
    remembered = core.memory_of({"lastDeployment": deployment}, 3)
    assert remembered.last_deployment == api.LastDeployment(
        endpoint_config_name="c-2", from_endpoint_config_name="c-1"
    )
    assert remembered.terminal_failure is None
    # A refusal that retrying cannot fix is remembered for the generation it was recorded for only.
    status = {"lastDeployment": deployment, "conditions": [_degraded(core.REASON_REJECTED, 3)]}
    assert core.memory_of(status, 3) == core.Memory(
        remembered.last_deployment, terminal_failure="refused", terminal_reason=core.REASON_REJECTED
    )
    assert core.memory_of(status, 4).terminal_failure is None
    # Degraded for a reason that is retried (access denied), or no longer Degraded: nothing terminal.
    assert core.memory_of({"conditions": [_degraded("AccessDenied", 3)]}, 3).terminal_failure is None
    assert (
        core.memory_of({"conditions": [_degraded(core.REASON_INVALID_SPEC, 3, "False")]}, 3) == core.Memory()
    )
