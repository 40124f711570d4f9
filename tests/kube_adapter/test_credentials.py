"""The operator's login without the `kubernetes` package (mce_operator.credentials): the in-cluster service
account, the kubeconfig and exec credential plugins, from real files in temporary folders and a real
plugin (a script that prints an ExecCredential and writes down each run)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeconfig_files import ExecPlugin, later, write_kubeconfig
from mce_operator.credentials import Connection, Fixed, Login, LoginError, Session

CA = "-----BEGIN CERTIFICATE-----\nMIIB-the-ca\n-----END CERTIFICATE-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB-the-client\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN EC PRIVATE KEY-----\nMHc-the-key\n-----END EC PRIVATE KEY-----\n"


def login(kubeconfig: Path | str, **environ: str) -> Login:
    return Login({"KUBECONFIG": str(kubeconfig), "PATH": os.environ["PATH"], **environ})


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- in a pod --------------------------------------------------------------------------------------------


@pytest.fixture
def service_account(tmp_path: Path) -> Path:
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text("sa-token-1\n")
    (folder / "ca.crt").write_text(CA)
    (folder / "namespace").write_text("mce-system")
    return folder


def test_in_a_pod_the_service_account_is_used(service_account: Path, tmp_path: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    # A kubeconfig is there too: in a pod the service account wins, as with the kubernetes client.
    environ["KUBECONFIG"] = str(write_kubeconfig(tmp_path / "config"))
    connection = Login(environ, service_account_dir=service_account)()
    assert connection == Connection(
        server="https://10.0.0.1:443",
        ca_path=str(service_account / "ca.crt"),
        token="sa-token-1",
        default_namespace="mce-system",
    )


def test_an_ipv6_service_address_is_bracketed(service_account: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert Login(environ, service_account_dir=service_account)().server == "https://[fd00::1]:443"


def test_a_rotated_service_account_token_is_read_again_when_refused(service_account: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    session = Session(Login(environ, service_account_dir=service_account))
    first = session.connection()
    assert session.renew(first) is None  # the kubelet has not rotated it: there is no other
    (service_account / "token").write_text("sa-token-2\n")  # as the kubelet rotates it
    assert session.connection().token == "sa-token-1"  # still the one in use, until refused
    renewed = session.renew(first)
    assert renewed is not None and renewed.token == "sa-token-2"
    # Another thread refused with the old one gets the new one, without reading again.
    assert session.renew(first) == renewed


def test_outside_a_pod_the_kubeconfig_is_used(service_account: Path, tmp_path: Path) -> None:
    # The token is mounted (as on a developer's machine it is not), but the Service's address is not set.
    connection = Login(
        {"KUBECONFIG": str(write_kubeconfig(tmp_path / "config"))}, service_account_dir=service_account
    )()
    assert connection.server == "https://k8s.example:6443" and connection.token == "static"


def test_in_a_pod_without_the_ca_says_which_file(service_account: Path) -> None:
    (service_account / "ca.crt").unlink()
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(LoginError, match=r"CA file .*ca\.crt does not exist"):
        Login(environ, service_account_dir=service_account)()


# --- the kubeconfig --------------------------------------------------------------------------------------


def test_the_default_kubeconfig_is_in_home(tmp_path: Path) -> None:
    write_kubeconfig(tmp_path / ".kube" / "config", context={"namespace": "ml"})
    connection = Login({"HOME": str(tmp_path)}, service_account_dir=tmp_path / "none")()
    assert connection == Connection(server="https://k8s.example:6443", token="static", default_namespace="ml")


def test_without_any_kubeconfig_it_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(LoginError, match=r"KUBECONFIG is not set and .*\.kube/config does not exist"):
        Login({"HOME": str(tmp_path)}, service_account_dir=tmp_path / "none")()
    with pytest.raises(LoginError, match=r"KUBECONFIG names '.*missing', which does not exist"):
        login(tmp_path / "missing")()


def test_several_kubeconfigs_merge_the_first_of_each_name_wins(tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.write_text(
        yaml.safe_dump(
            {"users": [{"name": "lean", "user": {"token": "first"}}], "clusters": [], "contexts": []}
        )
    )
    # The second sets the context and a user of the same name, which the first's shadows.
    second = write_kubeconfig(tmp_path / "second", user={"token": "second"})
    connection = login(f"{tmp_path / 'absent'}{os.pathsep}{first}{os.pathsep}{second}")()
    assert connection.token == "first"
    assert connection.server == "https://k8s.example:6443"


def test_files_are_relative_to_the_kubeconfig_that_names_them(tmp_path: Path) -> None:
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "ca.crt").write_text(CA)
    (folder / "client.crt").write_text(CERT)
    (folder / "client.key").write_text(KEY)
    (folder / "token").write_text("from-the-file\n")
    config = write_kubeconfig(
        folder / "config",
        cluster={"certificate-authority": "ca.crt"},
        user={"client-certificate": "client.crt", "client-key": "client.key", "tokenFile": "token"},
    )
    connection = login(config)()
    assert connection.ca_path == str(folder / "ca.crt")
    assert connection.certificate_path == str(folder / "client.crt")
    assert connection.private_key_path == str(folder / "client.key")
    assert connection.token == "from-the-file"
    # The token file is read again at each login: it may be rotated.
    (folder / "token").write_text("rotated\n")
    assert login(config)().token == "rotated"


def test_the_token_file_wins_over_the_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-the-file")
    config = write_kubeconfig(
        tmp_path / "config", user={"token": "inline", "tokenFile": str(tmp_path / "token")}
    )
    assert login(config)().token == "from-the-file"


def test_data_is_written_to_private_files(tmp_path: Path) -> None:
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"certificate-authority-data": b64(CA)},
        user={"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)},
    )
    source = login(config)
    first = source()
    assert first.ca_path and first.certificate_path and first.private_key_path
    for path, content in ((first.ca_path, CA), (first.certificate_path, CERT), (first.private_key_path, KEY)):
        assert Path(path).read_text() == content
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(path).parent.stat().st_mode) == 0o700
    # Logging in again (a refresh) writes no new files.
    assert source() == first
    assert len(list(Path(first.ca_path).parent.iterdir())) == 3


def test_basic_auth_and_the_insecure_flag(tmp_path: Path) -> None:
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={"insecure-skip-tls-verify": True},
        user={"username": "admin", "password": "secret"},
    )
    connection = login(config)()
    assert (connection.insecure, connection.username, connection.password) == (True, "admin", "secret")
    assert "secret" not in repr(connection)


@pytest.mark.parametrize(
    ("cluster", "user", "message"),
    [
        (
            {},
            {"auth-provider": {"name": "oidc"}},
            r"users\['lean'\]\.user\.auth-provider is not supported .*use an exec credential plugin",
        ),
        ({}, {"as": "someone"}, r"users\['lean'\]\.user\.as is not supported .*\(impersonation\)"),
        ({"proxy-url": "http://proxy:3128"}, {}, r"clusters\['lean'\]\.cluster\.proxy-url is not supported"),
        (
            {"tls-server-name": "kubernetes"},
            {},
            r"clusters\['lean'\]\.cluster\.tls-server-name is not supported",
        ),
        ({"server": ""}, {}, r"clusters\['lean'\]\.cluster\.server is required"),
        ({"server": "k8s.example:6443"}, {}, r"cluster\.server must be an http\(s\):// URL"),
        (
            {"insecure-skip-tls-verify": True, "certificate-authority-data": b64(CA)},
            {},
            r"insecure-skip-tls-verify and certificate-authority\(-data\) are mutually exclusive",
        ),
        ({"insecure-skip-tls-verify": "yes"}, {}, r"insecure-skip-tls-verify must be true or false"),
        ({"certificate-authority-data": "not base64!"}, {}, r"certificate-authority-data must be base64"),
        (
            {"certificate-authority": "/nowhere/ca.crt"},
            {},
            r"certificate-authority: /nowhere/ca\.crt does not exist",
        ),
        (
            {},
            {"client-certificate-data": b64(CERT)},
            r"client-certificate\(-data\) and client-key\(-data\) go together",
        ),
        (
            {},
            {"token": "t", "username": "u", "password": "p"},
            r"token/tokenFile and username/password are set",
        ),
        ({}, {"username": "u"}, r"username and password go together"),
    ],
)
def test_a_bad_or_unsupported_field_is_named(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], message: str
) -> None:
    with pytest.raises(LoginError, match=message):
        login(write_kubeconfig(tmp_path / "config", cluster=cluster, user=user))()


def test_a_missing_context_or_cluster_is_named(tmp_path: Path) -> None:
    with pytest.raises(LoginError, match=r"current-context is not set"):
        login(write_kubeconfig(tmp_path / "a", current=None))()
    with pytest.raises(LoginError, match=r"no contexts entry named 'elsewhere' \(there are: lean\)"):
        login(write_kubeconfig(tmp_path / "b", current="elsewhere"))()
    with pytest.raises(LoginError, match=r"no clusters entry named 'gone'"):
        login(write_kubeconfig(tmp_path / "c", context={"cluster": "gone"}))()
    (tmp_path / "d").write_text("- a list\n")
    with pytest.raises(LoginError, match=r"kubeconfig .*/d: must be a YAML mapping"):
        login(tmp_path / "d")()


# --- exec credential plugins -----------------------------------------------------------------------------


@pytest.fixture
def plugin(tmp_path: Path) -> ExecPlugin:
    return ExecPlugin(tmp_path / "plugin")


def test_an_exec_plugin_is_run_with_its_args_and_env_and_its_token_kept(
    plugin: ExecPlugin, tmp_path: Path
) -> None:
    plugin.answer({"token": "exec-RUN", "expirationTimestamp": later(3600)})
    source = login(write_kubeconfig(tmp_path / "config", user={"exec": plugin.exec()}))
    connection = source()
    assert connection.token == "exec-1"
    assert connection.expiration is not None and not connection.expired()
    (run,) = plugin.runs()
    assert run["argv"] == ["token", "--cluster", "lean"] and run["greeting"] == "hi"
    assert run["info"] == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    # Kept until it expires or is refused: logging in again runs nothing.
    assert source() == connection and len(plugin.runs()) == 1
    # Refused (401): run again.
    assert source(rejected=connection).token == "exec-2"
    # Another consumer refused with the first token: the second is still good.
    assert source(rejected=connection).token == "exec-2" and len(plugin.runs()) == 2


def test_an_expired_exec_credential_is_fetched_again(plugin: ExecPlugin, tmp_path: Path) -> None:
    # Within the margin before its expiration: as good as expired.
    plugin.answer({"token": "exec-RUN", "expirationTimestamp": later(5)})
    session = Session(login(write_kubeconfig(tmp_path / "config", user={"exec": plugin.exec()})))
    assert session.connection().token == "exec-1"
    assert session.connection().token == "exec-2"
    plugin.answer({"token": "exec-RUN", "expirationTimestamp": later(3600)})
    assert session.connection().token == "exec-3"
    assert session.connection().token == "exec-3"


def test_an_exec_plugin_may_answer_with_a_client_certificate(plugin: ExecPlugin, tmp_path: Path) -> None:
    plugin.answer(
        {"clientCertificateData": CERT, "clientKeyData": KEY}, "client.authentication.k8s.io/v1beta1"
    )
    exec_ = plugin.exec(apiVersion="client.authentication.k8s.io/v1beta1", provideClusterInfo=True)
    del exec_["interactiveMode"]  # optional in v1beta1
    config = write_kubeconfig(
        tmp_path / "config",
        cluster={
            "certificate-authority-data": b64(CA),
            "extensions": [
                {"name": "client.authentication.k8s.io/exec", "extension": {"region": "eu-west-1"}}
            ],
        },
        user={"exec": exec_},
    )
    connection = login(config)()
    assert connection.token is None and connection.expiration is None
    assert (
        connection.certificate_path and Path(connection.certificate_path).read_text().strip() == CERT.strip()
    )
    assert (
        connection.private_key_path and Path(connection.private_key_path).read_text().strip() == KEY.strip()
    )
    (run,) = plugin.runs()
    assert run["info"]["spec"]["cluster"] == {
        "server": "https://k8s.example:6443",
        "certificate-authority-data": b64(CA),
        "config": {"region": "eu-west-1"},
    }


def test_a_relative_command_is_relative_to_the_kubeconfig(plugin: ExecPlugin) -> None:
    plugin.answer({"token": "relative"})
    config = write_kubeconfig(plugin.folder / "config", user={"exec": plugin.exec(command="./get-token")})
    assert login(config)().token == "relative"


@pytest.mark.parametrize(
    ("change", "answer", "message"),
    [
        (
            {"command": "no-such-plugin", "installHint": "brew install it"},
            None,
            r"exec\.command: 'no-such-plugin' is not found.*brew install it",
        ),
        ({}, "exit 3", r"exited with 3: the identity provider said no"),
        ({}, "not json", r"the ExecCredential .* printed is not JSON"),
        (
            {},
            json.dumps(
                {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "kind": "ExecCredential",
                    "status": {"token": "t"},
                }
            ),
            r"apiVersion must be client\.authentication\.k8s\.io/v1 \(the kubeconfig's\)",
        ),
        (
            {},
            json.dumps(
                {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {}}
            ),
            r"status\.token or status\.clientCertificateData/clientKeyData is required",
        ),
        (
            {},
            json.dumps(
                {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "kind": "ExecCredential",
                    "status": {"token": "t", "expirationTimestamp": "soon"},
                }
            ),
            r"status\.expirationTimestamp must be an RFC 3339 time",
        ),
        ({"apiVersion": "client.authentication.k8s.io/v1alpha1"}, None, r"exec\.apiVersion must be one of"),
        (
            {"interactiveMode": None},
            None,
            r"exec\.interactiveMode is required with client\.authentication\.k8s\.io/v1",
        ),
        (
            {"interactiveMode": "Always"},
            None,
            r"exec\.interactiveMode is Always: the plugin needs a terminal",
        ),
        ({"env": [{"name": "X"}]}, None, r"exec\.env\[0\] must have a name and a value"),
        ({"args": "token"}, None, r"exec\.args must be a list of strings"),
    ],
)
def test_a_bad_exec_plugin_or_its_answer_is_named(
    plugin: ExecPlugin, tmp_path: Path, change: dict[str, Any], answer: str | None, message: str
) -> None:
    plugin.answer(answer if answer is not None else {"token": "t"})
    exec_ = {key: value for key, value in {**plugin.exec(), **change}.items() if value is not None}
    with pytest.raises(LoginError, match=message):
        login(write_kubeconfig(tmp_path / "config", user={"exec": exec_}))()


def test_exec_with_a_token_is_ambiguous(plugin: ExecPlugin, tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "config", user={"token": "t", "exec": plugin.exec()})
    with pytest.raises(LoginError, match=r"token/tokenFile and exec are set: one authentication method only"):
        login(config)()


# --- fixed connections (tests, the demo) -----------------------------------------------------------------


def test_a_fixed_connection_has_no_other() -> None:
    connection = Connection.of({"server": "http://127.0.0.1:1", "insecure": True, "default_namespace": "ml"})
    session = Session(Fixed(connection))
    assert session.connection() == connection
    assert session.renew(connection) is None
    assert connection.fields() == {
        "server": "http://127.0.0.1:1",
        "insecure": True,
        "default_namespace": "ml",
    }
    with pytest.raises(LoginError, match=r"connection: ca_data not supported"):
        Connection.of({"server": "https://x", "ca_data": CA})
