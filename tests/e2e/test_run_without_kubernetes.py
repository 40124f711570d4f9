"""`mce-operator run` keeps the `kubernetes` package out of its process (issue 9: 44 MB of RSS), while it
stays installed: the operator, started as users start it (the console script, a kubeconfig), logs in,
creates its peering object, reconciles an object to Ready and deletes it, and when it exits its
`sys.modules` holds no `kubernetes` module (read by a `sitecustomize` put on its PYTHONPATH: the process is
the real console script, untouched)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import NAMESPACE, REGION, is_ready, manifest, wait

from mce_operator import api, crdgen
from mce_operator.emulator import Emulator
from mce_operator.testkit.kube_server import KubeServer

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
# Run by Python at start-up when found on the path: at exit, it writes down the process's modules.
SITECUSTOMIZE = """
import atexit, json, os, sys

def _write_modules():
    with open(os.environ["MODULES_AT_EXIT"], "w") as out:
        json.dump({name: module is not None for name, module in sys.modules.items()}, out)

atexit.register(_write_modules)
"""


def recording_modules(env: dict[str, str], folder: Path) -> dict[str, str]:
    """``env`` for a Python process that writes its modules down at exit (read them with ``modules``)."""
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {**env, "PYTHONPATH": str(folder), "MODULES_AT_EXIT": str(folder / "modules.json")}


def modules(folder: Path) -> dict[str, bool]:
    """The modules of the process at exit (name: imported; False: made unimportable)."""
    found: dict[str, bool] = json.loads((folder / "modules.json").read_text())
    return found


def kubernetes_modules(modules: dict[str, bool]) -> list[str]:
    return sorted(name for name, present in modules.items() if present and name.split(".")[0] == "kubernetes")


def test_kopf_alone_imports_kubernetes(tmp_path: Path) -> None:
    # The control: without the entry point's guard, kopf imports the installed package.
    env = recording_modules(dict(os.environ), tmp_path)
    subprocess.run([sys.executable, "-c", "import kopf"], env=env, check=True, timeout=60)
    assert "kubernetes.client" in kubernetes_modules(modules(tmp_path))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[KubeServer, Emulator, Path]]:
    with (
        Emulator(delay=0.2, region=REGION) as emulator,
        KubeServer(crds=[crdgen.build_crd()], namespaces=[NAMESPACE], kopf_peering=True) as kube,
    ):
        yield kube, emulator, kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NAMESPACE)


def test_mce_operator_run_never_imports_kubernetes(
    world: tuple[KubeServer, Emulator, Path], tmp_path: Path
) -> None:
    kube, emulator, kubeconfig = world
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "AWS_ACCESS_KEY_ID": "e2e",
        "AWS_SECRET_ACCESS_KEY": "e2e",
        "AWS_ENDPOINT_URL_SAGEMAKER": emulator.url,
        "MCE_REGION": REGION,
        "MCE_BUSY_INTERVAL": "0.3",
        "MCE_CALLS_PER_SECOND": "0",
        "POD_ID": "lean-0",
    }
    env = recording_modules(env, tmp_path)
    log = tmp_path / "operator.log"
    argv = [str(BIN / "mce-operator"), "run", "--namespace", NAMESPACE, "--peering", "mce", "--plain-logs"]
    argv += ["--liveness", "", "--metrics-port", "0"]
    with log.open("w") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    def show() -> str:
        return f"exit code {process.poll()}; operator log:\n" + "\n".join(log.read_text().splitlines()[-40:])

    try:
        peered = wait(
            "the replica in its peering object",
            lambda: (kube.find("kopfpeerings", NAMESPACE, "mce") or {}).get("status", {}).get("lean-0"),
            30,
            show,
        )
        assert peered
        kube.create(manifest("lean"))
        wait("the object Ready", lambda: is_ready(kube.get(api.PLURAL, NAMESPACE, "lean")), 30, show)
        kube.delete(api.PLURAL, NAMESPACE, "lean")
        wait("the object gone", lambda: kube.find(api.PLURAL, NAMESPACE, "lean") is None, 30, show)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    assert process.returncode == 0, show()
    at_exit = modules(tmp_path)
    assert all(at_exit.get(m) for m in ("kopf", "urllib3", "mce_operator.kube", "mce_operator.credentials"))
    assert at_exit["kubernetes"] is False  # the entry point's guard
    assert kubernetes_modules(at_exit) == []


def test_mce_operator_run_with_an_unsupported_kubeconfig_says_which_field(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: old\n"
        "clusters: [{name: old, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: old, user: {auth-provider: {name: oidc}}}]\n"
        "contexts: [{name: old, context: {cluster: old, user: old}}]\n"
    )
    done = subprocess.run(
        [str(BIN / "mce-operator"), "run", "--plain-logs", "--liveness", "", "--metrics-port", "0"],
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "KUBERNETES_SERVICE_HOST": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "users['old'].user.auth-provider is not supported" in done.stdout + done.stderr
