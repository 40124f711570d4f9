"""`make demo-cluster`: the demo's steps against a real kube-apiserver + etcd, with real kubectl rows."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import ROOT, require_control_plane
from processes import BIN

pytestmark = pytest.mark.cluster


def test_the_demo_runs_every_step_against_the_control_plane() -> None:
    require_control_plane()  # the demo starts its own
    run = subprocess.run(
        [str(BIN / "mce-operator"), "demo", "--control-plane"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "a real kube-apiserver + etcd" in run.stdout and "demo: every step happened." in run.stdout
    # The rows are kubectl's own: its header, the printer columns with the operator's values.
    rows = [line.split("kubectl", 1)[1].split() for line in run.stdout.splitlines() if "  kubectl  " in line]
    assert rows[0] == ["NAME", "MODE", "CONTAINERS", "STATUS", "READY", "ENDPOINT", "AGE"]
    assert ["fraud", "Direct", "3", "InService", "True", "fraud-prod"] in [row[:6] for row in rows]
    assert ["fraud", "Serial", "3", "InService", "True", "fraud-prod"] in [row[:6] for row in rows]
    assert all(re.fullmatch(r"\d+[sm]", row[-1]) for row in rows[1:])
    assert "ERROR" not in run.stderr, run.stderr
