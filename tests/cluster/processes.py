"""What the cluster tier runs besides the control plane, as a user would: `mce-emulator` and
`mce-operator run` as processes, and the apiserver's audit log of what the operator's identity did."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from mce_operator.testkit.controlplane import die_with_parent

BIN = Path(sys.executable).parent
REGION = "us-east-1"
AWS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,  # what boto3 reads
}


class Process:
    """A child in its own process group, output to a log file; stopped (and its group) on exit."""

    def __init__(self, argv: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=die_with_parent,  # a killed test run leaves no operator or emulator behind
            )

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)

    def signal(self, signum: int) -> None:
        os.killpg(self.popen.pid, signum)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


class Emulator(Process):
    """`mce-emulator --port 0`: the first line of its output says where it listens."""

    def __init__(self, log: Path, delay: float = 0.5) -> None:
        super().__init__([str(BIN / "mce-emulator"), "--port", "0", "--delay", str(delay)], log)
        deadline = time.monotonic() + 30
        while not (first := self.text().split("\n", 1)[0]).startswith("listening on "):
            assert self.popen.poll() is None, f"mce-emulator exited:\n{self.text()}"
            assert time.monotonic() < deadline, "mce-emulator did not say where it listens"
            time.sleep(0.05)
        self.url = first.removeprefix("listening on ").strip()

    def client(self) -> Any:
        return boto3.client("sagemaker", endpoint_url=self.url, region_name=REGION, **_keys())

    def calls(self) -> list[dict[str, Any]]:
        """The SageMaker calls so far, from the emulator's admin API."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_emulator/calls", timeout=10) as answer:
            calls: list[dict[str, Any]] = json.loads(answer.read())["calls"]
            return calls


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
    }


class Operator(Process):
    """`mce-operator run` with a kubeconfig (the only identity it has) against the emulator."""

    def __init__(self, kubeconfig: Path, emulator: Emulator, log: Path, *args: str) -> None:
        env = {
            "KUBECONFIG": str(kubeconfig),
            "AWS_ENDPOINT_URL_SAGEMAKER": emulator.url,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": emulator.url,
            **AWS,
            # The emulator finishes in half a second: look as often (the timer's tick is read at import).
            "MCE_TIMER_TICK": "0.5",
        }
        argv = [
            str(BIN / "mce-operator"),
            "run",
            "--plain-logs",
            "--busy-interval=0.5",
            "--steady-interval=30",
        ]
        # No fixed ports: other runs of the tier may share the machine.
        argv += ["--liveness=", "--metrics-port=0", *args]
        super().__init__(argv, log, env)


# --- the audit log --------------------------------------------------------------------------------------

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["{user}"]
  - level: None
"""


def audit_args(directory: Path, user: str) -> list[str]:
    """kube-apiserver flags that log every request of ``user`` (one JSON line per stage)."""
    policy = directory / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY.format(user=user))
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={directory / 'audit.log'}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",  # written before the answer: what a test reads next is there
    ]


@dataclass(frozen=True)
class Request:
    """One request of the audited identity: what RBAC decides on, and the answer's code."""

    verb: str
    group: str
    resource: str
    code: int
    namespace: str = ""
    name: str = ""

    @property
    def rule(self) -> tuple[str, str, str]:
        return (self.group, self.resource, self.verb)


def audited(log: Path, since: int = 0) -> tuple[list[Request], int]:
    """The requests logged after byte ``since`` of the audit log, and the offset to read on from."""
    if not log.exists():
        return [], since
    with log.open("rb") as file:
        file.seek(since)
        data = file.read()
    # A line being written has no newline yet: leave it for the next read.
    complete = data[: data.rfind(b"\n") + 1]
    requests = []
    for line in complete.splitlines():
        event = json.loads(line)
        ref = event.get("objectRef")
        if ref is None or event.get("stage") not in ("ResponseComplete", "ResponseStarted", "Panic"):
            continue  # non-resource URLs (discovery, /version) need no rule of ours
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        requests.append(
            Request(
                event["verb"],
                ref.get("apiGroup", ""),
                resource,
                event.get("responseStatus", {}).get("code", 0),
                ref.get("namespace", ""),
                ref.get("name", ""),
            )
        )
    return requests, since + len(complete)


def wait_until(what: str, check: Callable[[], Any], timeout: float, *, log: Process | None = None) -> Any:
    """Poll until ``check()`` is truthy; on time-out, fail with the operator's log tail."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = "\n".join(log.text().splitlines()[-40:]) if log else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(0.1)


def by_rule(requests: list[Request]) -> Iterator[tuple[str, str, str]]:
    yield from sorted({request.rule for request in requests})
