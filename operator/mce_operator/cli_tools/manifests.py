"""Reading Kubernetes manifests as ``kubectl apply -f`` does, keeping the line of every field.

Files, folders (recursively: ``.yaml``, ``.yml`` and ``.json`` files, in name order) and ``-`` for stdin;
multi-document YAML; ``kind: List`` documents stand for their items. YAML is read as kubectl reads it
(sigs.k8s.io/yaml), where it differs from PyYAML's defaults: a duplicate key is an error, and a date
stays a string.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

FieldPath = tuple[str | int, ...]
EXTENSIONS = (".yaml", ".yml", ".json")
STDIN = "-"
STDIN_NAME = "<stdin>"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without the timestamp type: Kubernetes keeps ``2024-05-01`` a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Document:
    """One object of a manifest: where it is, what it holds, and on which line each field is."""

    source: str
    line: int
    obj: Any
    lines: Mapping[FieldPath, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of a field, or of its nearest enclosing field that is written in the file (a missing
        field is reported where its parent is)."""
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.line


@dataclass(frozen=True)
class ReadError:
    """A file that cannot be read, or YAML that cannot be parsed; ``line`` is None when no line applies."""

    source: str
    line: int | None
    message: str


def expand(paths: Sequence[str]) -> tuple[list[str], list[ReadError]]:
    """The files the paths name: a folder stands for the manifests below it."""
    files: list[str] = []
    errors: list[ReadError] = []
    for path in paths:
        if path == STDIN:
            files.append(path)
        elif os.path.isdir(path):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(path)
                for name in names
                if name.endswith(EXTENSIONS)
            )
            files.extend(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            errors.append(ReadError(path, None, "no such file or directory"))
    return files, errors


def read(paths: Sequence[str], stdin: TextIO) -> tuple[list[Document], list[ReadError]]:
    """Every document of every file, in order, and what could not be read."""
    files, errors = expand(paths)
    documents: list[Document] = []
    for path in files:
        source = STDIN_NAME if path == STDIN else path
        try:
            text = stdin.read() if path == STDIN else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            errors.append(ReadError(source, None, f"cannot read: {error}"))
            continue
        found, failure = parse(text, source)
        documents.extend(found)
        if failure is not None:
            errors.append(failure)
    return documents, errors


def parse(text: str, source: str) -> tuple[list[Document], ReadError | None]:
    """The documents of one YAML stream. A syntax error ends the stream (as it does for kubectl): the
    documents before it are returned with the error."""
    documents: list[Document] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            duplicate = _duplicate_key(node)
            if duplicate is not None:
                return documents, ReadError(source, *duplicate)
            obj = loader.construct_document(node)
            if obj is None:
                continue  # an empty document: kubectl skips it too
            lines: dict[FieldPath, int] = {}
            _record_lines(node, (), lines)
            documents.extend(_items(Document(source, node.start_mark.line + 1, obj, lines)))
    except yaml.MarkedYAMLError as error:
        return documents, ReadError(source, *_yaml_error(error))
    except yaml.YAMLError as error:
        return documents, ReadError(source, None, f"yaml: {error}")
    finally:
        loader.dispose()
    return documents, None


def _items(document: Document) -> Iterator[Document]:
    """A ``kind: List`` (what ``kubectl get -o yaml`` writes) stands for its items."""
    obj = document.obj
    if not (isinstance(obj, dict) and obj.get("kind") == "List" and isinstance(obj.get("items"), list)):
        yield document
        return
    for index, item in enumerate(obj["items"]):
        prefix: FieldPath = ("items", index)
        lines = {path[2:]: line for path, line in document.lines.items() if path[:2] == prefix}
        yield Document(document.source, document.line_of(prefix), item, lines)


def _yaml_error(error: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    mark = error.problem_mark or error.context_mark
    message = f"yaml: {error.problem or error.context or 'invalid YAML'}"
    if error.context and error.problem and error.context_mark is not None:
        message += f" ({error.context} at line {error.context_mark.line + 1})"
    return (mark.line + 1 if mark is not None else None), message


def _key(node: yaml.Node) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _duplicate_key(node: yaml.Node, seen_nodes: set[int] | None = None) -> tuple[int, str] | None:
    """The first key defined twice in one mapping, as kubectl reports it (PyYAML keeps the last one
    silently, so the object would not be what kubectl refuses)."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:  # an alias: already checked where its anchor is
        return None
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _key(key_node)
            if key is not None and key != "<<":
                line = key_node.start_mark.line + 1
                if key in first_line:
                    return line, f'yaml: mapping key "{key}" already defined at line {first_line[key]}'
                first_line[key] = line
            found = _duplicate_key(value_node, seen_nodes)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item, seen_nodes)
            if found is not None:
                return found
    return None


def _record_lines(node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int], depth: int = 0) -> None:
    # A field's line is its key's line; a list item's, the line where the item starts.
    if depth > 100:  # aliases can nest deeper than any manifest does: stop rather than recurse for ever
        return
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = _key(key_node)
            if key is None or key == "<<":
                continue
            lines.setdefault((*path, key), key_node.start_mark.line + 1)
            _record_lines(value_node, (*path, key), lines, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault((*path, index), item.start_mark.line + 1)
            _record_lines(item, (*path, index), lines, depth + 1)
