"""Input validation: botocore's own service model for the constraints, plus SageMaker's documented rules.

botocore checks only required members, types and minimums on the client side, so a 64-character name,
sixteen containers or ``Mode: "Bogus"`` reach the server, which must refuse them with SageMaker's text:
``1 validation error detected: Value 'x' at 'containers.1.member.containerHostname' failed to satisfy
constraint: Member must satisfy regular expression pattern: ...``. Paths use AWS's wire spelling: member
names with a lower-case first letter, list items as ``name.N.member`` (N from 1).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import botocore.session

from .errors import ServiceError, validation

# Java regular-expression classes (the models are written in Java's dialect) that Python's `re` lacks.
_JAVA_CLASSES = {
    "ASCII": r"\x00-\x7F",
    "Print": r"\x20-\x7E",
    "Alnum": "a-zA-Z0-9",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "XDigit": "0-9a-fA-F",
}


def _translate(pattern: str) -> str:
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            match = re.match(r"\\p\{(\w+)\}", pattern[i:])
            if match and match.group(1) in _JAVA_CLASSES:
                body = _JAVA_CLASSES[match.group(1)]
                out.append(body if in_class else f"[{body}]")
                i += len(match.group(0))
                continue
            out.append("\\Z" if pattern[i + 1] == "z" else pattern[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)


@functools.cache
def compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """The model's pattern as a Python regex, or None when it cannot be translated (then unchecked)."""
    try:
        return re.compile(_translate(pattern), re.DOTALL)
    except re.error:
        return None


# SageMaker reserves tag keys starting with "aws:" for AWS (AddTags, the Tags of every Create*, and
# DeleteTags' TagKeys). botocore's model no longer carries that rule, but SageMaker's TagKey pattern
# used to spell it out, and a refusal is worded as any other pattern violation, quoting this pattern.
# Lower case only, as in that pattern: whether SageMaker also refuses "AWS:" is not documented.
RESERVED_TAG_PREFIX = "aws:"
RESERVED_TAG_KEY_PATTERN = r"^((?!aws:)[\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"


def wire_name(member: str) -> str:
    return member[:1].lower() + member[1:]


def render(value: Any) -> str:
    """A value as AWS (Java) prints it inside ``Value '...'``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return str(value)


def _violation(value: Any, path: str, constraint: str) -> str:
    shown = "null" if value is None else f"'{render(value)}'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}"


def _scalar_constraints(shape: Any, value: Any) -> list[str]:
    """The constraints of a scalar or the size of a list/map, as AWS words them (without the value/path)."""
    meta = shape.metadata
    out: list[str] = []
    kind = shape.type_name
    if kind in ("string", "list", "map", "blob"):
        size = len(value)
        if "enum" in meta and kind == "string" and value not in meta["enum"]:
            out.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
        if "max" in meta and size > meta["max"]:
            out.append(f"Member must have length less than or equal to {meta['max']}")
        if meta.get("min") and size < meta["min"]:
            out.append(f"Member must have length greater than or equal to {meta['min']}")
        if kind == "string" and "pattern" in meta:
            regex = compile_pattern(meta["pattern"])
            if regex is not None and not regex.fullmatch(value):
                out.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
        if kind == "string" and shape.name == "TagKey" and value.startswith(RESERVED_TAG_PREFIX):
            out.append(f"Member must satisfy regular expression pattern: {RESERVED_TAG_KEY_PATTERN}")
    elif kind in ("integer", "long", "float", "double"):
        if "min" in meta and value < meta["min"]:
            out.append(f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            out.append(f"Member must have value less than or equal to {meta['max']}")
    return out


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "boolean": (bool,),
    "timestamp": (int, float, str),
    "blob": (str,),
    "structure": (dict,),
    "list": (list,),
    "map": (dict,),
}


def _check_type(shape: Any, value: Any, path: str) -> None:
    expected = _TYPES.get(shape.type_name)
    ok = expected is None or isinstance(value, expected)
    if ok and shape.type_name in ("integer", "long", "float", "double") and isinstance(value, bool):
        ok = False
    if not ok:
        raise ServiceError("SerializationException", f"Unexpected value type at '{path}'")


def walk(shape: Any, value: Any, path: str, errors: list[str]) -> None:
    """Collect every constraint violation of ``value`` (already known not to be None) against ``shape``."""
    _check_type(shape, value, path)
    errors.extend(_violation(value, path, c) for c in _scalar_constraints(shape, value))
    kind = shape.type_name
    if kind == "structure":
        required = set(shape.required_members)
        for name, member in shape.members.items():
            sub = f"{path}.{wire_name(name)}" if path else wire_name(name)
            if value.get(name) is None:
                if name in required:
                    errors.append(_violation(None, sub, "Member must not be null"))
                continue
            walk(member, value[name], sub, errors)
    elif kind == "list":
        for index, item in enumerate(value, start=1):
            if item is not None:
                walk(shape.member, item, f"{path}.{index}.member", errors)
    elif kind == "map":
        key_errors: list[str] = []
        value_errors: list[str] = []
        for key, item in value.items():
            key_errors.extend(c for c in _scalar_constraints(shape.key, key) if c not in key_errors)
            if item is not None and shape.value.type_name == "string":
                _check_type(shape.value, item, path)
                value_errors.extend(
                    c for c in _scalar_constraints(shape.value, item) if c not in value_errors
                )
        if key_errors:
            errors.append(
                _violation(value, path, f"Map keys must satisfy constraint: [{', '.join(key_errors)}]")
            )
        if value_errors:
            errors.append(
                _violation(value, path, f"Map value must satisfy constraint: [{', '.join(value_errors)}]")
            )


def summarize(errors: list[str]) -> ServiceError:
    count = len(errors)
    noun = "error" if count == 1 else "errors"
    return validation(f"{count} validation {noun} detected: " + "; ".join(errors))


class ShapeValidator:
    """Validates a request body against the input shape of an operation of the botocore service model."""

    def __init__(self, service: str = "sagemaker") -> None:
        self.model = botocore.session.get_session().get_service_model(service)

    def has_operation(self, name: str) -> bool:
        return name in self.model.operation_names

    def validate(self, operation: str, body: Mapping[str, Any]) -> None:
        shape = self.model.operation_model(operation).input_shape
        if shape is None:
            return
        errors: list[str] = []
        walk(shape, dict(body), "", errors)
        if errors:
            raise summarize(errors)


# ---------------------------------------------------------------------------------------------------------
# SageMaker's documented multi-container rules. The texts are the emulator's own (AWS does not document
# them) except the MultiModel one, which is SageMaker's.

ENVIRONMENT_LIMIT = 32 * 1024


def model_containers(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    if body.get("Containers"):
        return list(body["Containers"])
    if body.get("PrimaryContainer"):
        return [body["PrimaryContainer"]]
    return []


def check_model_rules(body: Mapping[str, Any]) -> None:
    if body.get("PrimaryContainer") and body.get("Containers"):
        raise validation("PrimaryContainer and Containers cannot both be specified.")
    containers = model_containers(body)
    if not containers:
        raise validation("Either PrimaryContainer or Containers must be specified.")
    mode = (body.get("InferenceExecutionConfig") or {}).get("Mode", "Serial")
    hostnames = [c.get("ContainerHostname") for c in containers]
    named = [h for h in hostnames if h]
    if mode == "Direct" and len(named) != len(containers):
        raise validation(
            "ContainerHostname must be specified for every container when the inference execution mode "
            "is Direct."
        )
    if mode == "Serial" and named and len(named) != len(containers):
        raise validation(
            "ContainerHostname must be specified for either all or none of the containers of an "
            "inference pipeline."
        )
    lowered = [h.lower() for h in named]
    duplicates = sorted({h for h in lowered if lowered.count(h) > 1})
    if duplicates:
        raise validation(
            f"ContainerHostname must be unique within a model; duplicated: {', '.join(duplicates)}."
        )
    if sum(1 for c in containers if c.get("Mode") == "MultiModel") > 1:
        raise validation(
            "More than one container in MultiModel mode is not supported with inference pipeline."
        )
    size = sum(
        len(k.encode()) + len(str(v).encode())
        for c in containers
        for k, v in (c.get("Environment") or {}).items()
    )
    if size > ENVIRONMENT_LIMIT:
        raise validation(
            f"The total size of the environment variables of all containers ({size} bytes) exceeds the "
            f"limit of "
            f"{ENVIRONMENT_LIMIT} bytes."
        )
