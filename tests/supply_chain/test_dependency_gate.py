"""The dependency gate (scripts/dependency-gate.sh, deny.toml) refuses what it
is there to refuse, and passes our own workspace.

Each refused case is a throwaway Cargo workspace in a temporary directory,
checked with the real cargo-deny against the real advisory database snapshot;
each has a twin that differs only in the one thing the gate must refuse and
that passes, so that a failure is known to come from that thing. cargo-deny
reads `cargo metadata`; nothing here is compiled.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GATE = ROOT / "scripts" / "dependency-gate.sh"


def gate(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GATE), *args], cwd=ROOT, timeout=timeout, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def workspace(directory: Path, dependencies: str, *, license_field: str = 'license = "Apache-2.0"') -> Path:
    """A one-crate workspace with these `[dependencies]` lines, its lock file
    resolved and its crates fetched (the gate runs cargo-deny offline)."""
    (directory / "src").mkdir(parents=True)
    (directory / "src" / "lib.rs").write_text("")
    (directory / "Cargo.toml").write_text(
        "[package]\n"
        'name = "gate-probe"\nversion = "0.1.0"\nedition = "2021"\npublish = false\n'
        f"{license_field}\n\n"
        "[workspace]\n\n"
        f"[dependencies]\n{dependencies}\n"
    )
    for step in (["generate-lockfile"], ["fetch", "--locked"]):
        proc = subprocess.run(["cargo", *step], cwd=directory, text=True, timeout=600,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.returncode == 0, proc.stdout
    return directory / "Cargo.toml"


def path_crate(directory: Path, name: str, license_field: str) -> Path:
    """A local crate under `directory`, with this licence line (or none)."""
    crate = directory / name
    (crate / "src").mkdir(parents=True)
    (crate / "src" / "lib.rs").write_text("")
    (crate / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n{license_field}\n'
    )
    return crate


def test_our_workspace_passes():
    proc = gate()
    assert proc.returncode == 0, proc.stdout
    assert "dependency gate: passed" in proc.stdout
    # Both workspaces were checked, and against the offline copy.
    assert f"check advisories licenses sources bans: {ROOT / 'Cargo.toml'}" in proc.stdout
    assert f"check advisories licenses sources bans: {ROOT / 'fuzz' / 'Cargo.toml'}" in proc.stdout
    assert "advisory database: " in proc.stdout and "fetched now" not in proc.stdout


def test_a_crate_with_a_known_advisory_fails_the_gate(tmp_path):
    # smallvec 1.6.0: RUSTSEC-2021-0003 (buffer overflow in insert_many),
    # fixed in 1.6.1. A crate of no dependencies, in the snapshot since 2021.
    proc = gate("--manifest-path", str(workspace(tmp_path / "vulnerable", 'smallvec = "=1.6.0"')))
    assert proc.returncode != 0, proc.stdout
    assert "RUSTSEC-2021-0003" in proc.stdout, proc.stdout
    assert "advisories FAILED, bans ok, licenses ok, sources ok" in proc.stdout, proc.stdout
    assert "dependency gate: FAILED" in proc.stdout

    fixed = gate("--manifest-path", str(workspace(tmp_path / "fixed", 'smallvec = "=1.6.1"')))
    assert fixed.returncode == 0, fixed.stdout
    assert "RUSTSEC-2021-0003" not in fixed.stdout


def test_a_git_dependency_fails_the_gate(tmp_path):
    # A real git repository (file://, no network) holding a crate under an
    # allowed licence: only its source is wrong.
    repo = path_crate(tmp_path, "from-git", 'license = "MIT"')
    for cmd in (["init", "--quiet"], ["add", "."],
                ["-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "commit.gpgsign=false",
                 "commit", "--quiet", "-m", "crate"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True)
    url = repo.as_uri()
    proc = gate("--manifest-path", str(workspace(tmp_path / "git", f'from-git = {{ git = "{url}" }}')))
    assert proc.returncode != 0, proc.stdout
    assert "error[source-not-allowed]: detected 'git' source" in proc.stdout, proc.stdout
    assert f"from-git 0.1.0 git+{url}" in proc.stdout
    assert "advisories ok, bans ok, licenses ok, sources FAILED" in proc.stdout

    # The same crate by path (no source to judge) passes.
    local = gate("--manifest-path", str(workspace(tmp_path / "path", f'from-git = {{ path = "{repo}" }}')))
    assert local.returncode == 0, local.stdout


@pytest.mark.parametrize("license_field, expected", [
    ("", "unlicensed"),
    ('license = "GPL-3.0-only"', "GPL-3.0-only"),
    ('license = "MIT"', None),  # the twin: the same crate under a licence we ship
])
def test_a_dependency_under_a_licence_we_cannot_ship_fails_the_gate(tmp_path, license_field, expected):
    crate = path_crate(tmp_path, "odd-licence", license_field)
    proc = gate("--manifest-path", str(workspace(tmp_path / "ws", f'odd-licence = {{ path = "{crate}" }}')))
    if expected is None:
        assert proc.returncode == 0, proc.stdout
        return
    assert proc.returncode != 0, proc.stdout
    assert expected in proc.stdout, proc.stdout
    assert "odd-licence" in proc.stdout
    assert "advisories ok, bans ok, licenses FAILED, sources ok" in proc.stdout


def test_a_missing_database_is_one_clear_error(tmp_path):
    proc = subprocess.run(
        [str(GATE)], cwd=ROOT, text=True, timeout=600,
        env={**os.environ, "ADVISORY_DB": str(tmp_path / "nowhere")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.returncode != 0
    assert "no advisory database at" in proc.stdout and "ADVISORY_DB" in proc.stdout
