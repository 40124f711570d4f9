"""Fixtures of the cluster tier: a real kube-apiserver + etcd and the machine's real kubectl.

The binaries come from `make controlplane` (Go). Without them the tier is skipped, loudly, except in CI
(CI=true), where it fails: CI must prove what only a real API server can.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mce_operator import api
from mce_operator.testkit.client import KubeClient
from mce_operator.testkit.controlplane import ControlPlane, binaries_dir, missing_binaries

ROOT = Path(__file__).resolve().parents[2]
# The corpus of tests/api (test_validation's cases) is sent to the real apiserver too: one corpus.
sys.path.insert(0, str(ROOT / "tests" / "api"))
CRDS = ROOT / "crds"
CRD_NAME = f"{api.PLURAL}.{api.GROUP}"
KUBECTL = shutil.which("kubectl")


class Kubectl:
    """The real kubectl, as one identity (a kubeconfig)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        # kubectl caches discovery per server for hours; keep this run's cache out of ~/.kube.
        self.cache = kubeconfig.parent / f"{kubeconfig.name}.kubectl-cache"

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL, "kubectl is not on the PATH"
        result = subprocess.run(
            [KUBECTL, *args],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.cache)},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return yaml.safe_load(self(*args, "-o", "json").stdout)


def start_control_plane(**options: Any) -> ControlPlane:
    """A started control plane; the tier is skipped (failed in CI) when the binaries are not built."""
    require_control_plane()
    return ControlPlane(**options).start()


def require_control_plane() -> None:
    if missing := missing_binaries():
        message = (
            f"tests/cluster needs {' and '.join(missing)} in {binaries_dir()}: "
            "run `make controlplane` (Go 1.24+), or `make cluster`"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if KUBECTL is None:
        pytest.fail("tests/cluster uses the real kubectl, which is not on the PATH")


@pytest.fixture(scope="session")
def plane() -> Iterator[ControlPlane]:
    """One control plane for the tests that only read and write objects (each in its own namespace)."""
    plane = start_control_plane()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubectl(plane: ControlPlane) -> Kubectl:
    return Kubectl(plane.kubeconfig)


def apply_crd(kubectl: Kubectl, plane: ControlPlane) -> str:
    """`kubectl apply --server-side -f crds/`, then wait until the CRD is Established and its OpenAPI
    published; returns kubectl's output."""
    output = kubectl("apply", "--server-side", "-f", str(CRDS)).stdout
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    wait_for_openapi(plane)
    # kubectl's caches were filled by the commands above, before the CRD was served: `kubectl explain`
    # then failed in about 1 run of 3 with "couldn't find resource", its -v=9 log showing the /openapi/v3
    # index answered from its HTTP cache (X-From-Cache: 1) as it was before the CRD (kubectl 1.32; a
    # second explain, or an empty cache, works). Start the next commands with an empty cache.
    shutil.rmtree(kubectl.cache, ignore_errors=True)
    return output


def wait_for_openapi(plane: ControlPlane, timeout: float = 30) -> None:
    # The apiserver publishes a new CRD's discovery and OpenAPI a moment after it is Established; until
    # then `kubectl explain` fails with "couldn't find resource". A user would retry: so does this.
    path = f"apis/{api.GROUP}/{api.VERSION}"
    client = plane.client()
    deadline = time.monotonic() + timeout
    while not _served(client, path):
        assert time.monotonic() < deadline, f"discovery and /openapi/v3 did not list {path} in {timeout} s"
        time.sleep(0.2)


def _served(client: KubeClient, path: str) -> bool:
    try:
        client.resource(f"{api.PLURAL}.{api.GROUP}")
    except KeyError:
        return False
    if path not in client.request("GET", "/openapi/v3")["paths"]:
        return False
    # The group version's document, with the kind's schema in it, is what `kubectl explain` reads.
    schemas = client.request("GET", f"/openapi/v3/{path}")["components"]["schemas"]
    return any(name.endswith(f".{api.VERSION}.{api.KIND}") for name in schemas)


@pytest.fixture(scope="session")
def crd_applied(kubectl: Kubectl, plane: ControlPlane) -> str:
    return apply_crd(kubectl, plane)


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> str:
    """A new namespace named after the test (nothing deletes namespaces here: no controller-manager runs)."""
    name = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:50].strip("-")
    kubectl("create", "namespace", name)
    return name
