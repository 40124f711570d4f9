"""The Kubernetes adapter: the few writes the operator makes itself (status, its finalizer), with the
``kubernetes`` client.

kopf writes through its own retry machinery, which only runs again when another event arrives; the
operator's scheduler must make progress without one, so what it depends on it writes here, and a
failed write is simply made again at the next look. Synchronous: it runs in the same worker thread
as the SageMaker calls of a look.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from mce_operator import api

MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """A Kubernetes request failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status

    @property
    def gone(self) -> bool:
        return self.status == 404


def _error(error: Exception) -> KubeError:
    if isinstance(error, ApiException):
        return KubeError(int(error.status or 0), str(error.reason or error.body or error))
    return KubeError(0, f"{type(error).__name__}: {error}")


def configuration_from_connection(info: Mapping[str, Any]) -> kubernetes.client.Configuration:
    """A client configuration from a ``kopf.ConnectionInfo``'s fields (tests and the demo pass these)."""
    config = kubernetes.client.Configuration()
    config.host = str(info["server"]).rstrip("/")
    config.verify_ssl = not info.get("insecure", False)
    if info.get("ca_path"):
        config.ssl_ca_cert = info["ca_path"]
    if info.get("certificate_path"):
        config.cert_file = info["certificate_path"]
    if info.get("private_key_path"):
        config.key_file = info["private_key_path"]
    if info.get("token"):
        config.api_key = {"authorization": f"Bearer {info['token']}"}
    elif info.get("username"):
        config.username, config.password = info["username"], info.get("password") or ""
    return config


def configuration_from_environment() -> kubernetes.client.Configuration:
    """The in-cluster service account (with its token refreshed as it rotates), else the kubeconfig."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=config)
    return config


class Kube:
    """Reads and writes MultiContainerEndpoints; every error surfaces as :class:`KubeError`."""

    def __init__(self, configuration: kubernetes.client.Configuration) -> None:
        # Many objects' looks run at once in kopf's worker threads: as many pooled connections.
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 32)
        self._objects = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as stored now, or None when it is gone."""
        try:
            body: dict[str, Any] = self._objects.get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name
            )
        except Exception as error:
            failure = _error(error)
            if failure.gone:
                return None
            raise failure from error
        return body

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (``None`` values remove fields)."""
        try:
            body: dict[str, Any] = self._objects.patch_namespaced_custom_object_status(
                api.GROUP,
                api.VERSION,
                namespace,
                api.PLURAL,
                name,
                {"status": dict(status)},
                _content_type=MERGE_PATCH,
            )
        except Exception as error:
            raise _error(error) from error
        return body

    def set_finalizer(
        self, body: Mapping[str, Any], finalizer: str, *, present: bool, attempts: int = 3
    ) -> dict[str, Any] | None:
        """Add or remove one finalizer; the object as it is afterwards (None: gone).

        Guarded by resourceVersion, so no one else's finalizer is overwritten: after a conflict (kopf
        adding the same finalizer, a user's edit) the object is read again and the change re-decided."""
        current: Mapping[str, Any] | None = body
        for _ in range(attempts):
            if current is None:
                return None
            meta = current.get("metadata") or {}
            finalizers = [f for f in meta.get("finalizers") or [] if f != finalizer]
            if present:
                finalizers.append(finalizer)
            if sorted(finalizers) == sorted(meta.get("finalizers") or []):
                return copy.deepcopy(dict(current))
            namespace, name = str(meta.get("namespace")), str(meta.get("name"))
            patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}}
            try:
                result: dict[str, Any] = self._objects.patch_namespaced_custom_object(
                    api.GROUP, api.VERSION, namespace, api.PLURAL, name, patch, _content_type=MERGE_PATCH
                )
            except Exception as error:
                failure = _error(error)
                if failure.gone:
                    return None
                if failure.status != 409:
                    raise failure from error
                current = self.get(namespace, name)
                continue
            return result
        raise KubeError(409, f"the object kept changing while its finalizer {finalizer} was set")
