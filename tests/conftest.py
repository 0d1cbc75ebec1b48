"""Fixtures shared by the test directories that drive the real binaries on
127.0.0.1 (tests/api, tests/runner): the debug runner and keycreator, the
release components, a key file and ahead-of-time compiled components.

scripts/test.sh has built all of it before pytest runs; the builds below are
then no-ops that only make e.g. `python3 -m pytest tests/api` work on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# tests/ is on sys.path: pytest puts a rootless conftest's directory there.
from helpers import run_checked

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# Same override as the Rust tests (components/runner/tests/common/mod.rs).
WASM_DIR = Path(os.environ.get("WASM_DIR", TARGET / "wasm32-wasip2" / "release"))
KEY = "live-binaries-test-secret"


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    """Debug runner and keycreator (what `cargo test` builds) and the release components."""
    # Exactly the commands of scripts/test.sh: other package selections unify
    # features differently and would rebuild wasmtime's dependency tree.
    run_checked(["cargo", "test", "--locked", "--workspace", "--no-run"])
    if "WASM_DIR" not in os.environ:
        run_checked(["cargo", "build", "--locked", "--release", "--target", "wasm32-wasip2",
                     "-p", "creator", "-p", "verifier", "-p", "misbehaving-guest"])
    found = {
        "runner": TARGET / "debug" / "runner",
        "keycreator": TARGET / "debug" / "keycreator",
        "creator": WASM_DIR / "creator.wasm",
        "verifier": WASM_DIR / "verifier.wasm",
        "misbehaving_guest": WASM_DIR / "misbehaving_guest.wasm",
    }
    for name, path in found.items():
        assert path.is_file(), f"{name}: {path} is missing"
    return found


@pytest.fixture(scope="session")
def key_dir(binaries, tmp_path_factory) -> Path:
    """A key directory written by the real keycreator."""
    directory = tmp_path_factory.mktemp("key")
    env = {**os.environ, "KEY": KEY, "KEY_FILE": str(directory / "key.txt")}
    run_checked([str(binaries["keycreator"])], env=env, timeout=30)
    return directory


@pytest.fixture(scope="session")
def cwasm(binaries, tmp_path_factory) -> Callable[[str], Path]:
    """`cwasm("creator")`: the component compiled once ahead of time, as the
    images do, so a runner starts in milliseconds instead of compiling."""
    out = tmp_path_factory.mktemp("cwasm")

    def compiled(name: str) -> Path:
        path = out / f"{name}.cwasm"
        if not path.exists():
            run_checked([str(binaries["runner"]), "compile", str(binaries[name]), "-o", str(path)],
                        timeout=300)
        return path

    return compiled
