"""Helpers every test directory needs, kept once here.

Import it the way tests/rotation_load.py is imported:

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import free_port, run_checked
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_checked(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 1800) -> None:
    """Run `cmd` in the repository root; fail the test with its output if it fails."""
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, timeout=timeout, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}"
