"""Evaluate a custom resource against a CRD the way the apiserver does, without an apiserver.

Used by ``kubectl mce validate`` (offline, in CI) and by the tests of the CRD (tests/api). The CRD is the
rule source: whatever is fixed in the models, and so in the generated CRD, is what this evaluates.

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
- Messages are the apiserver's, word for word, for every case of tests/api's corpus (tests/cluster sends
  them to a real kube-apiserver and compares). The evaluator says more than one apiserver answer (see
  ``_admit``): what it adds is what the apiserver would say once the first problems are fixed.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cel
import jsonschema
import yaml
from jsonschema import validators

from mce_operator import crdgen

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class CrdProblem:
    """One error of the apiserver's: the field (as a path from the object's root) and the message."""

    path: Path_
    message: str

    @property
    def field(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


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


def _field_path(field_path: str) -> Path_:
    """A rule's ``fieldPath`` (".containers", ".a[0].b") as path parts."""
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", field_path))


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
    def from_file(cls, path: Path) -> CrdEvaluator:
        return cls(yaml.safe_load(path.read_text()))

    @classmethod
    def from_models(cls) -> CrdEvaluator:
        """The CRD generated from the pydantic models: the one ``make crds`` writes to crds/."""
        return cls(crdgen.build_crd())

    # --- what the apiserver does before validating -------------------------------------------------

    def unknown_fields(self, obj: Any) -> list[str]:
        """Fields the schema does not know: the apiserver prunes them, kubectl --validate=strict says so."""
        return [str(problem) for problem in self.unknown_field_problems(obj)]

    def unknown_field_problems(self, obj: Any) -> list[CrdProblem]:
        found: list[CrdProblem] = []
        self._walk_unknown(obj, self.schema, [], found)
        return found

    def _walk_unknown(
        self, value: Any, schema: dict[str, Any], path: list[str | int], found: list[CrdProblem]
    ) -> None:
        if path == ["metadata"]:
            return  # ObjectMeta is validated by the apiserver itself, not by the CRD's schema.
        if isinstance(value, dict):
            if _is_object_with_fields(schema):
                for key, child in value.items():
                    if key in schema["properties"]:
                        self._walk_unknown(child, schema["properties"][key], [*path, key], found)
                    else:
                        where = (*path, key)
                        found.append(CrdProblem(where, f'unknown field "{format_path(where)}"'))
            elif isinstance(schema.get("additionalProperties"), dict):
                for key, child in value.items():
                    self._walk_unknown(child, schema["additionalProperties"], [*path, key], found)
            elif schema.get("type") not in (None, "object"):
                # An object where the schema wants a list or a scalar: the apiserver's strict decoder
                # reports each of its keys as unknown (`unknown field "spec.containers.image"`).
                for key in value:
                    where = (*path, key)
                    found.append(CrdProblem(where, f'unknown field "{format_path(where)}"'))
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
        return [str(problem) for problem in self.schema_problems(obj)]

    def schema_problems(self, obj: dict[str, Any]) -> list[CrdProblem]:
        errors = sorted(self._validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        # kube-openapi's string validator stops at the first of maxLength, minLength, pattern that fails
        # (a 64-character name is "Too long", not also "should match").
        first: dict[tuple[Any, ...], int] = {}
        for error in errors:
            if error.validator in _STRING_ORDER:
                where = tuple(error.absolute_path)
                first[where] = min(first.get(where, 9), _STRING_ORDER[str(error.validator)])
        return [
            _describe(error)
            for error in errors
            if error.validator not in _STRING_ORDER
            or _STRING_ORDER[str(error.validator)] == first[tuple(error.absolute_path)]
        ]

    def cel_errors(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
        return [str(problem) for problem in self.cel_problems(obj, old)]

    def cel_problems(
        self, obj: dict[str, Any], old: dict[str, Any] | None = None, *, blocked: bool = False
    ) -> list[CrdProblem]:
        """The rules' violations. With ``blocked`` (the object has a blocking schema error, see
        :func:`is_blocking`) a rule that cannot be evaluated (a field it reads is missing or of the wrong
        type) is not reported: the apiserver would not have run it, and its error says nothing new."""
        errors: list[CrdProblem] = []
        failures: list[CrdProblem] = []
        self._walk_cel(obj, old, old is not None, self.schema, [], errors, failures)
        return sorted(errors + ([] if blocked else failures), key=lambda p: list(map(str, p.path)))

    def _walk_cel(
        self,
        value: Any,
        old: Any,
        has_old: bool,
        schema: dict[str, Any],
        path: list[str | int],
        errors: list[CrdProblem],
        failures: list[CrdProblem],
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
            where = (*path, *_field_path(rule.get("fieldPath", "")))
            try:
                ok = cel.evaluate(rule["rule"], cel.Context(variables=variables, functions=_CEL_FUNCTIONS))
            except Exception as error:  # the apiserver reports an erroring rule as a failed validation
                failures.append(
                    CrdProblem(where, f"Invalid value: {_kind(value)}: rule {rule['rule']!r} failed: {error}")
                )
                continue
            if ok is not True:
                message = rule.get("message") or f"failed rule: {rule['rule']}"
                errors.append(CrdProblem(where, f"Invalid value: {_kind(value)}: {message}"))
        if isinstance(value, dict):
            if "properties" in schema:
                for key, child in value.items():
                    if key in schema["properties"]:
                        child_has_old = has_old and isinstance(old, dict) and key in old
                        child_old = old[key] if child_has_old else None
                        self._walk_cel(
                            child,
                            child_old,
                            child_has_old,
                            schema["properties"][key],
                            [*path, key],
                            errors,
                            failures,
                        )
            elif isinstance(schema.get("additionalProperties"), dict):
                for key, child in value.items():
                    child_has_old = has_old and isinstance(old, dict) and key in old
                    child_old = old[key] if child_has_old else None
                    self._walk_cel(
                        child,
                        child_old,
                        child_has_old,
                        schema["additionalProperties"],
                        [*path, key],
                        errors,
                        failures,
                    )
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            # Without x-kubernetes-list-type map/set, list items have no identity across updates:
            # transition rules below a plain list never see oldSelf (as in the apiserver).
            for index, child in enumerate(value):
                self._walk_cel(child, None, False, schema["items"], [*path, index], errors, failures)

    # --- the whole request -------------------------------------------------------------------------

    def create(self, obj: dict[str, Any]) -> list[str]:
        """All errors a create would get; empty when the apiserver would accept the object."""
        return [str(problem) for problem in self.create_problems(obj)]

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        """All errors an update from ``old`` (as stored, so already defaulted) to ``new`` would get."""
        return [str(problem) for problem in self.update_problems(old, new)]

    def create_problems(self, obj: dict[str, Any]) -> list[CrdProblem]:
        return self._admit(obj, None)

    def update_problems(self, old: dict[str, Any], new: dict[str, Any]) -> list[CrdProblem]:
        return self._admit(new, self.prune_and_default(old))

    def _admit(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[CrdProblem]:
        # Reports more than one apiserver answer would, so that one run shows every problem: the apiserver
        # stops at unknown fields (strict decoding: nothing else is checked) and runs no CEL rule once
        # the schema found a blocking error, saying "some validation rules were not checked". Everything
        # the apiserver does say is here word for word (tests/cluster proves it on the corpus).
        errors = self.unknown_field_problems(obj)
        defaulted = self.prune_and_default(obj)
        schema = self.schema_problems(defaulted)
        errors += schema
        errors += self.cel_problems(defaulted, old, blocked=any(is_blocking(p) for p in schema))
        return errors


_BLOCKING = ("Required value", "Unsupported value:", "Too long:", "Too many:")


def is_blocking(problem: CrdProblem) -> bool:
    """A schema error after which the apiserver evaluates no CEL rule (hasBlockingErr in
    apiextensions-apiserver's customresource/strategy.go): required, enum, too long, too many, wrong type."""
    return problem.message.startswith(_BLOCKING) or " in body must be of type " in problem.message


_STRING_ORDER = {"maxLength": 0, "minLength": 1, "pattern": 2}


def _json(value: Any) -> str:
    # Go quotes non-ASCII letters as they are; so does the apiserver's message.
    return json.dumps(value, ensure_ascii=False)


def _type_name(value: Any) -> str:
    """The JSON type of a value, as the apiserver names it in a type error."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "array" if isinstance(value, list) else "object"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return _json(value)


def _describe(error: jsonschema.ValidationError) -> CrdProblem:
    parts: Path_ = tuple(error.absolute_path)
    value = error.instance
    keyword = error.validator
    limit = error.validator_value
    if keyword == "required":
        missing = re.match(r"'(.*)' is a required property", error.message)
        name = missing.group(1) if missing else str(limit)
        return CrdProblem((*parts, name), "Required value")
    path = format_path(parts)
    if keyword == "enum":
        supported = ", ".join(_json(v) for v in limit)
        message = f"Unsupported value: {_json(value)}: supported values: {supported}"
    elif keyword == "type":
        kind = _type_name(value)
        message = f'Invalid value: "{kind}": {path} in body must be of type {limit}: "{kind}"'
    elif keyword == "maxLength":
        message = f"Too long: may not be more than {limit} bytes"
    elif keyword == "minLength":
        message = f"Invalid value: {_json(value)}: {path} in body should be at least {limit} chars long"
    elif keyword in {"maxItems", "maxProperties"}:
        message = f"Too many: {len(value)}: must have at most {limit} items"
    elif keyword in {"minItems", "minProperties"}:
        message = f"Invalid value: {len(value)}: {path} in body should have at least {limit} items"
    elif keyword == "minimum":
        message = f"Invalid value: {value}: {path} in body should be greater than or equal to {limit}"
    elif keyword == "maximum":
        message = f"Invalid value: {value}: {path} in body should be less than or equal to {limit}"
    elif keyword == "pattern":
        message = f"Invalid value: {_json(value)}: {path} in body should match '{limit}'"
    else:
        message = f"Invalid value: {_kind(value)}: {error.message}"
    return CrdProblem(parts, message)
