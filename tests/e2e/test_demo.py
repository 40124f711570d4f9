"""`mce-operator demo` (what `make demo` runs) does the whole job and says so, on embedded defaults."""

import subprocess
import sys

import pytest


@pytest.mark.e2e
def test_demo_runs_every_step_and_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mce_operator.cli", "demo", "--delay", "0.3"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in (
        "1. kubectl apply",
        "2. invoke each container",
        "3. kubectl patch",
        "4. invoke the pipeline",
    ):
        assert step in out
    assert "ran features -> scorer -> explainer" in out
    assert "is left in SageMaker" in out
    assert "11 that changed something" in out
    assert out.rstrip().endswith("demo: every step happened.")
