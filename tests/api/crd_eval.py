"""Evaluate a custom resource against a CRD the way the apiserver does, without an apiserver.

For each create or update the apiserver (1) drops unknown fields (pruning; ``kubectl apply`` with
strict field validation, the default since 1.27, reports them instead: so do we), (2) drops nulls of
non-nullable fields, (3) applies the schema's ``default``s top-down, a defaulted object getting its own
nested defaults, (4) validates the OpenAPI v3 schema and (5) evaluates every ``x-kubernetes-validations``
CEL rule at its node, ``self`` being the node's value. Rules that mention ``oldSelf`` are transition
rules: skipped on create, and on update evaluated only where the old object has the same node.

Known differences from the real thing, and how they are handled:
- ``pattern`` is RE2 (Go's ``regexp``) in the apiserver. Python's ``re`` is close for our ASCII
  patterns once two things are fixed: ``\\d``, ``\\s``, ``\\w`` are ASCII in RE2 (``re.ASCII``), and
  RE2's ``$`` matches only at the very end, where Python's also matches before a final newline
  (translated to ``\\Z``). A pattern Python cannot compile (RE2's ``\\p{L}`` Unicode classes) is
  evaluated with CEL's ``matches()`` instead, whose Rust regex engine understands them.
- CEL runs on the Rust ``cel`` package (standard CEL). The Kubernetes CEL libraries are missing there;
  the one our rules use, the lists library's ``sum()``, is supplied here in Python with the same
  meaning. Cost estimation (the apiserver's per-rule budget) is not emulated.
- Messages follow the apiserver's shape (``spec.containers[0].image: Invalid value: ...``) but not its
  exact wording; tests assert on the field path and the rule, not on whole strings.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cel
import jsonschema
import yaml
from jsonschema import validators

CRD_PATH = Path(__file__).parents[2] / "crds" / "sagemaker.mce.dev_multicontainerendpoints.yaml"

_OLD_SELF = re.compile(r"\boldSelf\b")


def _k8s_sum(items: list[Any]) -> Any:
    # Kubernetes' lists library: ``[1, 2].sum() == 3``, ``[].sum() == 0``.
    return sum(items)


_CEL_FUNCTIONS = {"sum": _k8s_sum}


def _re2_to_python(pattern: str) -> re.Pattern[str] | None:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    try:
        return re.compile(pattern, re.ASCII)
    except re.error:
        return None


def _pattern_matches(pattern: str, value: str) -> bool:
    compiled = _re2_to_python(pattern)
    if compiled is not None:
        return compiled.search(value) is not None
    return bool(cel.evaluate("value.matches(pattern)", {"value": value, "pattern": pattern}))


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    if isinstance(instance, str) and not _pattern_matches(pattern, instance):
        yield jsonschema.ValidationError(f"should match '{pattern}'")


_Validator = validators.extend(jsonschema.Draft4Validator, {"pattern": _pattern})


def format_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _is_object_with_fields(schema: dict[str, Any]) -> bool:
    return "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields")


class CrdEvaluator:
    """The validation half of an apiserver for one CRD version."""

    def __init__(self, crd: dict[str, Any], version: str | None = None) -> None:
        versions = crd["spec"]["versions"]
        chosen = next(v for v in versions if version is None or v["name"] == version)
        self.schema: dict[str, Any] = chosen["schema"]["openAPIV3Schema"]
        self._validator = _Validator(self.schema)

    @classmethod
    def from_file(cls, path: Path = CRD_PATH) -> CrdEvaluator:
        return cls(yaml.safe_load(path.read_text()))

    # --- what the apiserver does before validating -------------------------------------------------

    def unknown_fields(self, obj: Any) -> list[str]:
        """Fields the schema does not know: the apiserver prunes them, kubectl --validate=strict says so."""
        found: list[str] = []
        self._walk_unknown(obj, self.schema, [], found)
        return found

    def _walk_unknown(
        self, value: Any, schema: dict[str, Any], path: list[str | int], found: list[str]
    ) -> None:
        if path == ["metadata"]:
            return  # ObjectMeta is validated by the apiserver itself, not by the CRD's schema.
        if isinstance(value, dict):
            if _is_object_with_fields(schema):
                for key, child in value.items():
                    if key in schema["properties"]:
                        self._walk_unknown(child, schema["properties"][key], [*path, key], found)
                    else:
                        found.append(
                            f'{format_path([*path, key])}: unknown field "{format_path([*path, key])}"'
                        )
            elif isinstance(schema.get("additionalProperties"), dict):
                for key, child in value.items():
                    self._walk_unknown(child, schema["additionalProperties"], [*path, key], found)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for index, child in enumerate(value):
                self._walk_unknown(child, schema["items"], [*path, index], found)

    def prune_and_default(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy without unknown fields and non-nullable nulls, with the schema's defaults applied."""
        result = copy.deepcopy(obj)
        self._prune_default(result, self.schema, [])
        return result

    def _prune_default(self, value: Any, schema: dict[str, Any], path: list[str | int]) -> None:
        if path == ["metadata"]:
            return
        if isinstance(value, dict):
            if _is_object_with_fields(schema):
                for key in list(value):
                    sub = schema["properties"].get(key)
                    if sub is None or (value[key] is None and not sub.get("nullable")):
                        del value[key]
                for key, sub in schema["properties"].items():
                    if key not in value and "default" in sub:
                        value[key] = copy.deepcopy(sub["default"])
                for key, child in value.items():
                    self._prune_default(child, schema["properties"][key], [*path, key])
            elif isinstance(schema.get("additionalProperties"), dict):
                for key, child in value.items():
                    self._prune_default(child, schema["additionalProperties"], [*path, key])
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for index, child in enumerate(value):
                self._prune_default(child, schema["items"], [*path, index])

    # --- validation --------------------------------------------------------------------------------

    def schema_errors(self, obj: dict[str, Any]) -> list[str]:
        errors = []
        for error in sorted(self._validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            errors.append(_describe(error))
        return errors

    def cel_errors(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
        errors: list[str] = []
        self._walk_cel(obj, old, old is not None, self.schema, [], errors)
        return errors

    def _walk_cel(
        self,
        value: Any,
        old: Any,
        has_old: bool,
        schema: dict[str, Any],
        path: list[str | int],
        errors: list[str],
    ) -> None:
        kind = schema.get("type")
        if (kind == "object" and not isinstance(value, dict)) or (
            kind == "array" and not isinstance(value, list)
        ):
            return  # the schema error for the type is reported; rules only ever see well-typed values
        for rule in schema.get("x-kubernetes-validations", []):
            transition = bool(_OLD_SELF.search(rule["rule"]))
            if transition and not has_old:
                continue
            variables = {"self": value, **({"oldSelf": old} if transition else {})}
            where = format_path(path) + rule.get("fieldPath", "")
            try:
                ok = cel.evaluate(rule["rule"], cel.Context(variables=variables, functions=_CEL_FUNCTIONS))
            except Exception as error:  # the apiserver reports an erroring rule as a failed validation
                errors.append(
                    f"{where}: Invalid value: {_kind(value)}: rule {rule['rule']!r} failed: {error}"
                )
                continue
            if ok is not True:
                message = rule.get("message") or f"failed rule: {rule['rule']}"
                errors.append(f"{where}: Invalid value: {_kind(value)}: {message}")
        if isinstance(value, dict):
            if "properties" in schema:
                for key, child in value.items():
                    if key in schema["properties"]:
                        child_has_old = has_old and isinstance(old, dict) and key in old
                        child_old = old[key] if child_has_old else None
                        self._walk_cel(
                            child, child_old, child_has_old, schema["properties"][key], [*path, key], errors
                        )
            elif isinstance(schema.get("additionalProperties"), dict):
                for key, child in value.items():
                    child_has_old = has_old and isinstance(old, dict) and key in old
                    child_old = old[key] if child_has_old else None
                    self._walk_cel(
                        child, child_old, child_has_old, schema["additionalProperties"], [*path, key], errors
                    )
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            # Without x-kubernetes-list-type map/set, list items have no identity across updates:
            # transition rules below a plain list never see oldSelf (as in the apiserver).
            for index, child in enumerate(value):
                self._walk_cel(child, None, False, schema["items"], [*path, index], errors)

    # --- the whole request -------------------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> list[str]:
        """All errors a create would get; empty when the apiserver would accept the object."""
        return self._admit(obj, None)

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        """All errors an update from ``old`` (as stored, so already defaulted) to ``new`` would get."""
        return self._admit(new, self.prune_and_default(old))

    def _admit(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
        errors = self.unknown_fields(obj)
        defaulted = self.prune_and_default(obj)
        errors += self.schema_errors(defaulted)
        errors += self.cel_errors(defaulted, old)
        return errors


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _describe(error: jsonschema.ValidationError) -> str:
    parts = list(error.absolute_path)
    value = error.instance
    keyword = error.validator
    limit = error.validator_value
    if keyword == "required":
        missing = re.match(r"'(.*)' is a required property", error.message)
        name = missing.group(1) if missing else str(limit)
        return f"{format_path([*parts, name])}: Required value"
    path = format_path(parts)
    if keyword == "enum":
        supported = ", ".join(json.dumps(v) for v in limit)
        return f"{path}: Unsupported value: {json.dumps(value)}: supported values: {supported}"
    if keyword == "type":
        return (
            f"{path}: Invalid value: {_kind(value)}: {path} in body must be of type {limit}: {_kind(value)}"
        )
    if keyword == "maxLength":
        return f"{path}: Too long: may not be more than {limit} characters"
    if keyword == "minLength":
        return f"{path}: Invalid value: {json.dumps(value)}: {path} in body should be at least {limit} chars"
    if keyword in {"maxItems", "maxProperties"}:
        return f"{path}: Too many: {len(value)}: must have at most {limit} items"
    if keyword in {"minItems", "minProperties"}:
        return f"{path}: Invalid value: {len(value)}: {path} in body should have at least {limit} items"
    if keyword == "minimum":
        return f"{path}: Invalid value: {value}: {path} in body should be greater than or equal to {limit}"
    if keyword == "maximum":
        return f"{path}: Invalid value: {value}: {path} in body should be less than or equal to {limit}"
    if keyword == "pattern":
        return f"{path}: Invalid value: {json.dumps(value)}: {path} in body should match '{limit}'"
    return f"{path}: Invalid value: {_kind(value)}: {error.message}"
