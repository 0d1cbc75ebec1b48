"""The real runner binary as a test's server: started on loopback ports
with its metrics on, talked to over HTTP, its metrics read by the Python
Prometheus client's OpenMetrics parser. Shared by the tests in this folder."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from helpers import free_port  # noqa: E402

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class Runner:
    """`access_log=True` keeps the access log (stdout) for `log_lines()`;
    `env` adds to the runner's environment."""

    def __init__(self, runner_bin: Path, component: Path, *args: str,
                 env: dict[str, str] | None = None, access_log: bool = False):
        self.port, self.metrics_port = free_port(), free_port()
        self.stdout = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [
                runner_bin,
                "--addr", f"127.0.0.1:{self.port}",
                "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
                *([] if access_log else ["--no-access-log"]),
                *args,
                component,
            ],
            stdout=self.stdout,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                # Any answer means it serves (the test guest has no /healthz).
                self.request("GET", "/healthz")
                break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"runner did not start: {self.process.stderr.read().decode()}")
            time.sleep(0.05)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def stalled_upload(self) -> bytes:
        """Declares a body, sends a part of it, then goes silent."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(b"POST /create HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"user")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            return answer

    def scrape(self) -> tuple[str, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            assert response.status == 200
            return response.getheader("Content-Type"), response.read().decode()
        finally:
            connection.close()

    def samples(self) -> dict[str, dict[frozenset, float]]:
        """sample name -> {frozenset(labels): value}, from the parsed exposition."""
        content_type, text = self.scrape()
        assert content_type == OPENMETRICS
        samples: dict[str, dict[frozenset, float]] = defaultdict(dict)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name][frozenset(sample.labels.items())] = sample.value
        return samples

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log_lines(self) -> list[str]:
        self.stdout.seek(0)
        return self.stdout.read().decode().splitlines()

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, as Kubernetes stops a pod; returns the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
