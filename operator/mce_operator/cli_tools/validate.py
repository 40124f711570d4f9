"""``kubectl mce validate``: would ``kubectl apply`` accept these MultiContainerEndpoints, and would the
operator?

Two rule sources, both the project's own, nothing restated here: the CRD generated from the pydantic
models (its OpenAPI schema, defaults and CEL rules, evaluated as the apiserver does: crd_eval), and the
models themselves (api.parse_spec, what the operator checks every object with). A problem is reported once
per field: in the models' words when both flag the same field (they say the rule in words), else as the
CRD says it. ``-o json`` gives both verdicts in full as well.

The apiserver's own checks of ObjectMeta (a name is required and must be a DNS subdomain, a namespace a
DNS label) are Kubernetes', the same for every resource, and are checked here too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mce_operator import api
from mce_operator.cli_tools.crd_eval import CrdEvaluator, format_path
from mce_operator.cli_tools.manifests import Document, FieldPath, ReadError

API_VERSION = f"{api.GROUP}/{api.VERSION}"
OTHER_KIND = "another kind"
NOT_AN_OBJECT = "not a Kubernetes object (no apiVersion and kind)"
# k8s.io/apimachinery's IsDNS1123Subdomain and IsDNS1123Label.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class Problem:
    """One broken rule: the field (empty for a whole document or file) and what is wrong with it."""

    field: str
    message: str
    line: int | None
    # "crd", "model", "both" (the same field flagged by each) or "metadata" (Kubernetes' own rules).
    rule_source: str

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message, "line": self.line, "source": self.rule_source}


@dataclass
class Checked:
    """One document's verdict. ``ours`` for a MultiContainerEndpoint, or anything that claims this API
    group or kind (a wrong version or kind there is a problem); otherwise the document is skipped and
    ``skipped`` says why."""

    source: str
    line: int
    ours: bool
    skipped: str = ""
    namespace: str | None = None
    name: str | None = None
    api_version: str | None = None
    object_kind: str | None = None
    problems: list[Problem] = field(default_factory=list)
    crd_verdict: list[str] = field(default_factory=list)
    model_verdict: list[str] = field(default_factory=list)
    document: Document | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def label(self) -> str:
        return f"{self.namespace or '-'}/{self.name or '-'}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.source,
            "line": self.line,
            "apiVersion": self.api_version,
            "kind": self.object_kind,
            "namespace": self.namespace,
            "name": self.name,
        }
        if not self.ours:
            out["skipped"] = self.skipped
        else:
            out.update(
                valid=self.valid,
                problems=[p.to_dict() for p in self.problems],
                crd=self.crd_verdict,
                model=self.model_verdict,
            )
        return out


@dataclass
class Report:
    checked: list[Checked]
    read_errors: list[ReadError]

    @property
    def objects(self) -> list[Checked]:
        return [c for c in self.checked if c.ours]

    @property
    def skipped(self) -> list[Checked]:
        return [c for c in self.checked if not c.ours]

    @property
    def failed(self) -> list[Checked]:
        return [c for c in self.objects if not c.valid]

    @property
    def valid(self) -> bool:
        return not self.failed and not self.read_errors

    def lines(self) -> list[str]:
        """``file:line: namespace/name: field: message`` for each problem."""
        out = [
            f"{e.source}:{e.line}: -: {e.message}" if e.line else f"{e.source}: -: {e.message}"
            for e in self.read_errors
        ]
        for checked in self.failed:
            # In file order, as a reader goes through the manifest.
            for problem in sorted(checked.problems, key=lambda p: (p.line or checked.line, p.field)):
                where = f"{checked.source}:{problem.line or checked.line}"
                what = f"{problem.field}: {problem.message}" if problem.field else problem.message
                out.append(f"{where}: {checked.label}: {what}")
        return out

    def summary(self) -> str:
        files = len({c.source for c in self.checked} | {e.source for e in self.read_errors})
        objects = self.objects
        invalid = sum(1 for c in objects if not c.valid)
        text = (
            f"{_count(len(objects), api.KIND, api.KIND + 's')} in {_count(files, 'file', 'files')}: "
            f"{len(objects) - invalid} valid, {invalid} invalid"
        )
        if self.read_errors:
            text += f"; {_count(len(self.read_errors), 'file', 'files')} not read (YAML errors, missing)"
        others = [c for c in self.skipped if c.skipped == OTHER_KIND]
        text += f"; skipped {_count(len(others), 'object', 'objects')} of other kinds"
        if len(others) != len(self.skipped):
            text += f" and {_count(len(self.skipped) - len(others), 'document', 'documents')} without kind"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "objects": [c.to_dict() for c in self.objects],
            "skipped": [c.to_dict() for c in self.skipped],
            "readErrors": [
                {"file": e.source, "line": e.line, "message": e.message} for e in self.read_errors
            ],
        }


class Validator:
    def __init__(self, crd: CrdEvaluator | None = None, default_namespace: str = "default") -> None:
        self.crd = crd or CrdEvaluator.from_models()
        self.default_namespace = default_namespace

    def report(self, documents: Sequence[Document], read_errors: Sequence[ReadError] = ()) -> Report:
        return Report([self.check(document) for document in documents], list(read_errors))

    def check(self, document: Document) -> Checked:
        obj = document.obj
        if not isinstance(obj, dict):
            return Checked(document.source, document.line, ours=False, skipped=NOT_AN_OBJECT)
        raw_meta = obj.get("metadata")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        api_version, kind = _text(obj.get("apiVersion")), _text(obj.get("kind"))
        group = (api_version or "").rpartition("/")[0]
        checked = Checked(
            document.source,
            document.line,
            ours=group == api.GROUP or kind == api.KIND,
            namespace=str(meta.get("namespace") or self.default_namespace),
            name=str(meta["name"]) if meta.get("name") is not None else None,
            api_version=api_version,
            object_kind=kind,
            document=document,
        )
        if not checked.ours:
            # kubectl refuses a document without apiVersion or kind; a repository's folder may well hold
            # other YAML (CI, values, kustomization.yaml without a kind): not this command's business.
            checked.skipped = OTHER_KIND if api_version and kind else NOT_AN_OBJECT
            return checked
        checked.problems = self._kind(checked, document)
        if checked.problems:
            return checked
        checked.problems = self._metadata(obj, document)
        crd = self.crd.create_problems(obj)
        checked.crd_verdict = [str(p) for p in crd]
        model: list[tuple[FieldPath, str]] = []
        spec = obj.get("spec")
        if isinstance(spec, dict):
            try:
                api.parse_spec(spec)
            except api.SpecError as error:
                model = list(error.problems)
        checked.model_verdict = [f"{format_path(path)}: {text}" for path, text in model]
        checked.problems += _merge([(p.path, p.message) for p in crd], model, document)
        return checked

    @staticmethod
    def _kind(checked: Checked, document: Document) -> list[Problem]:
        """A document of this group with another kind or version, or of this kind in another group: kubectl
        apply would find no such resource."""
        problems = []
        if checked.object_kind != api.KIND:
            problems.append(
                Problem(
                    "kind",
                    f'{api.GROUP} has no kind "{checked.object_kind or ""}": its only kind is {api.KIND}',
                    document.line_of(("kind",)),
                    "crd",
                )
            )
        if checked.api_version != API_VERSION:
            problems.append(
                Problem(
                    "apiVersion",
                    f"{checked.api_version or 'no apiVersion'} does not serve {api.KIND}: use {API_VERSION}",
                    document.line_of(("apiVersion",)),
                    "crd",
                )
            )
        return problems

    @staticmethod
    def _metadata(obj: dict[str, Any], document: Document) -> list[Problem]:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            return [Problem("metadata.name", "Required value: name is required", document.line, "metadata")]
        problems = []
        name = meta.get("name")
        if not name:
            problems.append(
                Problem(
                    "metadata.name",
                    "Required value: name is required (kubectl apply needs one; generateName is not enough)",
                    document.line_of(("metadata",)),
                    "metadata",
                )
            )
        elif not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            problems.append(
                Problem(
                    "metadata.name",
                    f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower case "
                    "alphanumeric characters, '-' or '.', must start and end with an alphanumeric "
                    "character, and be at most 253 characters",
                    document.line_of(("metadata", "name")),
                    "metadata",
                )
            )
        namespace = meta.get("namespace")
        if namespace is not None and (
            not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace)
        ):
            problems.append(
                Problem(
                    "metadata.namespace",
                    f"Invalid value: {namespace!r}: a lowercase RFC 1123 label must consist of lower case "
                    "alphanumeric characters or '-', start and end with an alphanumeric character, and be "
                    "at most 63 characters",
                    document.line_of(("metadata", "namespace")),
                    "metadata",
                )
            )
        return problems


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _within(inner: FieldPath, outer: FieldPath) -> bool:
    return inner[: len(outer)] == outer


def _merge(
    crd: Sequence[tuple[FieldPath, str]], model: Sequence[tuple[FieldPath, str]], document: Document
) -> list[Problem]:
    """One report per field. Where both flag the same field, the models' messages (the rule in words)
    stand for the CRD's. A models' problem on a field that contains one the CRD pinpointed (a cross-field
    rule the models check on the whole spec or container) is the same problem: the CRD's more precise
    field is kept. What only the models flag is reported as they say it."""
    problems: list[Problem] = []
    fields: list[FieldPath] = []
    for path, _ in crd:
        if path not in fields:
            fields.append(path)
    for path in fields:
        words = [message for where, message in model if where == path]
        source, messages = ("both", words) if words else ("crd", [m for where, m in crd if where == path])
        problems += [Problem(format_path(path), m, document.line_of(path), source) for m in messages]
    for path, message in model:
        if not any(_within(where, path) for where in fields):
            problems.append(Problem(format_path(path), message, document.line_of(path), "model"))
    return problems
