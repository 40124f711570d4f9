"""Fixtures of the end-to-end tests: every test gets its own Kubernetes API, emulator and operator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_harness import NAMESPACE, REGION, Harness

from mce_operator import crdgen
from mce_operator.emulator import Emulator
from mce_operator.testkit.kube_server import KubeServer


@pytest.fixture
def e2e() -> Iterator[Harness]:
    """A Kubernetes API and an emulated SageMaker; operators on request."""
    with (
        Emulator(delay=0.2, region=REGION) as emulator,
        KubeServer(crds=[crdgen.build_crd()], namespaces=[NAMESPACE]) as kube,
    ):
        harness = Harness(kube, emulator)
        try:
            yield harness
        finally:
            harness.close()


@pytest.fixture
def running(e2e: Harness) -> Harness:
    e2e.start_operator()
    return e2e
