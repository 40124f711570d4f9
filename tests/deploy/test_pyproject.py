"""The package's metadata: runtime dependencies are what `mce-operator run` needs, the demo's tooling is
behind the `demo` extra, and the explicit package list (needed to ship examples/) misses nothing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def project() -> dict[str, Any]:
    loaded: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return loaded


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_runtime_dependencies_are_the_operators_only() -> None:
    runtime = names(project()["project"]["dependencies"])
    assert runtime == {"kopf", "kubernetes", "boto3", "pydantic", "pyyaml", "prometheus-client"}


def test_the_demo_extra_carries_the_in_memory_kubernetes_api() -> None:
    extras = project()["project"]["optional-dependencies"]
    assert {"kmock", "jsonpatch", "aiohttp"} <= names(extras["demo"])
    # make installs both extras.
    assert "-e '.[demo,test]'" in (ROOT / "Makefile").read_text()


def test_every_dependency_is_pinned_by_the_constraints() -> None:
    pinned = names([line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.strip()])
    extras = project()["project"]["optional-dependencies"]
    for requirement in names(project()["project"]["dependencies"] + extras["demo"] + extras["bench"]):
        assert requirement in pinned, requirement


def test_the_package_list_names_every_package_and_the_examples() -> None:
    setuptools = project()["tool"]["setuptools"]
    source = ROOT / "operator"
    found = {
        ".".join(init.parent.relative_to(source).parts)
        for init in source.rglob("__init__.py")
        if "egg-info" not in str(init)
    }
    assert set(setuptools["packages"]) == found | {"mce_operator.examples"}
    assert setuptools["package-dir"]["mce_operator.examples"] == "examples"
    assert setuptools["package-data"]["mce_operator.examples"] == ["*.yaml"]
    assert (ROOT / "examples" / "__init__.py").is_file()
