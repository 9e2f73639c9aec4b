"""A real S3-compatible server on loopback for the tests: moto's standalone server in a subprocess, on a free port.

Clients find it the standard way, through AWS_ENDPOINT_URL and the AWS_* credentials in the environment, which the
fixture sets for the test process and every process it starts (Beam workers, a job killed mid-run)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_SECONDS = 60


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str
    log: Path  # the server's request log (a file, never a pipe: a full pipe would stall the server)

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def new_bucket(self) -> str:
        """A fresh, empty bucket; returns its s3:// URL."""
        import boto3

        name = f"test-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, **_credentials()).create_bucket(Bucket=name)
        return f"s3://{name}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _credentials() -> dict:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_s3_server(log: Path) -> S3Server:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log, "w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto's S3 server exited with code {process.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(endpoint, timeout=2).close()
            return S3Server(process, endpoint, log)
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"moto's S3 server did not answer on {endpoint} within {START_TIMEOUT_SECONDS} s")


