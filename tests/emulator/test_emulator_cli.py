"""``mce-emulator`` as users run it: a process that tells its URL on the first line."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3


def command() -> list[str]:
    script = Path(sys.executable).parent / "mce-emulator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mce_operator.emulator"]


def test_cli_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [
            *command(),
            *("--port", "0", "--delay", "0", "--account", "111122223333", "--region", "eu-central-1"),
            *("--deployment-time-scale", "0.01"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        sm = boto3.client(
            "sagemaker",
            endpoint_url=url,
            region_name="eu-central-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        arn = sm.create_model(ModelName="m", Containers=[{"Image": "img"}])["ModelArn"]
        assert arn == "arn:aws:sagemaker:eu-central-1:111122223333:model/m"
        with urllib.request.urlopen(url + "/_emulator/health") as response:
            assert json.loads(response.read())["delays"] == {
                "create": 0.0,
                "update": 0.0,
                "delete": 0.0,
                "deploymentTimeScale": 0.01,
            }
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_cli_help() -> None:
    result = subprocess.run([*command(), "--help"], capture_output=True, text=True, timeout=30, check=True)
    assert "--port" in result.stdout
    assert "--delay" in result.stdout
