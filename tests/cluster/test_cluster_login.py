"""How `mce-operator run` logs in to a real kube-apiserver without the `kubernetes` package
(mce_operator.credentials): a kubeconfig with a client certificate (TLS verified both ways), and exec
credential plugins whose token expires, or is revoked (its ServiceAccount deleted), while the operator
runs: kopf's requests and the operator's own writes get the plugin's next token and carry on."""

from __future__ import annotations

import base64
import copy
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, Kubectl
from processes import Emulator, Operator, wait_until

from kubeconfig_files import ExecPlugin, write_kubeconfig
from mce_operator import api
from mce_operator.credentials import Login
from mce_operator.demo import is_ready
from mce_operator.kube import Kube, KubeError
from mce_operator.testkit.client import KubeApiError
from mce_operator.testkit.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

NAMESPACE = "login"
BASE = yaml.safe_load((ROOT / "examples" / "direct.yaml").read_text())


@dataclass
class World:
    plane: ControlPlane
    kubectl: Kubectl
    emulator: Emulator
    workdir: Path

    def operator(self, kubeconfig: Path, name: str) -> Operator:
        # One namespace: the other tests' objects on this control plane are not this operator's business.
        log = self.workdir / f"operator-{name}.log"
        return Operator(kubeconfig, self.emulator, log, f"--namespace={NAMESPACE}")

    def lifecycle(self, name: str, operator: Operator) -> None:
        """An object created, Ready and deleted (its finalizer removed by the operator)."""
        manifest = copy.deepcopy(BASE)
        manifest["metadata"] = {"name": name, "namespace": NAMESPACE}
        manifest["spec"].update(endpointName=f"login-{name}", deletionPolicy="Delete")
        client = self.plane.client()
        client.create(manifest)
        wait_until(
            f"{name} Ready", lambda: is_ready(client.find(api.PLURAL, NAMESPACE, name)), 60, log=operator
        )
        client.delete(api.PLURAL, NAMESPACE, name)
        wait_until(f"{name} gone", lambda: client.find(api.PLURAL, NAMESPACE, name) is None, 60, log=operator)

    def cluster(self, **more: Any) -> dict[str, Any]:
        return {"server": self.plane.url, "certificate-authority": str(self.plane.ca_path), **more}


@pytest.fixture(scope="module")
def world(
    plane: ControlPlane, kubectl: Kubectl, crd_applied: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("login")
    kubectl("create", "namespace", NAMESPACE)
    emulator = Emulator(workdir / "emulator.log")
    try:
        yield World(plane, kubectl, emulator, workdir)
    finally:
        emulator.stop()


def _pem(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _certificate(folder: Path, subject: str, *, ca: Path | None = None) -> tuple[Path, Path]:
    """A key and a certificate for ``subject``, signed by ``ca`` (a folder with ca.crt and ca.key), else
    self-signed (a CA of its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "tls.key", folder / "tls.crt"
    command = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ]
    command += ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", subject]
    if ca is not None:
        command += ["-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key")]
        command += ["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=clientAuth"]
    subprocess.run(command, check=True, capture_output=True)
    return key, cert


def _refused(plane: ControlPlane, token: str) -> bool:
    try:
        plane.client(token).request("GET", "/api")
    except KubeApiError as error:
        return error.status == 401
    return False


def test_a_client_certificate_kubeconfig_logs_in_kopf_and_the_adapter(world: World) -> None:
    key, cert = _certificate(
        world.workdir / "user", "/O=system:masters/CN=mce-certificate-user", ca=world.plane.workdir
    )
    kubeconfig = write_kubeconfig(
        world.workdir / "certificate.kubeconfig",
        cluster={"server": world.plane.url, "certificate-authority-data": _pem(world.plane.ca_path)},
        user={"client-certificate-data": _pem(cert), "client-key-data": _pem(key)},
    )
    who = world.kubectl("auth", "whoami", "--kubeconfig", str(kubeconfig), "-o", "json")
    assert yaml.safe_load(who.stdout)["status"]["userInfo"]["username"] == "mce-certificate-user"
    assert Kube(Login({"KUBECONFIG": str(kubeconfig)})).get(NAMESPACE, "nothing") is None
    operator = world.operator(kubeconfig, "certificate")
    try:
        world.lifecycle("certificate", operator)
    finally:
        operator.stop()


def test_the_server_is_verified_against_the_kubeconfigs_ca(world: World) -> None:
    _, other_ca = _certificate(world.workdir / "other-ca", "/CN=another-ca")
    user = {"token": world.plane.admin_token}
    wrong = write_kubeconfig(
        world.workdir / "wrong-ca.kubeconfig",
        cluster={"server": world.plane.url, "certificate-authority": str(other_ca)},
        user=user,
    )
    with pytest.raises(KubeError, match="CERTIFICATE_VERIFY_FAILED") as refused:
        Kube(Login({"KUBECONFIG": str(wrong)})).get(NAMESPACE, "nothing")
    assert refused.value.status == 0
    insecure = write_kubeconfig(
        world.workdir / "insecure.kubeconfig",
        cluster={"server": world.plane.url, "insecure-skip-tls-verify": True},
        user=user,
    )
    assert Kube(Login({"KUBECONFIG": str(insecure)})).get(NAMESPACE, "nothing") is None


def test_an_exec_plugins_expiring_token_is_fetched_again_once_it_expired(world: World) -> None:
    plugin = ExecPlugin(world.workdir / "expiring")
    # The adapter fetches a token again 10 s before it expires, kopf when it has: both, 12 s after.
    lifetime = 12
    plugin.lifetime(lifetime)
    plugin.answer({"token": world.plane.admin_token, "expirationTimestamp": "EXPIRES"})
    kubeconfig = write_kubeconfig(
        world.workdir / "expiring.kubeconfig", cluster=world.cluster(), user={"exec": plugin.exec()}
    )
    operator = world.operator(kubeconfig, "expiring")
    try:
        world.lifecycle("before", operator)
        # Idle, the operator sends nothing and fetches nothing; its next requests find the token expired.
        time.sleep(lifetime + 1)
        world.lifecycle("after", operator)
        wait_until("kopf logged in again", lambda: "Re-authentication has finished" in operator.text(), 30)
    finally:
        operator.stop()
    assert len(plugin.runs()) >= 2
    assert "Unauthorized" not in operator.text()


def test_an_exec_plugins_revoked_token_is_replaced_after_the_401(world: World) -> None:
    kubectl, plane = world.kubectl, world.plane
    for account in ("first", "second"):
        kubectl("create", "serviceaccount", account, "-n", NAMESPACE)
        binding = f"{NAMESPACE}-{account}"
        kubectl(
            "create",
            "clusterrolebinding",
            binding,
            "--clusterrole=cluster-admin",
            f"--serviceaccount={NAMESPACE}:{account}",
        )
    plugin = ExecPlugin(world.workdir / "revoked")
    first = plane.service_account_token(NAMESPACE, "first")
    plugin.answer({"token": first, "expirationTimestamp": "EXPIRES"})
    kubeconfig = write_kubeconfig(
        world.workdir / "revoked.kubeconfig", cluster=world.cluster(), user={"exec": plugin.exec()}
    )
    operator = world.operator(kubeconfig, "revoked")
    try:
        world.lifecycle("before", operator)
        assert len(plugin.runs()) == 1  # kopf and the adapter share the plugin's token
        # The identity provider issues the next token; the first one's ServiceAccount goes: 401 from now.
        plugin.answer(
            {"token": plane.service_account_token(NAMESPACE, "second"), "expirationTimestamp": "EXPIRES"}
        )
        kubectl("delete", "serviceaccount", "first", "-n", NAMESPACE)
        # kube-apiserver keeps a token's authentication for 10 s.
        wait_until("the first token refused", lambda: _refused(plane, first), 30)
        world.lifecycle("after", operator)
        wait_until("kopf logged in again", lambda: "Re-authentication has finished" in operator.text(), 30)
    finally:
        operator.stop()
    # One run for whoever met the 401 first; the other got the new token from it.
    assert len(plugin.runs()) == 2
