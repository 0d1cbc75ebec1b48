"""docs/configuration.md documents exactly what the programs take, so that
it cannot drift from them:

- runner: every flag and variable `runner --help` (and the help of its
  subcommands) prints, and the variables it reads itself (RUNNER_LOG), with
  the defaults the help shows; and no flag or variable the help lacks;
- keycreator: every variable `keycreator --help` names, and no other;
- creator and verifier: the variables token-contract reads;
- who reads each token setting, as the programs do;
- compose.yaml's variables, the keys of the k8s/ ConfigMap and Secret,
  spin.toml's variables, and the options each script parses.

The binaries are the debug builds `cargo test --workspace` makes (the same
command as scripts/test.sh, so in CI this is a no-op; then the test takes
a second).
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

import docs_markdown as md

ROOT = md.ROOT
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
REFERENCE = ROOT / "docs" / "configuration.md"
FLAG = re.compile(r"--[a-z][a-z0-9-]*")
VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z0-9]$")


@pytest.fixture(scope="module")
def binaries() -> dict[str, Path]:
    # Exactly scripts/test.sh's command: another package selection unifies
    # features differently and would rebuild wasmtime's dependency tree.
    build = subprocess.run(["cargo", "test", "--locked", "--workspace", "--no-run"], cwd=ROOT,
                           capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stderr[-4000:]
    found = {name: TARGET / "debug" / name for name in ("runner", "keycreator")}
    for path in found.values():
        assert path.is_file(), f"{path} is missing"
    return found


def run_help(binary: Path, *args: str) -> str:
    result = subprocess.run([str(binary), *args, "--help"], capture_output=True, text=True,
                            timeout=30, env={"PATH": os.environ.get("PATH", "")})
    assert result.returncode == 0, result.stderr
    return result.stdout


@cache
def reference() -> str:
    return REFERENCE.read_text()


def first_cells(section_text: str) -> list[str]:
    """The first cells of the tables of settings (whose first column is
    headed Variable, Flag or Flag / variable)."""
    return [row[0] for table in md.tables(section_text)
            if table and table[0][0] in {"Variable", "Flag", "Flag / variable"}
            for row in table[1:]]


def names_in(cells: list[str]) -> set[str]:
    """The variable names in `cells` (in code spans)."""
    return {span for cell in cells for span in md.code_spans(cell) if VARIABLE.match(span)}


def flags_in(cells: list[str]) -> set[str]:
    return {flag for cell in cells for span in md.code_spans(cell) for flag in FLAG.findall(span)}


# --- runner -----------------------------------------------------------------


@pytest.fixture(scope="module")
def runner_help(binaries) -> dict[str, str]:
    main = run_help(binaries["runner"])
    commands = re.search(r"^Commands:\n((?:  \S.*\n)+)", main, re.M)
    assert commands, main
    names = [line.split()[0] for line in commands.group(1).splitlines()]
    helps = {"": main}
    helps.update({name: run_help(binaries["runner"], name) for name in names if name != "help"})
    return helps


def help_flags(text: str) -> set[str]:
    """The flags an option list defines (not the ones its prose mentions)."""
    flags = set()
    for line in text.splitlines():
        match = re.match(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", line)
        if match:
            flags.add(match.group(1))
    return flags


def runner_variables_read_directly() -> set[str]:
    """Variables the runner reads outside clap (e.g. RUNNER_LOG)."""
    source = "\n".join(p.read_text() for p in (ROOT / "components/runner/src").rglob("*.rs"))
    return set(re.findall(r"env::var(?:_os)?\(\s*\"([A-Z][A-Z0-9_]+)\"", source))


def test_every_runner_flag_and_variable_is_documented(runner_help):
    section = md.section(reference(), "runner")
    cells = first_cells(section)
    documented_flags = flags_in(cells)
    documented_names = names_in(cells)
    flags = set().union(*(help_flags(text) for text in runner_help.values()))
    variables = set(re.findall(r"\[env: ([A-Z0-9_]+)=", "\n".join(runner_help.values())))
    variables |= runner_variables_read_directly()
    assert flags - documented_flags == set(), "flags of `runner --help` missing from the reference"
    assert variables - documented_names == set(), "runner variables missing from the reference"
    assert documented_flags - flags == set(), "flags the reference documents but the runner lacks"
    assert documented_names - variables == set(), "variables the reference documents but the runner does not read"
    for command in runner_help:
        if command:
            assert f"### runner {command}" in section, f"no section for `runner {command}`"


def test_runner_defaults_are_the_ones_the_help_shows(runner_help):
    rows = md.table_rows(md.section(reference(), "runner"))
    for text in runner_help.values():
        # clap wraps nothing with `--help` (long help): one option per entry.
        entries = re.split(r"\n(?=\s+(?:-\w, )?--)", text)
        for entry in entries:
            flag = re.match(r"\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", entry)
            default = re.search(r"\[default: ([^\]]+)\]", entry)
            if not (flag and default):
                continue
            row = next((r for r in rows if flag.group(1) in FLAG.findall(r[0])), None)
            assert row, f"no row for {flag.group(1)}"
            assert f"`{default.group(1)}`" in row[1], (flag.group(1), default.group(1), row)


# --- keycreator -------------------------------------------------------------


def test_keycreator_variables_are_documented_and_no_others(binaries):
    text = run_help(binaries["keycreator"])
    variables = set(re.findall(r"\b[A-Z][A-Z0-9_]*[A-Z0-9]\b", text))
    assert {"KEY", "KEY_FILE", "TOKEN_ALG"} <= variables, text  # the help still names them
    documented = names_in(first_cells(md.section(reference(), "keycreator")))
    documented |= token_settings_read_by("keycreator")
    assert variables == documented


# --- creator and verifier ---------------------------------------------------


def component_variables() -> set[str]:
    """The variables token-contract reads: `lookup("X")`, the `*_ENV`
    constants and the TOKEN_SETTINGS list."""
    source = "\n".join(p.read_text() for p in (ROOT / "components/token-contract/src").glob("*.rs"))
    found = set(re.findall(r"lookup\(\s*\"([A-Z][A-Z0-9_]+)\"\s*\)", source))
    found |= set(re.findall(r"pub const \w+_ENV: &str = \"([A-Z][A-Z0-9_]+)\";", source))
    settings = re.search(r"pub const TOKEN_SETTINGS: \[&str; \d+\] = \[(.*?)\];", source, re.S)
    assert settings, "TOKEN_SETTINGS not found in components/token-contract/src"
    found |= set(re.findall(r"\"([A-Z][A-Z0-9_]+)\"", settings.group(1)))
    return found


def token_settings_read_by(program: str) -> set[str]:
    rows = md.table_rows(md.section(reference(), "Token settings"))
    return {name for row in rows[1:] if re.search(rf"(?<![\w-]){program}\b", row[1])
            for name in names_in(row[:1])}


def test_component_variables_are_documented_and_no_others():
    variables = component_variables()
    assert {"KEY_FILE", "TOKEN_ALG", "SIGNING_KEY", "JWKS"} <= variables, variables
    documented = names_in(first_cells(md.section(reference(), "creator and verifier")))
    for program in ("creator", "verifier"):
        assert variables == documented | token_settings_read_by(program), program


def test_the_token_settings_table_lists_the_settings():
    source = (ROOT / "components/token-contract/src/api.rs").read_text()
    settings = re.search(r"pub const TOKEN_SETTINGS: \[&str; \d+\] = \[(.*?)\];", source, re.S)
    assert settings
    expected = set(re.findall(r"\"([A-Z][A-Z0-9_]+)\"", settings.group(1)))
    rows = md.table_rows(md.section(reference(), "Token settings"))
    assert names_in([row[0] for row in rows[1:]]) == expected


# --- deployment files -------------------------------------------------------


def test_compose_variables_are_documented():
    used = set()
    for name in ("compose.yaml", "compose.otel.yaml"):
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / name).read_text()))
    documented = names_in(first_cells(md.section(reference(), "Docker Compose")))
    assert used - documented == set()


def test_kubernetes_keys_are_documented():
    yaml = pytest.importorskip("yaml")
    keys = set()
    for path in sorted((ROOT / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc.get("kind") == "ConfigMap":
                keys |= set(doc.get("data") or {})
            if doc.get("kind") == "Secret":
                keys |= set(doc.get("stringData") or {}) | set(doc.get("data") or {})
        keys |= set(re.findall(r"secretKeyRef:\s*\n\s*name: [\w-]+\s*\n\s*key: (\w+)", path.read_text()))
    assert {"KEY", "TOKEN_ALG"} <= keys, keys
    documented = set(md.code_spans(md.section(reference(), "Kubernetes")))
    assert keys - documented == set()


def test_spin_variables_are_documented():
    tomllib = pytest.importorskip("tomllib")
    manifest = tomllib.loads((ROOT / "spin.toml").read_text())
    names = set(manifest.get("variables", {}))
    for component in manifest.get("component", {}).values():
        names |= set(component.get("variables", {})) | set(component.get("environment", {}))
    documented = set(md.code_spans(md.section(reference(), "Spin")))
    assert names - documented == set()


# --- scripts ----------------------------------------------------------------

CASE_PATTERN = re.compile(r"^\s*((?:-{1,2}[a-z][a-z0-9-]*(?:=\*)?)(?:\s*\|\s*-{1,2}[a-z][a-z0-9-]*(?:=\*)?)*)\s*\)")


def script_options(source: str) -> set[str]:
    """The long options a script parses: its `case` patterns and `== "--x"` tests."""
    options = set()
    for line in source.splitlines():
        match = CASE_PATTERN.match(line)
        if match:
            options |= {p.strip().removesuffix("=*") for p in match.group(1).split("|")}
    options |= set(re.findall(r"==\s*\"(--[a-z][a-z0-9-]*)\"", source))
    return {o for o in options if o.startswith("--") and o not in {"--help", "--version"}}


def test_every_script_and_its_options_are_documented():
    rows = md.table_rows(md.section(reference(), "Scripts"))[1:]
    by_script = {md.code_spans(row[0])[0]: " ".join(row[1:]) for row in rows}
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scripts").rglob("*.sh"))
    assert set(scripts) - set(by_script) == set(), "scripts missing from the reference"
    for script in scripts:
        source = (ROOT / script).read_text()
        documented = set(FLAG.findall(by_script[script]))
        assert script_options(source) - documented == set(), script
        assert {f for f in documented if f not in source} == set(), script


def test_script_options_are_read_from_case_patterns():
    source = 'case $1 in\n  --a) ;;\n  --b | --c=*) ;;\n  -h|--help) ;;\n  -*) ;;\nesac\n[[ "$1" == "--d" ]]\n'
    assert script_options(source) == {"--a", "--b", "--c", "--d"}
