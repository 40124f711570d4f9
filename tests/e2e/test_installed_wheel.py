"""The package as users and the image get it: a wheel built from exactly what the Dockerfile's build stage
copies, installed into fresh virtual environments with constraints.txt — once as the image does (runtime
dependencies only), once with the `demo` extra — and run from a folder outside the repository.

The runtime-only install runs the whole operator (`mce-operator run`, a subprocess) against the in-memory
Kubernetes API and the emulated SageMaker of this process, and its /metrics is scraped during the lifecycle.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import IMAGE, NAMESPACE, REGION, is_ready, manifest, wait
from metrics_scrape import Delta, Scrape, scrape

import dockerfile_parse
from mce_operator import api, crdgen
from mce_operator.emulator import Emulator
from mce_operator.testkit.kube_server import KubeServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Fresh environments download nothing new when pip's cache is warm; a cold one may take minutes.
INSTALL_TIMEOUT = 600


def _wheel_build_context(target: Path) -> None:
    """Copy what the Dockerfile's build stage copies into its WORKDIR, and nothing else."""
    build = dockerfile_parse.stages()[0]
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    for keyword, rest in build.instructions:
        if keyword != "COPY":
            continue
        *sources, destination = shlex.split(rest)
        into_folder = len(sources) > 1 or destination.endswith("/")
        for source in sources:
            origin, dest = ROOT / source, target / destination
            if into_folder:
                dest = dest / origin.name
            if origin.is_dir():
                shutil.copytree(origin, dest, ignore=ignore)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, dest)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    context = tmp_path_factory.mktemp("build-context")
    _wheel_build_context(context)
    out = tmp_path_factory.mktemp("wheels")
    # The build stage's command (tests/deploy/test_dockerfile.py checks that it is this one).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-cache-dir",
            "--no-deps",
            "--wheel-dir",
            out,
            ".",
        ],
        cwd=context,
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    (built,) = out.glob("mce_operator-*.whl")
    return built


def _venv(path: Path, requirement: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", path], check=True, timeout=120)
    bindir = path / "bin"
    pip = [bindir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "-c", ROOT / "constraints.txt", requirement],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    return bindir


@pytest.fixture(scope="module")
def runtime_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As the image installs it: the wheel, no extra."""
    return _venv(tmp_path_factory.mktemp("runtime") / "venv", str(wheel))


@pytest.fixture(scope="module")
def demo_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _venv(tmp_path_factory.mktemp("demo") / "venv", f"{wheel}[demo]")


def installed(bindir: Path) -> set[str]:
    listed = subprocess.run(
        [bindir / "python", "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {item["name"].lower().replace("_", "-") for item in json.loads(listed.stdout)}


def test_the_runtime_install_carries_no_demo_tooling(runtime_bin: Path) -> None:
    packages = installed(runtime_bin)
    assert "mce-operator" in packages and "prometheus-client" in packages
    assert "kmock" not in packages
    assert not {"pytest", "mypy", "ruff", "jsonschema", "kubernetes-validate", "lupa"} & packages
    subprocess.run([runtime_bin / "python", "-m", "pip", "check"], check=True, capture_output=True)


def test_run_help_works_and_demo_says_what_to_install(runtime_bin: Path, tmp_path: Path) -> None:
    helped = subprocess.run(
        [runtime_bin / "mce-operator", "run", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    assert "--metrics-port" in helped.stdout and "--namespace" in helped.stdout
    demo = subprocess.run(
        [runtime_bin / "mce-operator", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert demo.returncode == 2, demo.stdout + demo.stderr
    assert "demo" in demo.stderr and "'.[demo]'" in demo.stderr, demo.stderr
    assert "Traceback" not in demo.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeServer, Emulator, Path]]:
    with (
        Emulator(delay=0.2, region=REGION) as emulator,
        KubeServer(crds=[crdgen.build_crd()], namespaces=[NAMESPACE]) as kube,
    ):
        yield kube, emulator, kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NAMESPACE)


def test_the_installed_operator_runs_a_lifecycle_and_serves_metrics(
    runtime_bin: Path, cluster: tuple[KubeServer, Emulator, Path], tmp_path: Path
) -> None:
    kube, emulator, kubeconfig = cluster
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
        "AWS_ACCESS_KEY_ID": "wheel",
        "AWS_SECRET_ACCESS_KEY": "wheel",
        "AWS_ENDPOINT_URL_SAGEMAKER": emulator.url,
        "MCE_REGION": REGION,
        "MCE_BUSY_INTERVAL": "0.3",
        "MCE_STEADY_INTERVAL": "2",
        "MCE_CALLS_PER_SECOND": "0",
        "MCE_METRICS_PORT": str(port),
    }
    log = (tmp_path / "operator.log").open("w")
    process = subprocess.Popen(
        [runtime_bin / "mce-operator", "run", "--namespace", NAMESPACE, "--liveness", "", "--plain-logs"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def show() -> str:
        return f"exit code {process.poll()}; operator log:\n{(tmp_path / 'operator.log').read_text()[-4000:]}"

    def answered() -> Scrape | None:
        assert process.poll() is None, show()
        try:
            return scrape(url)
        except OSError:
            return None

    def ready(name: str, config_not: str | None = None) -> dict[str, object]:
        def check() -> dict[str, object] | None:
            obj = kube.find(api.PLURAL, NAMESPACE, name)
            fresh = obj and is_ready(obj) and obj["status"].get("endpointConfigName") != config_not
            return obj if fresh else None

        result: dict[str, object] = wait(f"{name} Ready", check, 30, show)
        return result

    try:
        start = wait("the metrics endpoint to answer", answered, 30, show)
        # The process's own metrics come with the registry: how the operator's memory is watched.
        assert start.value("process_resident_memory_bytes") > 0

        kube.create(manifest("wheel"))
        obj = ready("wheel")
        created = Delta(start, scrape(url))
        assert (
            created("mce_operator_sagemaker_requests_total", operation="CreateEndpoint", outcome="success")
            == 1
        )
        assert created("mce_operator_objects", condition="Ready") == 1
        assert created("mce_operator_objects_by_endpoint_status", endpoint_status="InService") == 1
        assert created("mce_operator_time_to_ready_seconds_count") == 1
        assert created("mce_operator_reconcile_total", result="success") >= 2

        status = obj["status"]
        assert isinstance(status, dict)
        containers = manifest("wheel")["spec"]["containers"]
        containers[0]["image"] = IMAGE.format("features-v2")
        kube.patch(api.PLURAL, NAMESPACE, "wheel", {"spec": {"containers": containers}})
        ready("wheel", config_not=status["endpointConfigName"])
        updated = Delta(start, scrape(url))
        assert (
            updated("mce_operator_sagemaker_requests_total", operation="UpdateEndpoint", outcome="success")
            == 1
        )
        assert updated("mce_operator_time_to_ready_seconds_count") == 2

        kube.delete(api.PLURAL, NAMESPACE, "wheel")
        wait("the object to be gone", lambda: kube.find(api.PLURAL, NAMESPACE, "wheel") is None, 30, show)
        end = scrape(url)
        deleted = Delta(start, end)
        assert (
            deleted("mce_operator_sagemaker_requests_total", operation="DeleteEndpoint", outcome="success")
            == 1
        )
        assert deleted.total("mce_operator_objects") == 0
        assert deleted.total("mce_operator_sagemaker_requests_total", outcome="error") == 0
        assert end.value("mce_operator_sagemaker_last_success_timestamp_seconds") > 0
        # What was scraped, for whoever reads the test's output (pytest -s).
        print("\n".join(line for line in end.text.splitlines() if line.startswith("mce_operator_")))
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        finally:
            log.close()


@pytest.mark.parametrize("example", [None, "examples/serial.yaml"], ids=["default", "serial"])
def test_the_demo_runs_from_any_folder(demo_bin: Path, tmp_path: Path, example: str | None) -> None:
    command = [demo_bin / "mce-operator", "demo", "--delay", "0.3"]
    if example:
        command += ["--example", example]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"1. kubectl apply -f {example or 'examples/direct.yaml'}" in result.stdout
    assert result.stdout.rstrip().endswith("demo: every step happened.")
