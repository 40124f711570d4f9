"""Fault injection: throttling, server errors, refused access, latency, endpoint creations or updates that
fail, and CloudWatch alarms in the ALARM state (which roll back a guarded deployment).

Every fault is a plain record; the service consults them under its lock. Name patterns are shell-style
globs (``fnmatch``), matched case-insensitively as SageMaker names are.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["throttle", "server_error", "deny", "latency", "fail_create", "fail_update", "alarm"]
KINDS: tuple[str, ...] = (
    "throttle",
    "server_error",
    "deny",
    "latency",
    "fail_create",
    "fail_update",
    "alarm",
)
# Faults that answer a call with an error instead of serving it.
CALL_ERRORS = ("throttle", "server_error", "deny")

_ids = itertools.count(1)


def _glob(pattern: str | None, name: str | None) -> bool:
    if pattern is None:
        return True
    return name is not None and fnmatch.fnmatchcase(name.lower(), pattern.lower())


@dataclass
class Fault:
    """One injected fault.

    - ``throttle`` / ``server_error``: the matching calls fail, either the next ``count`` of them or a
      ``rate`` share (0..1) of them; ``status`` is 500 (InternalFailure) or 503 (ServiceUnavailable).
    - ``deny``: the matching calls are refused with AccessDeniedException (HTTP 400), as IAM refuses an
      action the caller's policy does not allow: the next ``count`` of them, or (None) all of them.
    - ``latency``: ``seconds`` are added to every matching call.
    - ``fail_create`` / ``fail_update``: endpoint creations (updates) whose endpoint name matches ``endpoint``
      and whose (new) config name matches ``config`` end ``Failed`` (back ``InService`` on the old config),
      with ``reason`` as FailureReason; ``count`` limits how many times (None: always).
    - ``alarm``: the CloudWatch alarm named ``alarm`` is in the ALARM state from ``since`` (when the fault was
      added) until the fault is removed. A blue/green or rolling deployment whose AutoRollbackConfiguration
      lists it rolls back when it is in ALARM during a baking period.

    ``operations`` restricts throttle/server_error/deny/latency to these operation names
    (``InvokeEndpoint`` for the runtime); None means every control-plane operation.
    """

    kind: FaultKind
    rate: float = 0.0
    count: int | None = None
    operations: frozenset[str] | None = None
    status: int = 500
    seconds: float = 0.0
    endpoint: str | None = None
    config: str | None = None
    reason: str = "Injected failure."
    alarm: str | None = None
    # When the fault took effect (the service's clock): an alarm is in ALARM from then on.
    since: float = 0.0
    id: int = field(default_factory=lambda: next(_ids))

    def applies_to(self, operation: str) -> bool:
        if self.operations is None:
            return operation != "InvokeEndpoint"
        return operation in self.operations

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind}
        if self.kind in ("throttle", "server_error"):
            out.update(rate=self.rate, count=self.count)
        if self.kind == "server_error":
            out["status"] = self.status
        if self.kind == "latency":
            out["seconds"] = self.seconds
        if self.kind == "deny":
            out["count"] = self.count
        if self.kind in (*CALL_ERRORS, "latency"):
            out["operations"] = sorted(self.operations) if self.operations is not None else None
        if self.kind in ("fail_create", "fail_update"):
            out.update(endpoint=self.endpoint, config=self.config, reason=self.reason, count=self.count)
        if self.kind == "alarm":
            out.update(alarm=self.alarm, since=self.since)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """A fault from its JSON form (the admin API); raises ValueError on a malformed one."""
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        known = {
            "kind",
            "rate",
            "count",
            "operations",
            "status",
            "seconds",
            "endpoint",
            "config",
            "reason",
            "alarm",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        operations = data.get("operations")
        if isinstance(operations, str):
            operations = [operations]
        fault = cls(
            kind=kind,
            rate=float(data.get("rate", 0.0)),
            count=None if data.get("count") is None else int(data["count"]),
            operations=None if operations is None else frozenset(str(o) for o in operations),
            status=int(data.get("status", 500)),
            seconds=float(data.get("seconds", 0.0)),
            endpoint=data.get("endpoint"),
            config=data.get("config"),
            reason=str(data.get("reason", "Injected failure.")),
            alarm=None if data.get("alarm") is None else str(data["alarm"]),
        )
        fault.check()
        return fault

    def check(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within 0..1")
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")
        if self.kind in ("throttle", "server_error") and self.count is None and self.rate == 0.0:
            raise ValueError(f"a {self.kind} fault needs a rate or a count")
        if self.kind == "server_error" and self.status not in (500, 503):
            raise ValueError("status must be 500 or 503")
        if self.seconds < 0:
            raise ValueError("seconds must not be negative")
        if self.kind == "alarm" and not (self.alarm or "").strip():
            raise ValueError("an alarm fault needs the alarm's name")


class FaultSet:
    """The active faults. Not locked itself: the service calls it under its own lock."""

    def __init__(self, seed: int | None = None) -> None:
        self.faults: list[Fault] = []
        self.random = random.Random(seed)

    def add(self, fault: Fault) -> Fault:
        fault.check()
        self.faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        before = len(self.faults)
        self.faults = [f for f in self.faults if f.id != fault_id]
        return len(self.faults) != before

    def clear(self) -> None:
        self.faults.clear()

    def _fires(self, fault: Fault) -> bool:
        """Whether a counted or rated fault fires on this call (consuming one of its count)."""
        if fault.count is not None:
            if fault.count <= 0:
                return False
            fault.count -= 1
            return True
        return self.random.random() < fault.rate

    def latency(self, operation: str) -> float:
        return sum(f.seconds for f in self.faults if f.kind == "latency" and f.applies_to(operation))

    def call_error(self, operation: str) -> Fault | None:
        """The throttle, server error or refusal this call must answer with, if any."""
        for fault in self.faults:
            if fault.kind not in CALL_ERRORS or not fault.applies_to(operation):
                continue
            if (fault.kind == "deny" and fault.count is None) or self._fires(fault):
                return fault
        return None

    def endpoint_failure(
        self, kind: Literal["fail_create", "fail_update"], endpoint: str, config: str
    ) -> str | None:
        """The FailureReason an endpoint creation or update must end with, if a fault matches it."""
        for fault in self.faults:
            if (
                fault.kind == kind
                and _glob(fault.endpoint, endpoint)
                and _glob(fault.config, config)
                and (fault.count is None or self._fires(fault))
            ):
                return fault.reason
        return None

    def alarms(self) -> dict[str, float]:
        """The alarms in the ALARM state, each with the time it went into ALARM."""
        out: dict[str, float] = {}
        for fault in self.faults:
            if fault.kind == "alarm" and fault.alarm:
                out[fault.alarm] = min(out.get(fault.alarm, fault.since), fault.since)
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.faults]


def parse_faults(data: Any) -> list[Fault]:
    items: Iterable[Any] = data if isinstance(data, list) else [data]
    faults = []
    for item in items:
        if not isinstance(item, Mapping):
            raise ValueError("a fault is a JSON object")
        faults.append(Fault.from_dict(item))
    return faults
