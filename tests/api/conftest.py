"""Live creator and verifier for the API description tests.

The real runner binary serves the real components on 127.0.0.1 (ports chosen
by the kernel), with a key file written by the real keycreator binary.
scripts/test.sh has built all of it before pytest runs; the builds below are
then no-ops that only make `python3 -m pytest tests/api` work on its own.
"""

from __future__ import annotations

import json
import os
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
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# Same override as the Rust tests (components/runner/tests/common/mod.rs).
WASM_DIR = Path(os.environ.get("WASM_DIR", TARGET / "wasm32-wasip2" / "release"))
KEY = "openapi-contract-test-secret"
START_TIMEOUT = 60


def _run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 1800) -> None:
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, timeout=timeout, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}"


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    """Debug runner and keycreator (what `cargo test` builds) and the release components."""
    # Exactly the commands of scripts/test.sh: other package selections unify
    # features differently and would rebuild wasmtime's dependency tree.
    _run(["cargo", "test", "--locked", "--workspace", "--no-run"])
    if "WASM_DIR" not in os.environ:
        _run(["cargo", "build", "--locked", "--release", "--target", "wasm32-wasip2",
              "-p", "creator", "-p", "verifier", "-p", "misbehaving-guest"])
    found = {
        "runner": TARGET / "debug" / "runner",
        "keycreator": TARGET / "debug" / "keycreator",
        "creator": WASM_DIR / "creator.wasm",
        "verifier": WASM_DIR / "verifier.wasm",
    }
    for name, path in found.items():
        assert path.is_file(), f"{name}: {path} is missing"
    return found


@pytest.fixture(scope="session")
def key_dir(binaries, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("key")
    env = {**os.environ, "KEY": KEY, "KEY_FILE": str(directory / "key.txt")}
    _run([str(binaries["keycreator"])], env=env, timeout=30)
    return directory


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen
    log: list[str]


def _start(name: str, binaries: dict[str, Path], key_dir: Path, tmp: Path) -> Service:
    # Compile once ahead of time, as the images do: starting from a .cwasm
    # takes milliseconds instead of a Cranelift compile per start.
    cwasm = tmp / f"{name}.cwasm"
    _run([str(binaries["runner"]), "compile", str(binaries[name]), "-o", str(cwasm)], timeout=300)
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
def services(binaries, key_dir, tmp_path_factory):
    """{"creator": Service, "verifier": Service}, stopped at the end of the session."""
    tmp = tmp_path_factory.mktemp("components")
    started: dict[str, Service] = {}
    try:
        for name in ("creator", "verifier"):
            started[name] = _start(name, binaries, key_dir, tmp)
        yield started
    finally:
        for service in started.values():
            service.process.terminate()
            try:
                service.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
