"""kubectl mce validate: the corpus of tests/api, mixed folders, YAML errors with their exact lines."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import test_validation as corpus
import yaml
from cli_run import kubectl_mce

from mce_operator import api

EXAMPLES = Path(__file__).parents[2] / "examples"


def _name(case_id: str) -> str:
    return "c-" + re.sub(r"[^a-z0-9-]", "-", case_id.lower())


def _one_message_has(messages: list[str], words: tuple[str, ...]) -> bool:
    return any(all(word in message for word in words) for message in messages)


@pytest.fixture(scope="module")
def corpus_verdict(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], str]:
    """The whole corpus in one run: the invalid cases in one multi-document file, the valid ones in
    another, in a folder."""
    folder = tmp_path_factory.mktemp("corpus")
    invalid = [corpus.resource(corpus.spec_with(case.changes), _name(case.id)) for case in corpus.INVALID]
    (folder / "invalid.yaml").write_text(yaml.safe_dump_all(invalid, sort_keys=False))
    valid = [corpus.resource(corpus.spec_with(changes), _name(n)) for n, changes in corpus.VALID.items()]
    (folder / "valid.yaml").write_text(yaml.safe_dump_all(valid, sort_keys=False, allow_unicode=True))
    run = kubectl_mce("validate", "-f", str(folder), "-o", "json")
    text = kubectl_mce("validate", str(folder))
    assert text.code == run.code
    return run.code, json.loads(run.out), text.out


def _object(verdict: dict[str, Any], name: str) -> dict[str, Any]:
    found = [obj for obj in verdict["objects"] if obj["name"] == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def test_the_corpus_is_judged_as_a_whole(corpus_verdict: tuple[int, dict[str, Any], str]) -> None:
    code, verdict, _ = corpus_verdict
    assert code == 1 and verdict["valid"] is False
    assert len(verdict["objects"]) == len(corpus.INVALID) + len(corpus.VALID)
    assert sum(1 for obj in verdict["objects"] if not obj["valid"]) == len(corpus.INVALID)


@pytest.mark.parametrize("case", corpus.INVALID, ids=lambda case: case.id)
def test_every_invalid_case_is_reported_with_its_field(
    corpus_verdict: tuple[int, dict[str, Any], str], case: corpus.Invalid
) -> None:
    _, verdict, text = corpus_verdict
    obj = _object(verdict, _name(case.id))
    assert obj["valid"] is False
    # Both rule sources, in their own words, as tests/api expects of them.
    assert _one_message_has(obj["crd"], case.crd), obj["crd"]
    assert _one_message_has(obj["model"], case.model), obj["model"]
    # The field, in the problems and on the printed line.
    field = case.crd[0] if case.crd[0].startswith("spec") else case.model[0]
    assert field in [problem["field"] for problem in obj["problems"]], obj["problems"]
    line = next(p["line"] for p in obj["problems"] if p["field"] == field)
    assert f"invalid.yaml:{line}: ml/{_name(case.id)}: {field}: " in text


@pytest.mark.parametrize("name", list(corpus.VALID))
def test_every_valid_case_passes(corpus_verdict: tuple[int, dict[str, Any], str], name: str) -> None:
    _, verdict, text = corpus_verdict
    obj = _object(verdict, _name(name))
    assert (obj["valid"], obj["problems"], obj["crd"], obj["model"]) == (True, [], [], [])
    assert f"ml/{_name(name)}:" not in text


def test_the_examples_are_valid() -> None:
    run = kubectl_mce("validate", "-f", str(EXAMPLES / "direct.yaml"), "-f", str(EXAMPLES / "serial.yaml"))
    assert (run.code, run.out) == (0, "")
    assert "2 MultiContainerEndpoints in 2 files: 2 valid, 0 invalid" in run.err


# --- a GitOps repository's folder -------------------------------------------------------------------------

MCE = """\
apiVersion: sagemaker.mce.dev/v1alpha1
kind: MultiContainerEndpoint
metadata:
  name: {name}
spec:
  executionRoleArn: arn:aws:iam::123456789012:role/sagemaker-exec
  containers:
    - image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/a:1
    - image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/b:1
  instanceType: {instance_type}
"""


def _repository(root: Path) -> None:
    """Manifests of several kinds, nested folders, a List, JSON, and files that are not manifests."""
    (root / "apps" / "fraud").mkdir(parents=True)
    (root / "apps" / "churn").mkdir(parents=True)
    (root / "apps" / "fraud" / "mce.yaml").write_text(
        "# the fraud endpoint and its config\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fraud-settings}\ndata: {threshold: '0.8'}\n"
        "---\n" + MCE.format(name="fraud", instance_type="ml.m5.large") + "---\n"
    )
    (root / "apps" / "churn" / "mce.yml").write_text(MCE.format(name="churn", instance_type="m5.large"))
    (root / "apps" / "churn" / "kustomization.yaml").write_text("resources:\n  - mce.yml\n")
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            yaml.safe_load(MCE.format(name="listed", instance_type="ml.c5.xlarge")),
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}},
        ],
    }
    (root / "apps" / "list.json").write_text(json.dumps(listed, indent=2))
    (root / "README.md").write_text("kind: MultiContainerEndpoint\n")  # not a manifest file: not read
    (root / "apps" / "values.yaml").write_text("- just\n- a list\n")


def test_a_folder_with_mixed_documents(tmp_path: Path) -> None:
    _repository(tmp_path)
    run = kubectl_mce("validate", "-f", str(tmp_path), "-n", "ml")
    churn = tmp_path / "apps" / "churn" / "mce.yml"
    assert run.code == 1
    assert run.out.splitlines() == [
        f"{churn}:10: ml/churn: spec.instanceType: instanceType must be a SageMaker instance type such as "
        "ml.m5.large (got 'm5.large')"
    ]
    assert run.err.strip() == (
        "3 MultiContainerEndpoints in 5 files: 2 valid, 1 invalid; "
        "skipped 2 objects of other kinds and 2 documents without kind"
    )
    verdict = json.loads(kubectl_mce("validate", str(tmp_path), "-o", "json").out)
    assert [(o["name"], o["valid"]) for o in verdict["objects"]] == [
        ("churn", False),
        ("fraud", True),
        ("listed", True),
    ]
    assert sorted((s["kind"] or "-", s["skipped"]) for s in verdict["skipped"]) == [
        ("-", "not a Kubernetes object (no apiVersion and kind)"),
        ("-", "not a Kubernetes object (no apiVersion and kind)"),
        ("ConfigMap", "another kind"),
        ("Deployment", "another kind"),
    ]
    # The document after a comment and another document keeps its own line numbers.
    fraud = next(o for o in verdict["objects"] if o["name"] == "fraud")
    assert fraud["line"] == 7
    # Without -n, objects without a namespace are shown in "default", where kubectl apply would put them.
    assert "default/churn" in kubectl_mce("validate", str(churn)).out


def test_stdin_and_a_wrong_kind_or_version_of_this_group() -> None:
    manifest = (
        MCE.format(name="a", instance_type="ml.m5.large").replace("v1alpha1", "v1")
        + "---\n"
        + MCE.format(name="b", instance_type="ml.m5.large").replace("kind: Multi", "kind: Mutli")
    )
    run = kubectl_mce("validate", "-f", "-", stdin=manifest)
    assert run.code == 1
    assert run.out.splitlines() == [
        "<stdin>:1: default/a: apiVersion: sagemaker.mce.dev/v1 does not serve MultiContainerEndpoint: "
        "use sagemaker.mce.dev/v1alpha1",
        '<stdin>:13: default/b: kind: sagemaker.mce.dev has no kind "MutliContainerEndpoint": its only kind '
        "is MultiContainerEndpoint",
    ]


# --- lines ------------------------------------------------------------------------------------------------

SEVERAL_PROBLEMS = """\
apiVersion: v1
kind: Namespace
metadata: {name: ml}
---
apiVersion: sagemaker.mce.dev/v1alpha1
kind: MultiContainerEndpoint
metadata:
  name: Fraud
  namespace: ml
spec:
  endpointName: fraud_prod
  executionRoleArn: arn:aws:iam::123456789012:role/sagemaker-exec
  mode: Direct
  containers:
    - containerHostname: features
      image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/a:1
    - containerHostname: scorer
      image: "has space:1"
      environment:
        1BAD: x
  tags:
    aws:owner: me
  deletionPolicy: Orphan
"""


def test_each_problem_is_reported_on_its_fields_line(tmp_path: Path) -> None:
    path = tmp_path / "fraud.yaml"
    path.write_text(SEVERAL_PROBLEMS)
    run = kubectl_mce("validate", str(path))
    assert run.code == 1
    found = {line.split(": ")[2]: int(line.split(":")[1]) for line in run.out.splitlines()}
    assert found == {
        "metadata.name": 8,
        "spec.endpointName": 11,
        "spec.containers[1].image": 18,
        "spec.containers[1].environment": 19,
        "spec.tags": 21,
        "spec.deletionPolicy": 23,
        "spec.instanceType": 10,  # missing: reported on its parent's line
    }
    for line in run.out.splitlines():
        assert line.startswith(f"{path}:") and ": ml/Fraud: " in line


YAML_ERRORS = [
    pytest.param(
        "a: 1\nspec:\n  containers:\n    - image: x\n      image: y\n",
        5,
        'mapping key "image" already defined at line {4}',
        id="duplicate-key",
    ),
    pytest.param("a: 1\nb:\n\tc: 2\n", 3, "found character '\\t' that cannot start any token", id="tab"),
    pytest.param("a: 1\nb: c: d\n", 2, "mapping values are not allowed here", id="mapping-in-value"),
    pytest.param("a: 1\nb: [1, 2\nc: 3\n", 3, "expected ',' or ']'", id="unclosed-flow"),
    pytest.param('a: 1\nb: "open\n', 3, "found unexpected end of stream", id="unclosed-quote"),
    pytest.param("a: 1\nb: !vault x\n", 2, "could not determine a constructor for the tag", id="tag"),
]


@pytest.mark.parametrize(("text", "line", "words"), YAML_ERRORS)
def test_yaml_errors_are_reported_at_their_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "broken.yaml"
    # A valid object first: documents before the error are still checked, then the error ends the file.
    path.write_text(MCE.format(name="before", instance_type="ml.m5.large") + "---\n" + text)
    offset = MCE.count("\n") + 1
    run = kubectl_mce("validate", str(path))
    assert run.code == 1
    assert run.out.splitlines() == [run.out.splitlines()[0]]
    # {N} in the expected words is line N of the broken document, counted in the whole file.
    words = re.sub(r"\{(\d+)\}", lambda match: str(offset + int(match.group(1))), words)
    assert run.out.startswith(f"{path}:{offset + line}: -: yaml: {words}"), run.out
    assert "1 MultiContainerEndpoint in 1 file: 1 valid, 0 invalid; 1 file not read" in run.err


def test_unreadable_inputs(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes("kind: caf\xe9\n".encode("latin-1"))
    run = kubectl_mce("validate", str(tmp_path / "nope.yaml"), str(tmp_path / "latin1.yaml"))
    assert run.code == 1
    lines = run.out.splitlines()
    assert lines[0] == f"{tmp_path / 'nope.yaml'}: -: no such file or directory"
    assert lines[1].startswith(f"{tmp_path / 'latin1.yaml'}: -: cannot read: 'utf-8' codec can't decode")
    assert kubectl_mce("validate").code == 1  # nothing to read is an error, not a silent pass


def test_json_output_and_the_crd_option(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(MCE.format(name="a", instance_type="ml.m5.large"))
    # A CRD that does not know `instanceType`: validate follows the CRD it is given (e.g. the installed one).
    crd: dict[str, Any] = yaml.safe_load(
        (Path(__file__).parents[2] / "crds" / "sagemaker.mce.dev_multicontainerendpoints.yaml").read_text()
    )
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["instanceType"]
    spec["required"].remove("instanceType")
    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(crd))
    run = kubectl_mce("validate", str(path), "--crd", str(tmp_path / "crd.yaml"), "-o", "json")
    verdict = json.loads(run.out)
    assert run.code == 1
    problem = verdict["objects"][0]["problems"][0]
    assert (problem["field"], problem["line"], problem["source"]) == ("spec.instanceType", 10, "crd")
    assert verdict["objects"][0]["model"] == []  # the models still know it: the CRD is the stale one
    assert kubectl_mce("validate", str(path), "--crd", str(tmp_path / "missing.yaml")).code == 1


def test_help_tells_the_format_and_the_exit_codes() -> None:
    run = kubectl_mce("validate", "--help")
    assert run.code == 0
    assert "FILE:LINE: NAMESPACE/NAME: FIELD: MESSAGE" in run.out
    assert "exit codes: 0 all valid; 1 a problem" in run.out
    assert api.KIND in run.out


def test_without_the_cli_extra_the_commands_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cel", None)  # as if common-expression-language were not installed
    for command in ("validate", "render", "diff"):
        run = kubectl_mce(command, "-f", str(EXAMPLES))
        assert run.code == 1
        assert f"kubectl mce {command} needs the package cel" in run.err
        assert "which the cli extra installs (pip install -c constraints.txt '.[cli]'" in run.err
