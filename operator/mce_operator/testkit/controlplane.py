"""A real Kubernetes control plane for tests and for people: etcd and kube-apiserver as local processes.

The binaries are built from the Go module in ``controlplane/`` (``make controlplane``) into
``.cache/controlplane`` or ``$MCE_CONTROLPLANE_DIR``. :class:`ControlPlane` starts etcd and kube-apiserver
on free loopback ports with freshly generated certificates and service-account keys (the ``openssl``
CLI), RBAC authorization and a static-token admin in ``system:masters``, waits for ``/readyz`` and writes
an admin kubeconfig. The flags follow envtest's (controller-runtime ``pkg/internal/testing/controlplane``).

There is no controller-manager, scheduler or kubelet: objects are stored, validated, defaulted, watched
and authorized as on any cluster, but no pod runs, no namespace finishes terminating and nothing is
garbage-collected.

    with ControlPlane() as plane:
        subprocess.run(["kubectl", "get", "ns"], env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)})

``python -m mce_operator.testkit.controlplane up`` starts one for a person (``make cluster-up``).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from mce_operator.testkit.client import KubeApiError, KubeClient

__all__ = [
    "BINARIES_ENV",
    "ControlPlane",
    "ControlPlaneError",
    "binaries_dir",
    "die_with_parent",
    "missing_binaries",
]

BINARIES_ENV = "MCE_CONTROLPLANE_DIR"
BINARIES = ("etcd", "kube-apiserver")
ADMIN = "mce-admin"
_REPOSITORY = Path(__file__).resolve().parents[3]
_LIVE: set[ControlPlane] = set()


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (the message ends with the failing process's log)."""


def binaries_dir() -> Path:
    """Where ``make controlplane`` puts etcd and kube-apiserver."""
    configured = os.environ.get(BINARIES_ENV)
    return Path(configured) if configured else _REPOSITORY / ".cache" / "controlplane"


def missing_binaries(directory: Path | None = None) -> list[str]:
    directory = directory or binaries_dir()
    return [name for name in BINARIES if not os.access(directory / name, os.X_OK)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    # Runs in the child before exec: when the Python process dies, even by SIGKILL (a killed pytest, a
    # closed terminal), the kernel kills etcd and kube-apiserver too, so no stray process holds a port.
    # PR_SET_PDEATHSIG follows the creating thread: start control planes from a long-lived thread.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _generate_certificates(directory: Path) -> None:
    """A CA, the apiserver's serving certificate for 127.0.0.1/localhost, and the service-account keys."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "7", "-subj", "/CN=mce-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-x509", *ec, "-keyout", "apiserver.key", "-out", "apiserver.crt", "-days", "7",
        "-CA", "ca.crt", "-CAkey", "ca.key", "-subj", "/CN=kube-apiserver",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth",
        cwd=directory,
    )  # fmt: skip
    # ES256 service-account tokens: kube-apiserver signs with any RSA or ECDSA key.
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=directory)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)


class _Process:
    """One binary in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name, self.argv, self.log = name, list(argv), log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop them in order
                preexec_fn=die_with_parent,
            )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)
        self.popen = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ControlPlane:
    """etcd + kube-apiserver on free loopback ports; ``start()``/``stop()`` or a ``with`` block."""

    def __init__(
        self,
        *,
        binaries: Path | None = None,
        workdir: Path | None = None,
        apiserver_args: Sequence[str] = (),
    ) -> None:
        self.binaries = binaries or binaries_dir()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mce-controlplane-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_apiserver_args = list(apiserver_args)
        self.admin_token = secrets.token_hex(16)
        self.etcd_port = self.apiserver_port = 0
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None

    # --- addresses and identities -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def ca_path(self) -> Path:
        return self.workdir / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """The admin's kubeconfig (``system:masters``)."""
        return self.workdir / "kubeconfig"

    @property
    def apiserver_log(self) -> Path:
        return self.workdir / "kube-apiserver.log"

    def client(self, token: str | None = None) -> KubeClient:
        """A client as the admin, or as whoever ``token`` belongs to."""
        return KubeClient(self.url, token=token or self.admin_token, ca_path=str(self.ca_path))

    def connection_info(self, namespace: str = "default", token: str | None = None) -> dict[str, Any]:
        """The keyword arguments of ``kopf.ConnectionInfo`` for this API server."""
        return {
            "server": self.url,
            "ca_path": str(self.ca_path),
            "token": token or self.admin_token,
            "default_namespace": namespace,
        }

    def write_kubeconfig(
        self, path: Path, *, token: str | None = None, user: str = ADMIN, namespace: str = "default"
    ) -> Path:
        """A kubeconfig for this server, as the admin or as the owner of ``token``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "mce-test",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_path)},
                }
            ],
            "users": [{"name": user, "user": {"token": token or self.admin_token}}],
            "contexts": [
                {"name": user, "context": {"cluster": "mce-test", "user": user, "namespace": namespace}}
            ],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def service_account_token(self, namespace: str, name: str, *, seconds: int = 3600) -> str:
        """A token of the ServiceAccount, from the TokenRequest API (what ``kubectl create token`` asks)."""
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
        request["spec"] = {"expirationSeconds": seconds}
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        answer = self.client().request("POST", path, request)
        token: str = answer["status"]["token"]
        return token

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Self:
        if missing := missing_binaries(self.binaries):
            raise ControlPlaneError(
                f"{', '.join(missing)} not found in {self.binaries}: run `make controlplane` (needs Go), "
                f"or point {BINARIES_ENV} at a folder holding etcd and kube-apiserver"
            )
        _LIVE.add(self)
        try:
            _generate_certificates(self.workdir)
            (self.workdir / "tokens.csv").write_text(f'{self.admin_token},{ADMIN},{ADMIN},"system:masters"\n')
            self.etcd_port, self.apiserver_port = _free_port(), _free_port()
            self._start_etcd(timeout)
            self.start_apiserver(timeout)
            self.write_kubeconfig(self.kubeconfig)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_etcd(self, timeout: float) -> None:
        peer = f"http://127.0.0.1:{_free_port()}"
        self._etcd = _Process(
            "etcd",
            [
                str(self.binaries / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                # A throwaway test store: durability is not wanted, speed is (as envtest does).
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.workdir / "etcd.log",
        )
        self._etcd.start()
        self._wait(self._etcd, lambda: self._etcd_healthy(), timeout)

    def start_apiserver(self, timeout: float = 120.0) -> None:
        """Start kube-apiserver (again, after :meth:`stop_apiserver`: same port, certificates and etcd)."""
        directory = self.workdir
        self._apiserver = _Process(
            "kube-apiserver",
            [
                str(self.binaries / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={directory}",
                f"--tls-cert-file={directory / 'apiserver.crt'}",
                f"--tls-private-key-file={directory / 'apiserver.key'}",
                f"--client-ca-file={directory / 'ca.crt'}",
                f"--token-auth-file={directory / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.url}",
                f"--service-account-key-file={directory / 'sa.pub'}",
                f"--service-account-signing-key-file={directory / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # The `kubernetes` Service's endpoints would be 127.0.0.1, which the apiserver refuses as an
                # endpoint address (an error every 10 s); nothing here runs in a pod to use them.
                "--endpoint-reconciler-type=none",
                *self.extra_apiserver_args,
            ],
            self.apiserver_log,
        )
        self._apiserver.start()
        self._wait(self._apiserver, self._apiserver_ready, timeout)

    @property
    def pids(self) -> dict[str, int]:
        """The running processes: name -> pid."""
        processes = (self._etcd, self._apiserver)
        return {p.name: p.popen.pid for p in processes if p is not None and p.popen is not None}

    def running(self) -> bool:
        return all(p is not None and p.running() for p in (self._etcd, self._apiserver))

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only: every watch and connection ends; etcd keeps the data."""
        if self._apiserver is not None:
            self._apiserver.stop()

    def restart_apiserver(self, timeout: float = 120.0) -> None:
        self.stop_apiserver()
        self.start_apiserver(timeout)

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd; remove the working folder if this object made it."""
        for process in (self._apiserver, self._etcd):
            if process is not None:
                process.stop()
        _LIVE.discard(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait(self, process: _Process, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not process.running():
                raise ControlPlaneError(f"{process.name} exited while starting:\n{process.tail()}")
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{process.name} not ready after {timeout:.0f} s:\n{process.tail()}")
            time.sleep(0.2)

    def _apiserver_ready(self) -> bool:
        try:
            self.client().request_raw("GET", "/readyz", accept="text/plain")
        except (KubeApiError, OSError, ValueError):
            return False  # not listening yet, or still running its post-start hooks (RBAC bootstrap, ...)
        return True

    # --- etcd ------------------------------------------------------------------------------------------

    def _etcd_call(self, path: str, body: Mapping[str, Any]) -> Any:
        # etcd's gRPC gateway: JSON over HTTP on the client port.
        request = urllib.request.Request(self.etcd_url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def etcd_revision(self) -> int:
        answer = self._etcd_call("/v3/kv/range", {"key": base64.b64encode(b"/").decode(), "limit": 1})
        return int(answer["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now: a watch resumed from any older resourceVersion gets 410 Gone
        unless the apiserver's watch cache still holds it. Returns the compacted revision."""
        revision = self.etcd_revision()
        self._etcd_call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision


@atexit.register
def _stop_all() -> None:
    # A run that ends without reaching a fixture's teardown (an error in a fixture, a KeyboardInterrupt) still
    # stops its processes; PR_SET_PDEATHSIG covers the interpreter being killed outright.
    for plane in list(_LIVE):
        plane.stop()


@contextlib.contextmanager
def _signals_stop() -> Iterator[None]:
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt.
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _up(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve() if args.workdir else None
    if workdir is not None and workdir.exists():
        shutil.rmtree(workdir)  # a fresh cluster each time: old certificates and data would not match
    plane = ControlPlane(workdir=workdir)
    print(f"controlplane: starting etcd and kube-apiserver from {plane.binaries} ...", flush=True)
    with _signals_stop():
        try:
            with plane:
                version = plane.client().request("GET", "/version")["gitVersion"]
                print(
                    f"controlplane: kube-apiserver {version} is ready at {plane.url} ({plane.workdir})\n"
                    f"\nexport KUBECONFIG={plane.kubeconfig}\n\n"
                    "Then, in another terminal: kubectl apply -k deploy/ && kubectl create namespace ml && "
                    "kubectl apply -f examples/direct.yaml\n"
                    "No kubelet runs pods here: run the operator beside it (README, 'Tested against a real "
                    "kube-apiserver').\n"
                    "Ctrl-C stops the cluster.",
                    flush=True,
                )
                while plane.running():
                    time.sleep(1)
                print(
                    f"controlplane: etcd or kube-apiserver exited; logs in {plane.workdir}", file=sys.stderr
                )
                return 1
        except KeyboardInterrupt:
            print("\ncontrolplane: stopped.")
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mce_operator.testkit.controlplane", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="Start a control plane and keep it running until Ctrl-C.")
    up.add_argument("--workdir", help="Where certificates, data, logs and the kubeconfig go (a temp folder).")
    args = parser.parse_args(argv)
    try:
        return _up(args)
    except ControlPlaneError as error:
        print(f"controlplane: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
