"""Kubeconfigs and exec credential plugins as files, for the tests of the operator's login
(tests/kube_adapter, tests/cluster): a kubeconfig of one context, and a real plugin (a script) that writes
down each run."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

import yaml

# The plugin: writes down each run (argv, its env, KUBERNETES_EXEC_INFO) and prints the answer the test
# left in its folder, RUN replaced by the run's number and EXPIRES by the time ``lifetime`` seconds from now
# (default 3600); "exit N" makes it fail.
PLUGIN = """#!{python}
import datetime, json, os, pathlib, sys
state = pathlib.Path(os.environ["PLUGIN_STATE"])
with (state / "runs.jsonl").open("a") as out:
    info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
    run = {{"argv": sys.argv[1:], "greeting": os.environ.get("GREETING"), "info": info}}
    out.write(json.dumps(run) + "\\n")
run = len((state / "runs.jsonl").read_text().splitlines())
answer = (state / "answer").read_text()
if answer.startswith("exit "):
    print("the identity provider said no", file=sys.stderr)
    sys.exit(int(answer.split()[1]))
lifetime = float((state / "lifetime").read_text()) if (state / "lifetime").exists() else 3600
expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=lifetime)
print(answer.replace("RUN", str(run)).replace("EXPIRES", expires.strftime("%Y-%m-%dT%H:%M:%SZ")))
"""


def write_kubeconfig(
    path: Path,
    *,
    cluster: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    current: str | None = "lean",
) -> Path:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lean", "cluster": {"server": "https://k8s.example:6443", **(cluster or {})}}],
        "users": [{"name": "lean", "user": user if user is not None else {"token": "static"}}],
        "contexts": [{"name": "lean", "context": {"cluster": "lean", "user": "lean", **(context or {})}}],
    }
    if current is not None:
        config["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


class ExecPlugin:
    """The plugin script in its own folder; ``answer`` is what its next runs print."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / "get-token"
        self.path.write_text(PLUGIN.format(python=sys.executable))
        self.path.chmod(0o755)

    def answer(
        self, status: dict[str, Any] | str, api_version: str = "client.authentication.k8s.io/v1"
    ) -> None:
        text = (
            status
            if isinstance(status, str)
            else json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "status": status})
        )
        (self.folder / "answer").write_text(text)

    def lifetime(self, seconds: float) -> None:
        """How long the credentials of the next runs last (what EXPIRES in the answer becomes)."""
        (self.folder / "lifetime").write_text(str(seconds))

    def runs(self) -> list[dict[str, Any]]:
        log = self.folder / "runs.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def exec(self, command: str | None = None, **more: Any) -> dict[str, Any]:
        return {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": command or str(self.path),
            "args": ["token", "--cluster", "lean"],
            "env": [{"name": "PLUGIN_STATE", "value": str(self.folder)}, {"name": "GREETING", "value": "hi"}],
            "interactiveMode": "Never",
            **more,
        }


def later(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
