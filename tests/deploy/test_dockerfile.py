"""The Dockerfile, read as data (no Docker engine here): a build stage that makes the wheel, a runtime stage
that installs it without the demo extra, pinned bases, non-root, the exec-form entrypoint. The wheel built
from exactly the build stage's files is installed and run by tests/e2e/test_installed_wheel.py."""

from __future__ import annotations

import json
import re
import shlex
import tomllib

from dockerfile_parse import ROOT, stages

KNOWN = {"LABEL", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "ENTRYPOINT", "ARG", "CMD"}


def copies(stage_instructions: list[tuple[str, str]]) -> list[list[str]]:
    return [shlex.split(rest) for keyword, rest in stage_instructions if keyword == "COPY"]


def test_two_stages_on_the_same_pinned_base() -> None:
    build, runtime = stages()
    assert build.name == "build" and runtime.name is None
    assert build.base == runtime.base
    # Pinned to a patch release and a Debian release: never `latest`, never a moving minor tag.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", runtime.base), runtime.base
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == ">=3.11"
    for stage in (build, runtime):
        assert {k for k, _ in stage.instructions} <= KNOWN
        assert "HEALTHCHECK" not in {k for k, _ in stage.instructions}  # Kubernetes probes /healthz


def test_the_build_stage_copies_what_the_wheel_needs_and_builds_it() -> None:
    build, _ = stages()
    copied = copies(build.instructions)
    sources = [source for words in copied for source in words[:-1]]
    for source in sources:
        assert (ROOT / source).exists(), source
    # The package, its metadata, and the examples it ships (pyproject maps examples/ into the package).
    assert {"pyproject.toml", "README.md", "operator", "examples"} <= set(sources)
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert set(package_dir.values()) <= set(sources)
    (run,) = build.arguments("RUN")
    assert run == "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ."


def test_the_runtime_stage_installs_only_the_wheel_without_extras() -> None:
    _, runtime = stages()
    copied = copies(runtime.instructions)
    assert ["--from=build", "/wheels", "/tmp/wheels"] in copied
    assert ["constraints.txt", "/tmp/constraints.txt"] in copied
    # No source tree in the image: only the wheel and the pins.
    assert all(words[0].startswith("--from=") or words[:-1] == ["constraints.txt"] for words in copied)
    installs = [r for r in runtime.arguments("RUN") if "pip install" in r]
    assert len(installs) == 1
    words = shlex.split(installs[0].split("&&")[0])
    assert words == ["pip", "install", "--no-cache-dir", "-c", "/tmp/constraints.txt", "/tmp/wheels/*.whl"]
    assert "[" not in installs[0]  # no extra: the demo's in-memory Kubernetes API stays out


def test_non_root_after_the_last_run_and_the_entrypoint_is_the_operator() -> None:
    _, runtime = stages()
    keywords = [k for k, _ in runtime.instructions]
    user = runtime.arguments("USER")[-1]
    assert user.split(":")[0] not in {"root", "0"} and user.split(":")[0].isdigit()
    last_run = max(i for i, k in enumerate(keywords) if k == "RUN")
    assert keywords.index("USER") > last_run
    (entrypoint,) = runtime.arguments("ENTRYPOINT")
    assert json.loads(entrypoint) == ["mce-operator", "run"]  # exec form: signals reach the operator
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mce-operator"] == "mce_operator.cli:main"
    (exposed,) = runtime.arguments("EXPOSE")
    assert set(exposed.split()) == {"8080", "8081"}  # kopf's /healthz, /metrics
    assert any("org.opencontainers.image.title" in label for label in runtime.arguments("LABEL"))
