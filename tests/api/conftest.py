"""Live creator and verifier for the API description tests.

The real runner binary serves the real components on 127.0.0.1 (ports chosen
by the kernel), with a key file written by the real keycreator binary.
The `binaries` and `key_dir` fixtures come from tests/conftest.py.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"
START_TIMEOUT = 60


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen
    log: list[str]


def _start(name: str, binaries: dict[str, Path], key_dir: Path, cwasm: Path) -> Service:
    process = subprocess.Popen(
        [str(binaries["runner"]), "--addr", "127.0.0.1:0", "--no-access-log",
         "--dir", f"{key_dir}::/usr/share/key", str(cwasm)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    log: list[str] = []
    listening = threading.Event()
    addr: list[str] = []

    def drain() -> None:
        # Keep reading for the process's whole life so a full pipe never blocks it.
        for line in process.stdout:
            log.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("message") == "listening":
                addr.append(event["addr"])
                listening.set()

    threading.Thread(target=drain, daemon=True).start()
    if not listening.wait(START_TIMEOUT):
        process.kill()
        raise AssertionError(f"{name}: runner did not start listening:\n{''.join(log)}")
    service = Service(name, f"http://{addr[0]}", process, log)
    # Ready means the component has read the key: only then is a 503 a bug.
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{service.url}/readyz", timeout=5) as response:
                if response.status == 200:
                    return service
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{name} never became ready:\n{''.join(log)}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def services(binaries, key_dir, cwasm):
    """{"creator": Service, "verifier": Service}, stopped at the end of the session."""
    started: dict[str, Service] = {}
    try:
        for name in ("creator", "verifier"):
            started[name] = _start(name, binaries, key_dir, cwasm(name))
        yield started
    finally:
        for service in started.values():
            service.process.terminate()
            try:
                service.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
