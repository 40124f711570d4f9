"""Test kit: the in-memory Kubernetes API and helpers to run the operator against it.

It ships in the package because ``mce-operator demo`` uses it too. Nothing here imports kopf.
"""

from mce_operator.testkit.kube import ApiError, KubeEmulator, ResourceSpec, kopf_peering_crds, specs_from_crd
from mce_operator.testkit.kube_server import KubeApiError, KubeServer
from mce_operator.testkit.operator_thread import OperatorThread

__all__ = [
    "ApiError",
    "KubeApiError",
    "KubeEmulator",
    "KubeServer",
    "OperatorThread",
    "ResourceSpec",
    "kopf_peering_crds",
    "specs_from_crd",
]
