"""Where the operator's Kubernetes credentials come from: the in-cluster service account, else the
kubeconfig, read without the ``kubernetes`` package.

Importing ``kubernetes`` costs about 44 MB of the operator's RSS (kopf imports its client whenever it
can), so ``mce-operator run`` keeps it out of its process and logs in here instead. One source
(:class:`Login`) serves both kopf (``@kopf.on.login`` in handlers) and the operator's own adapter
(:class:`~mce_operator.kube.Kube`), each through a :class:`Session` that fetches the credentials again
when they expire or the API server refuses them (401).

Supported, as kubectl reads them:

- in a pod: ``KUBERNETES_SERVICE_HOST``/``_PORT`` and the service account's token (re-read on every
  refresh: the kubelet rewrites it as it rotates), CA and namespace files;
- the kubeconfig: ``KUBECONFIG`` (a list, merged: the first of each name wins) or ``~/.kube/config``;
  the current context's cluster (``server``, ``certificate-authority(-data)``,
  ``insecure-skip-tls-verify``) and user (``client-certificate(-data)``/``client-key(-data)``,
  ``token``, ``tokenFile``, ``username``/``password``, and ``exec`` credential plugins such as
  ``aws eks get-token``, run again when their credential expires or is refused). Relative paths are
  relative to the kubeconfig that names them; ``-data`` is written to private temporary files, since
  Python's ``ssl`` loads certificates from files only.

Anything else that changes how to connect or who the operator is (``auth-provider``, impersonation,
``proxy-url``, ``tls-server-name``) is refused with an error naming the field, rather than ignored.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
# `aws eks get-token` takes about a second; a plugin that opens a browser would wait for ever.
EXEC_TIMEOUT = 60.0
# A credential this close to its expiration is fetched again before it is used: a request signed with it
# could arrive after it expired.
EXPIRY_MARGIN = datetime.timedelta(seconds=10)

# Fields that change how to connect or who the operator is, which this login does not implement: refused,
# since ignoring one would connect somewhere else or as someone else than kubectl does.
UNSUPPORTED_CLUSTER_FIELDS = {
    "proxy-url": "connecting through a proxy",
    "tls-server-name": "verifying the server under another name",
}
UNSUPPORTED_USER_FIELDS = {
    "auth-provider": "auth-provider plugins (removed from kubectl in 1.26): use an exec credential plugin "
    "(e.g. kubelogin, gke-gcloud-auth-plugin)",
    "as": "impersonation",
    "as-uid": "impersonation",
    "as-groups": "impersonation",
    "as-user-extra": "impersonation",
}


class LoginError(Exception):
    """The operator cannot log in to Kubernetes; the message names the field or file to fix."""


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate: the fields of a ``kopf.ConnectionInfo`` that
    both kopf and the adapter use (files, not data: Python's ``ssl`` loads certificates from files)."""

    server: str
    ca_path: str | None = None
    insecure: bool = False
    certificate_path: str | None = None
    private_key_path: str | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None
    default_namespace: str | None = None
    # When the credential expires (an exec plugin's); timezone-aware.
    expiration: datetime.datetime | None = None

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> Connection:
        """From a ``kopf.ConnectionInfo``'s keyword arguments (tests and the demo pass these)."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(info) - known):
            raise LoginError(
                f"connection: {', '.join(unknown)} not supported (the fields are {', '.join(sorted(known))})"
            )
        if not info.get("server"):
            raise LoginError("connection: server is required")
        return cls(**{key: value for key, value in info.items() if value is not None})

    def fields(self) -> dict[str, Any]:
        """The keyword arguments of ``kopf.ConnectionInfo`` (unset ones left out)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {key: value for key, value in values.items() if value not in (None, False)}

    def expired(self, now: datetime.datetime | None = None) -> bool:
        if self.expiration is None:
            return False
        return (now or datetime.datetime.now(datetime.UTC)) >= self.expiration - EXPIRY_MARGIN

    def __repr__(self) -> str:
        # Logged in errors: never the token or the password.
        secret = {"token", "password"}
        shown = {k: ("***" if k in secret else v) for k, v in self.fields().items()}
        return f"Connection({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


class Credentials(Protocol):
    """A source of connections: called again with the connection the API server refused (401) or that
    expired, it fetches the credentials again (the same connection back: there are no others)."""

    def __call__(self, rejected: Connection | None = None) -> Connection: ...


class Fixed:
    """Always the same connection (tests and the demo: their API servers' credentials never change)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def __call__(self, rejected: Connection | None = None) -> Connection:
        return self.connection


class Session:
    """One consumer's connection (the adapter's, kopf's): fetched once, and again when it expired or the
    API server refused it. Thread-safe: of several threads refused at once, one fetches."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._lock = threading.Lock()
        self._current: Connection | None = None

    def connection(self) -> Connection:
        """The connection to use now (fetched first if there is none yet or it expired)."""
        current = self._current
        if current is not None and not current.expired():
            return current
        with self._lock:
            if self._current is None:
                self._current = self._credentials(None)
            elif self._current.expired():
                self._current = self._credentials(self._current)
            return self._current

    def renew(self, refused: Connection) -> Connection | None:
        """A connection other than ``refused`` (None: the source has no other). A thread that was refused
        with a connection another thread already replaced gets the replacement."""
        with self._lock:
            if self._current is not None and self._current != refused:
                return self._current
            fresh = self._credentials(refused)
            self._current = fresh
            return None if fresh == refused else fresh

    @property
    def current(self) -> Connection | None:
        """The connection last handed out, if any."""
        return self._current


# --- the environment ---------------------------------------------------------------------------------------


class Login:
    """The operator's credentials from its environment: the in-cluster service account, else the
    kubeconfig. Read again on every call (cheap: a few small files); only an exec plugin's credential is
    kept, until it expires or is refused."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._service_account_dir = service_account_dir
        self._lock = threading.Lock()
        self._exec_credentials: dict[str, _ExecCredential] = {}
        self._files = _DataFiles()

    def __call__(self, rejected: Connection | None = None) -> Connection:
        with self._lock:
            in_cluster = self._in_cluster()
            if in_cluster is not None:
                return in_cluster
            return self._from_kubeconfig(rejected)

    # --- in a pod ---

    def _in_cluster(self) -> Connection | None:
        # As the kubernetes client and client-go decide: in a cluster when the Service's address is in the
        # environment and the service account's token is mounted.
        host = self._environ.get("KUBERNETES_SERVICE_HOST")
        port = self._environ.get("KUBERNETES_SERVICE_PORT")
        token_path = self._service_account_dir / "token"
        if not host or not port or not token_path.exists():
            return None
        ca_path = self._service_account_dir / "ca.crt"
        if not ca_path.exists():
            raise LoginError(f"in-cluster login: the service account's CA file {ca_path} does not exist")
        token = _read(token_path, "the service account's token").strip()
        if not token:
            raise LoginError(f"in-cluster login: the service account's token file {token_path} is empty")
        namespace_path = self._service_account_dir / "namespace"
        namespace = namespace_path.read_text().strip() if namespace_path.exists() else None
        return Connection(
            server=f"https://{_host(host)}:{port}",
            ca_path=str(ca_path),
            token=token,
            default_namespace=namespace or None,
        )

    # --- the kubeconfig ---

    def _kubeconfig_paths(self) -> tuple[list[Path], str]:
        listed = self._environ.get("KUBECONFIG", "")
        if listed:
            paths = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
            found = [p for p in paths if p.exists()]
            if not found:
                raise LoginError(
                    f"no credentials: not in a cluster (KUBERNETES_SERVICE_HOST unset or no service account "
                    f"token), and KUBECONFIG names {listed!r}, which does not exist"
                )
            return found, f"KUBECONFIG={listed}"
        home = self._environ.get("HOME")
        default = (Path(home) if home else Path.home()) / ".kube" / "config"
        if not default.exists():
            raise LoginError(
                "no credentials: not in a cluster (KUBERNETES_SERVICE_HOST unset or no service account "
                f"token), KUBECONFIG is not set and {default} does not exist"
            )
        return [default], str(default)

    def _from_kubeconfig(self, rejected: Connection | None) -> Connection:
        paths, where = self._kubeconfig_paths()
        config = _Kubeconfig.load(paths, where)
        context_name = config.current_context
        context = config.item("contexts", context_name)
        cluster_name = context.value.get("cluster")
        if not cluster_name:
            raise LoginError(f"kubeconfig ({where}): contexts[{context_name!r}].context.cluster is required")
        cluster = config.item("clusters", str(cluster_name))
        user_name = context.value.get("user")
        user = config.item("users", str(user_name)) if user_name else _Item("", {}, paths[0].parent)
        connection = self._cluster(cluster, where)
        connection = dataclasses.replace(
            connection, default_namespace=str(context.value.get("namespace") or "") or None
        )
        return self._user(connection, user, cluster, where, rejected)

    def _cluster(self, cluster: _Item, where: str) -> Connection:
        field = f"kubeconfig ({where}): clusters[{cluster.name!r}].cluster"
        values = cluster.value
        for name, what in UNSUPPORTED_CLUSTER_FIELDS.items():
            if values.get(name):
                raise LoginError(f"{field}.{name} is not supported by the operator's login ({what})")
        server = values.get("server")
        if not server or not isinstance(server, str):
            raise LoginError(f"{field}.server is required (the API server's URL)")
        if not server.startswith(("https://", "http://")):
            raise LoginError(f"{field}.server must be an http(s):// URL, not {server!r}")
        insecure = _bool(values.get("insecure-skip-tls-verify", False), f"{field}.insecure-skip-tls-verify")
        ca_path: str | None = None
        if values.get("certificate-authority-data"):
            # As kubectl: the data wins over the file.
            data = _base64(values["certificate-authority-data"], f"{field}.certificate-authority-data")
            ca_path = self._files.path(data, ".crt")
        elif values.get("certificate-authority"):
            ca_path = cluster.file(values["certificate-authority"], f"{field}.certificate-authority")
        if insecure and ca_path:
            raise LoginError(
                f"{field}: insecure-skip-tls-verify and certificate-authority(-data) are mutually exclusive "
                "(as kubectl: a CA is not allowed with the insecure flag)"
            )
        return Connection(server=server.rstrip("/"), ca_path=ca_path, insecure=insecure)

    def _user(
        self, connection: Connection, user: _Item, cluster: _Item, where: str, rejected: Connection | None
    ) -> Connection:
        field = f"kubeconfig ({where}): users[{user.name!r}].user"
        values = user.value
        for name, what in UNSUPPORTED_USER_FIELDS.items():
            if values.get(name):
                raise LoginError(f"{field}.{name} is not supported by the operator's login ({what})")
        methods = [
            name
            for name, present in (
                ("token/tokenFile", values.get("token") or values.get("tokenFile")),
                ("username/password", values.get("username") or values.get("password")),
                ("exec", values.get("exec")),
            )
            if present
        ]
        if len(methods) > 1:
            raise LoginError(f"{field}: {' and '.join(methods)} are set: one authentication method only")
        certificate = self._pem(user, "client-certificate", field)
        key = self._pem(user, "client-key", field)
        if bool(certificate) != bool(key):
            raise LoginError(f"{field}: client-certificate(-data) and client-key(-data) go together")
        connection = dataclasses.replace(connection, certificate_path=certificate, private_key_path=key)
        if values.get("tokenFile"):
            # As client-go: the file wins over `token`, and is read again at every refresh.
            path = user.file(values["tokenFile"], f"{field}.tokenFile")
            token = _read(Path(path), f"{field}.tokenFile").strip()
            if not token:
                raise LoginError(f"{field}.tokenFile: {path} is empty")
            return dataclasses.replace(connection, token=token)
        if values.get("token"):
            return dataclasses.replace(connection, token=str(values["token"]))
        if values.get("username") or values.get("password"):
            if not values.get("username") or not values.get("password"):
                raise LoginError(f"{field}: username and password go together")
            return dataclasses.replace(
                connection, username=str(values["username"]), password=str(values["password"])
            )
        if values.get("exec"):
            return self._exec(connection, user, cluster, field, rejected)
        return connection

    def _pem(self, user: _Item, name: str, field: str) -> str | None:
        if user.value.get(f"{name}-data"):
            return self._files.path(_base64(user.value[f"{name}-data"], f"{field}.{name}-data"), ".pem")
        if user.value.get(name):
            return user.file(user.value[name], f"{field}.{name}")
        return None

    # --- exec credential plugins ---

    def _exec(
        self, connection: Connection, user: _Item, cluster: _Item, field: str, rejected: Connection | None
    ) -> Connection:
        plugin = _ExecPlugin.parse(user, cluster, connection, f"{field}.exec")
        cached = self._exec_credentials.get(plugin.key)
        if cached is None or cached.expired() or (rejected is not None and cached.used_by(rejected)):
            cached = plugin.run(self._environ, self._files)
            self._exec_credentials[plugin.key] = cached
        return cached.applied(connection)


@dataclass(frozen=True)
class _Item:
    """A named entry of a kubeconfig's list, with the folder of the file that defined it."""

    name: str
    value: Mapping[str, Any]
    folder: Path

    def file(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise LoginError(f"{field} must be a file's path")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.folder / path
        if not path.is_file():
            raise LoginError(f"{field}: {path} does not exist")
        return str(path)


@dataclass
class _Kubeconfig:
    where: str
    current_context: str
    items: dict[str, dict[str, _Item]]

    @classmethod
    def load(cls, paths: Sequence[Path], where: str) -> _Kubeconfig:
        # As kubectl merges KUBECONFIG's files: the first file to set current-context, and the first entry
        # of each name, win.
        current = ""
        items: dict[str, dict[str, _Item]] = {"clusters": {}, "contexts": {}, "users": {}}
        for path in paths:
            try:
                config = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as error:
                raise LoginError(f"kubeconfig {path}: cannot be read: {error}") from error
            if not isinstance(config, dict):
                raise LoginError(f"kubeconfig {path}: must be a YAML mapping (kind: Config)")
            current = current or str(config.get("current-context") or "")
            for section, items_of in items.items():
                entries = config.get(section) or []
                if not isinstance(entries, list):
                    raise LoginError(f"kubeconfig {path}: {section} must be a list")
                singular = section[:-1]
                for index, entry in enumerate(entries):
                    if not isinstance(entry, dict) or not entry.get("name"):
                        raise LoginError(f"kubeconfig {path}: {section}[{index}].name is required")
                    value = entry.get(singular) or {}
                    if not isinstance(value, dict):
                        raise LoginError(
                            f"kubeconfig {path}: {section}[{index}].{singular} must be a mapping"
                        )
                    items_of.setdefault(str(entry["name"]), _Item(str(entry["name"]), value, path.parent))
        if not current:
            raise LoginError(f"kubeconfig ({where}): current-context is not set")
        return cls(where, current, items)

    def item(self, section: str, name: str) -> _Item:
        found = self.items[section].get(name)
        if found is None:
            known = ", ".join(sorted(self.items[section])) or "none"
            raise LoginError(
                f"kubeconfig ({self.where}): no {section} entry named {name!r} (there are: {known})"
            )
        return found


@dataclass(frozen=True)
class _ExecCredential:
    token: str | None
    certificate_path: str | None
    private_key_path: str | None
    expiration: datetime.datetime | None

    def expired(self) -> bool:
        return self.expiration is not None and datetime.datetime.now(datetime.UTC) >= (
            self.expiration - EXPIRY_MARGIN
        )

    def used_by(self, connection: Connection) -> bool:
        if self.token is not None:
            return connection.token == self.token
        return connection.certificate_path == self.certificate_path

    def applied(self, connection: Connection) -> Connection:
        connection = dataclasses.replace(connection, expiration=self.expiration)
        if self.token is not None:
            connection = dataclasses.replace(connection, token=self.token)
        if self.certificate_path is not None:
            connection = dataclasses.replace(
                connection, certificate_path=self.certificate_path, private_key_path=self.private_key_path
            )
        return connection


@dataclass(frozen=True)
class _ExecPlugin:
    """A kubeconfig user's ``exec``: a command that prints an ``ExecCredential`` (client-go's protocol)."""

    field: str
    api_version: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    install_hint: str
    exec_info: str

    @property
    def key(self) -> str:
        return json.dumps([self.api_version, self.argv, self.env, self.exec_info])

    @classmethod
    def parse(cls, user: _Item, cluster: _Item, connection: Connection, field: str) -> _ExecPlugin:
        spec = user.value["exec"]
        if not isinstance(spec, dict):
            raise LoginError(f"{field} must be a mapping")
        api_version = spec.get("apiVersion")
        if api_version not in EXEC_API_VERSIONS:
            raise LoginError(
                f"{field}.apiVersion must be one of {', '.join(EXEC_API_VERSIONS)}, not {api_version!r}"
            )
        command = spec.get("command")
        if not command or not isinstance(command, str):
            raise LoginError(f"{field}.command is required")
        args = spec.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise LoginError(f"{field}.args must be a list of strings")
        env: list[tuple[str, str]] = []
        for index, entry in enumerate(spec.get("env") or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "value" not in entry:
                raise LoginError(f"{field}.env[{index}] must have a name and a value")
            env.append((entry["name"], str(entry["value"])))
        mode = spec.get("interactiveMode")
        if api_version.endswith("/v1") and not mode:
            raise LoginError(f"{field}.interactiveMode is required with {api_version} (as kubectl requires)")
        if mode not in (None, "Never", "IfAvailable", "Always"):
            raise LoginError(f"{field}.interactiveMode must be Never, IfAvailable or Always, not {mode!r}")
        if mode == "Always":
            raise LoginError(
                f"{field}.interactiveMode is Always: the plugin needs a terminal, which the operator has not "
                "(use a plugin mode that works without one)"
            )
        provide_cluster_info = _bool(spec.get("provideClusterInfo", False), f"{field}.provideClusterInfo")
        # A command with a slash is a path, relative to the kubeconfig (as client-go); else it is on PATH.
        if os.sep in command and not os.path.isabs(command):
            command = str(user.folder / command)
        request: dict[str, Any] = {"interactive": False}
        if provide_cluster_info:
            request["cluster"] = _cluster_info(cluster, connection)
        exec_info = json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "spec": request})
        return cls(
            field=field,
            api_version=api_version,
            argv=(command, *args),
            env=tuple(env),
            install_hint=str(spec.get("installHint") or ""),
            exec_info=exec_info,
        )

    def run(self, environ: Mapping[str, str], files: _DataFiles) -> _ExecCredential:
        env = {**environ, **dict(self.env), "KUBERNETES_EXEC_INFO": self.exec_info}
        command = self.argv[0]
        if shutil.which(command, path=env.get("PATH")) is None:
            hint = f" ({self.install_hint.strip()})" if self.install_hint else ""
            raise LoginError(f"{self.field}.command: {command!r} is not found or not executable{hint}")
        try:
            done = subprocess.run(
                self.argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=EXEC_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise LoginError(f"{self.field}: {command} did not finish in {EXEC_TIMEOUT:g} s") from error
        except OSError as error:
            raise LoginError(f"{self.field}.command: {command} cannot be run: {error}") from error
        if done.returncode != 0:
            raise LoginError(
                f"{self.field}: {command} exited with {done.returncode}: {_tail(done.stderr or done.stdout)}"
            )
        return self._credential(done.stdout, files)

    def _credential(self, output: str, files: _DataFiles) -> _ExecCredential:
        what = f"{self.field}: the ExecCredential {self.argv[0]} printed"
        try:
            credential = json.loads(output)
        except ValueError as error:
            raise LoginError(f"{what} is not JSON: {_tail(output)}") from error
        if not isinstance(credential, dict) or credential.get("kind") != "ExecCredential":
            raise LoginError(f"{what}: kind must be ExecCredential")
        if credential.get("apiVersion") != self.api_version:
            raise LoginError(
                f"{what}: apiVersion must be {self.api_version} (the kubeconfig's), "
                f"not {credential.get('apiVersion')!r}"
            )
        status = credential.get("status")
        if not isinstance(status, dict):
            raise LoginError(f"{what}: status is required")
        expiration = None
        if status.get("expirationTimestamp"):
            try:
                expiration = datetime.datetime.fromisoformat(str(status["expirationTimestamp"]))
            except ValueError as error:
                raise LoginError(f"{what}: status.expirationTimestamp must be an RFC 3339 time") from error
            if expiration.tzinfo is None:
                expiration = expiration.replace(tzinfo=datetime.UTC)
        token = status.get("token")
        certificate, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if bool(certificate) != bool(key):
            raise LoginError(f"{what}: status.clientCertificateData and status.clientKeyData go together")
        if not token and not certificate:
            raise LoginError(
                f"{what}: status.token or status.clientCertificateData/clientKeyData is required"
            )
        return _ExecCredential(
            token=str(token) if token else None,
            certificate_path=files.path(str(certificate).encode(), ".pem") if certificate else None,
            private_key_path=files.path(str(key).encode(), ".pem") if key else None,
            expiration=expiration,
        )


def _cluster_info(cluster: _Item, connection: Connection) -> dict[str, Any]:
    """The ``spec.cluster`` of KUBERNETES_EXEC_INFO, for a plugin with ``provideClusterInfo``."""
    info: dict[str, Any] = {"server": connection.server}
    if connection.insecure:
        info["insecure-skip-tls-verify"] = True
    if connection.ca_path:
        info["certificate-authority-data"] = base64.b64encode(Path(connection.ca_path).read_bytes()).decode()
    extension = next(
        (
            e.get("extension")
            for e in cluster.value.get("extensions") or []
            if isinstance(e, dict) and e.get("name") == "client.authentication.k8s.io/exec"
        ),
        None,
    )
    if extension is not None:
        info["config"] = extension
    return info


class _DataFiles:
    """``-data`` fields written to files, since Python's ``ssl`` loads certificates from files only: in a
    folder of this process's own (mode 0700, each file 0600), one file per distinct content, removed at
    exit."""

    def __init__(self) -> None:
        self._folder: Path | None = None

    def path(self, data: bytes, suffix: str) -> str:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="mce-operator-credentials-"))
            atexit.register(shutil.rmtree, self._folder, True)
        path = self._folder / (hashlib.sha256(data).hexdigest()[:32] + suffix)
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
        return str(path)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise LoginError(f"{what}: {path} cannot be read: {error}") from error


def _base64(value: Any, field: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as error:
        raise LoginError(f"{field} must be base64 (of a PEM file)") from error


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise LoginError(f"{field} must be true or false, not {value!r}")
    return value


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _tail(text: str, limit: int = 500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def fixed(info: Mapping[str, Any]) -> Credentials:
    """Credentials that never change, from a ``kopf.ConnectionInfo``'s keyword arguments."""
    return Fixed(Connection.of(info))


__all__ = [
    "Connection",
    "Credentials",
    "Fixed",
    "Login",
    "LoginError",
    "Session",
    "fixed",
]
