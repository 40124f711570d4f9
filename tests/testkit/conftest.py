"""Fixtures of the test kit's own tests: a small CRD of our own and a running in-memory API."""

from collections.abc import Iterator

import pytest
from widgets import widget_crd

from mce_operator.testkit import KubeServer


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer(crds=[widget_crd()]) as server:
        yield server
