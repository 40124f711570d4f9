"""InvokeEndpoint: which containers of the deployed model run, in which order, and what each one answers.

No container image can run here, so every container is the same documented, deterministic "model":

- a body that parses as JSON (UTF-8) becomes ``{"container": HOSTNAME, "input": BODY}`` (application/json);
- any other body becomes the bytes ``HOSTNAME(`` + BODY + ``)`` with the request's Content-Type.

A Serial pipeline feeds each container's output to the next, so a pipeline of ``a`` then ``b`` answers
``{"container": "b", "input": {"container": "a", "input": ...}}``; containers without a hostname are named by
position (``container-1``, ``container-2``...). Direct mode runs the one container named by
``X-Amzn-SageMaker-Target-Container-Hostname``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ServiceError, runtime_validation
from .state import Json, Variant

MAX_BODY = 6_291_456
# SageMaker refuses intermediate payloads of a Serial pipeline above 5 MB with a ModelError.
MAX_INTERMEDIATE = 5 * 1024 * 1024


@dataclass(frozen=True)
class Invocation:
    body: bytes
    content_type: str
    variant: str


def container_names(containers: Sequence[Json]) -> list[str]:
    return [c.get("ContainerHostname") or f"container-{i}" for i, c in enumerate(containers, start=1)]


def transform(container: str, body: bytes, content_type: str | None) -> tuple[bytes, str]:
    """The answer of one emulated container to one request."""
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return container.encode() + b"(" + body + b")", content_type or "application/octet-stream"
    return json.dumps({"container": container, "input": parsed}).encode(), "application/json"


def choose_variant(
    variants: Sequence[Variant], target: str | None, endpoint: str, rng: random.Random
) -> Variant:
    if target is not None:
        for variant in variants:
            if variant.name == target:
                return variant
        raise runtime_validation(f"Variant {target} not found for endpoint {endpoint}.")
    weighted = [v for v in variants if v.current_weight > 0]
    if not weighted:
        return variants[0]
    return rng.choices(weighted, weights=[v.current_weight for v in weighted])[0]


def run(
    endpoint: str,
    variant: Variant,
    target_container: str | None,
    body: bytes,
    content_type: str | None,
) -> Invocation:
    names = container_names(variant.containers)
    if variant.mode == "Direct":
        if not target_container:
            raise runtime_validation(
                f"Endpoint {endpoint} is a multi-container endpoint in Direct invocation mode: "
                "the TargetContainerHostname header is required."
            )
        if target_container not in names:
            raise runtime_validation(
                f"Container hostname {target_container} is not found in endpoint {endpoint}."
            )
        out, out_type = transform(target_container, body, content_type)
        return Invocation(out, out_type, variant.name)
    if target_container:
        raise runtime_validation(
            f"Endpoint {endpoint} is not in Direct invocation mode: "
            "TargetContainerHostname must not be given."
        )
    current, current_type = body, content_type
    for position, name in enumerate(names):
        current, current_type = transform(name, current, current_type)
        if position < len(names) - 1 and len(current) > MAX_INTERMEDIATE:
            raise ServiceError(
                "ModelError",
                f"Received an intermediate payload of {len(current)} bytes from container {name}, "
                f"over the limit of {MAX_INTERMEDIATE} bytes.",
                424,
            )
    return Invocation(current, current_type or "application/octet-stream", variant.name)
