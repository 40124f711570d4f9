"""The control plane helper leaves nothing behind: stopped, or when its owner is killed outright."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import require_control_plane, start_control_plane
from processes import wait_until

pytestmark = pytest.mark.cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not reaped yet is gone for our purpose.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_stop_ends_both_processes_and_removes_the_files() -> None:
    plane = start_control_plane()
    pids, workdir = plane.pids, plane.workdir
    assert set(pids) == {"etcd", "kube-apiserver"} and all(_alive(pid) for pid in pids.values())
    plane.stop()
    assert not any(_alive(pid) for pid in pids.values())
    assert not workdir.exists()


OWNER = """
import json, time
from mce_operator.testkit.controlplane import ControlPlane
plane = ControlPlane().start()
print(json.dumps({"pids": plane.pids, "workdir": str(plane.workdir)}), flush=True)
time.sleep(600)
"""


def test_a_killed_owner_takes_its_control_plane_along() -> None:
    """SIGKILL runs no atexit handler and no fixture teardown: the kernel ends the children
    (PR_SET_PDEATHSIG), so a crashed test run leaves no etcd or kube-apiserver holding ports."""
    require_control_plane()
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        started = json.loads(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(30)
    pids = started["pids"]
    assert set(pids) == {"etcd", "kube-apiserver"}
    wait_until("etcd and kube-apiserver to end", lambda: not any(_alive(p) for p in pids.values()), 30)
    shutil.rmtree(started["workdir"], ignore_errors=True)  # the files the killed owner could not remove
