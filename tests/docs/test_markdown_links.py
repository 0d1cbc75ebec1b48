"""The Markdown files hold together: every relative link and #anchor
resolves, and every shell command in a code block that runs one of our
scripts names a script that exists, with flags that script knows; flags
given to the runner are ones the configuration reference documents (which
tests/docs/test_configuration_reference.py ties to `runner --help`).

Offline and fast: it reads files only. Anchors follow GitHub's rules (see
docs_markdown.slug), so a link that works here works on GitHub.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

import docs_markdown as md

ROOT = md.ROOT
FILES = md.markdown_files()
SCRIPT_PATH = re.compile(r"(?<![\w./-])(?:\./)?(scripts/[\w./-]*\w)")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_documentation_is_found():
    names = {rel(p) for p in FILES}
    assert {"README.md", "docs/configuration.md"} <= names, names


def broken_links(path: Path) -> list[str]:
    text = path.read_text()
    problems = []
    for target, line in md.links(text):
        where = f"{rel(path)}:{line}: {target}"
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
            continue  # http:, https:, mailto: ...: not checked offline
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part)
        if file_part:
            base = ROOT if file_part.startswith("/") else path.parent
            linked = (base / file_part.lstrip("/")).resolve()
            if not linked.is_relative_to(ROOT):
                problems.append(f"{where}: points outside the repository")
                continue
            if not linked.exists():
                problems.append(f"{where}: no such file or directory")
                continue
        else:
            linked = path
        if anchor and linked.suffix == ".md":
            if anchor not in md.anchors(linked.read_text()):
                problems.append(f"{where}: no heading in {rel(linked)} makes the anchor #{anchor}")
    return problems


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_relative_links_and_anchors_resolve(path):
    assert broken_links(path) == []


def documented_runner_flags() -> set[str]:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    return set(re.findall(r"--[a-z][a-z0-9-]*", md.section(reference, "runner")))


def segments(words: list[str]) -> list[list[str]]:
    """The simple commands of a command line."""
    parts: list[list[str]] = [[]]
    for word in words:
        if word in md.SEPARATORS:
            parts.append([])
        else:
            parts[-1].append(word)
    return [p for p in parts if p]


def runner_arguments(command: list[str]) -> list[str] | None:
    """The arguments given to our runner, if this command runs it: `runner
    ...` as the command, a path to it (`/runner ...`, `target/release/runner
    ...`), or `cargo run -p runner -- ...`."""
    if command[:2] == ["cargo", "run"]:
        for flag in ("-p", "--package", "--bin"):
            if flag in command and command[command.index(flag) + 1:][:1] == ["runner"]:
                return command[command.index("--") + 1:] if "--" in command else []
        return None
    for index, word in enumerate(command):
        previous = command[index - 1] if index else ""
        if previous in {"-p", "--package", "--bin"}:
            continue
        at_command_position = index == 0 or "=" in previous
        if (word == "runner" and at_command_position) or word.endswith("/runner"):
            return command[index + 1:]
    return None


def shell_problems(path: Path) -> list[str]:
    _, blocks = md.split_fences(path.read_text())
    runner_flags = documented_runner_flags()
    problems = []
    for block in blocks:
        if block.lang not in md.SHELL_LANGS:
            continue
        for command_line, line in md.shell_commands(block):
            where = f"{rel(path)}:{line}: {' '.join(command_line.split())}"
            for script in SCRIPT_PATH.findall(command_line):
                if not (ROOT / script).exists():
                    problems.append(f"{where}: {script} does not exist")
            for command in segments(md.words(command_line)):
                for index, word in enumerate(command):
                    match = SCRIPT_PATH.fullmatch(word)
                    if not match or not (ROOT / match.group(1)).is_file():
                        continue
                    source = (ROOT / match.group(1)).read_text()
                    for argument in command[index + 1:]:
                        flag = argument.split("=", 1)[0]
                        if re.fullmatch(r"--[a-z][a-z0-9-]*", flag) and flag not in source:
                            problems.append(f"{where}: {match.group(1)} knows no {flag}")
                    break
                arguments = runner_arguments(command)
                for argument in arguments or []:
                    flag = argument.split("=", 1)[0]
                    if re.fullmatch(r"--[a-z][a-z0-9-]*", flag) and flag not in runner_flags:
                        problems.append(
                            f"{where}: the runner has no {flag} (docs/configuration.md, runner)")
    return problems


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_shell_commands_name_scripts_and_flags_that_exist(path):
    assert shell_problems(path) == []


# The checker itself, on made-up pages: a checker that finds nothing proves nothing.

def test_the_checker_finds_broken_links_and_anchors(tmp_path, monkeypatch):
    monkeypatch.setattr(md, "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(
        "# A guide\n\n## Step `two`: done (really)\n\n## Step\n\n## Step\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n\n[ok](docs/guide.md#step-two-done-really) [ok](docs/guide.md#step-1)"
        " [ok](#top) [ok](https://example.com/x#y) [ok](docs/) [bad](docs/guide.md#step-2)\n"
        "[missing](docs/nothing.md) [bad anchor](docs/guide.md#step-three)\n"
        "[bad here](#bottom) `[in code](nowhere.md)`\n\n"
        "```sh\n[not a link](nowhere.md)\n```\n\n[ref]: docs/gone.md\n")
    found = broken_links(page)
    assert len(found) == 5, found
    assert any("docs/guide.md#step-2" in p for p in found)  # repeats are -1, -2
    assert any("docs/nothing.md" in p for p in found)
    assert any("#step-three" in p for p in found)
    assert any("#bottom" in p for p in found)
    assert any("docs/gone.md" in p for p in found)


def test_the_checker_finds_unknown_scripts_and_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(md, "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "go.sh").write_text('case $1 in --fast) ;; --out=*) ;; esac\n')
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "configuration.md").write_text("## runner\n\n| `--addr` | x |\n")
    page = tmp_path / "README.md"
    page.write_text(
        "```sh\n"
        "X=1 scripts/go.sh --fast --out=x | grep --slow   # scripts/go.sh --wrong in a comment\n"
        "scripts/go.sh \\\n    --slow\n"
        "scripts/gone.sh\n"
        "cargo run --release -p runner -- --addr 1 --nope x.cwasm\n"
        "cargo build --profile profiling -p runner\n"
        "```\n\n"
        "```console\n$ scripts/go.sh --fast\noutput --not-a-flag scripts/not-a-command\n```\n")
    found = shell_problems(page)
    assert sorted(found) == sorted([
        "README.md:3: scripts/go.sh --slow: scripts/go.sh knows no --slow",
        "README.md:5: scripts/gone.sh: scripts/gone.sh does not exist",
        "README.md:6: cargo run --release -p runner -- --addr 1 --nope x.cwasm: "
        "the runner has no --nope (docs/configuration.md, runner)",
    ]), found
