"""`mce-operator demo` (what `make demo` runs) does the whole job and says so, on embedded defaults, for
every example in examples/ and any valid manifest; what it cannot demonstrate it refuses clearly."""

import subprocess
import sys
from pathlib import Path

import pytest

from mce_operator import api, core, demo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def run_demo(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mce_operator.cli", "demo", "--delay", "0.3", *args],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=cwd,
    )


@pytest.mark.e2e
def test_demo_runs_every_step_and_exits_zero() -> None:
    result = run_demo()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in (
        "1. kubectl apply -f examples/direct.yaml   (ml/fraud: Direct mode, 3 containers, "
        "deletionPolicy Retain -> Delete for the demo)",
        "2. invoke each container",
        "3. kubectl patch: spec.mode Direct -> Serial",
        "4. invoke the pipeline",
    ):
        assert step in out
    assert "ran features -> scorer -> explainer" in out
    assert "is left in SageMaker" in out
    assert "11 that changed something" in out
    assert out.rstrip().endswith("demo: every step happened.")


@pytest.mark.e2e
def test_demo_of_the_serial_example_describes_what_it_applies() -> None:
    """A Serial pipeline without hostnames cannot switch to Direct: the demo changes an environment
    variable instead, and invokes the pipeline before and after."""
    result = run_demo("--example", "examples/serial.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "1. kubectl apply -f examples/serial.yaml   (ml/churn: Serial mode, 3 containers)" in out
    assert "2. invoke the pipeline (Serial" in out
    assert f"3. kubectl patch: spec.containers[0].environment.{demo.REVISION_VARIABLE}=2" in out
    assert "4. invoke the pipeline (Serial" in out
    assert out.count("ran container-1 -> container-2 -> container-3") == 2
    assert "invoke each container" not in out
    assert "11 that changed something" in out
    assert out.rstrip().endswith("demo: every step happened.")


def test_a_manifest_the_demo_cannot_apply_is_refused_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: sagemaker.mce.dev/v1alpha1\nkind: MultiContainerEndpoint\nmetadata: {name: x}\n"
        "spec: {mode: Direct, containers: [{image: a}, {image: b}]}\n"
    )
    result = run_demo("--example", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "the spec is invalid" in result.stderr and "spec.executionRoleArn: is required" in result.stderr
    missing = run_demo("--example", "nowhere.yaml", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no such file, nor a packaged example (direct.yaml, serial.yaml)" in missing.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_packaged_and_loads_by_path_and_by_name(path: Path) -> None:
    assert path.name in demo.packaged_examples()
    by_path = demo.load_example(str(path))
    assert by_path.label == str(path)
    for name in (f"examples/{path.name}", path.name, path.stem):
        packaged = demo.load_example(name)
        assert packaged.label == f"examples/{path.name}"
        # The packaged example is the repository's file, not a copy.
        assert packaged.manifest == by_path.manifest


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_demos_change_is_valid_and_needs_a_new_model(path: Path) -> None:
    manifest = demo.load_example(str(path)).manifest
    change = demo.spec_change(manifest)
    changed = {**manifest["spec"], **change.patch["spec"]}
    identity = core.Identity(namespace="ml", name="x", uid="u", generation=1)
    before = core.desired_state(api.parse_spec(manifest["spec"]), identity)
    after = core.desired_state(api.parse_spec(changed), identity)
    assert after.model_name != before.model_name and after.config_name != before.config_name
    assert after.endpoint_name == before.endpoint_name


def test_a_serial_example_with_hostnames_switches_to_direct() -> None:
    manifest = demo.load_example("serial").manifest
    for index, container in enumerate(manifest["spec"]["containers"]):
        container["containerHostname"] = f"step-{index}"
    change = demo.spec_change(manifest)
    assert change.description == "spec.mode Serial -> Direct"
    assert api.parse_spec({**manifest["spec"], **change.patch["spec"]}).mode is api.Mode.DIRECT
