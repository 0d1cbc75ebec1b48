"""Reading the repository's Markdown the way GitHub renders it, for the
documentation tests (tests/docs): which files there are, their headings and
the anchors GitHub makes of them, their links, their sections and their
fenced code blocks. Standard library only; nothing here runs a program but
git.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Fences: ``` or ~~~, three or more, with an optional info string.
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


# Third-party trees (installed packages, build output) are not our documentation.
NOT_OURS = {".git", "target", "node_modules", "vendor", ".spin", "corpus", "artifacts"}


def markdown_files() -> list[Path]:
    """Every Markdown file of the checkout: tracked, or new and not ignored
    (the documentation of a change is checked before it is committed),
    outside third-party trees."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.md"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout.split("\0")
        files = {ROOT / name for name in listed if name}
    except (OSError, subprocess.CalledProcessError):
        files = set(ROOT.rglob("*.md"))
    return sorted(p for p in files
                  if p.is_file() and not NOT_OURS & set(p.relative_to(ROOT).parts))


@dataclass
class Block:
    """A fenced code block: its info string (language), the line its first
    content line has (1-based) and its lines."""
    lang: str
    line: int
    lines: list[str]


def split_fences(text: str) -> tuple[list[str], list[Block]]:
    """The lines outside fenced code blocks (those inside blanked, so that
    line numbers stay), and the blocks."""
    prose: list[str] = []
    blocks: list[Block] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                blocks.append(Block(match.group(2).lower(), number + 1, []))
                prose.append("")
            else:
                prose.append(line)
        else:
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                fence = None
            else:
                blocks[-1].lines.append(line)
            prose.append("")
    return prose, blocks


def strip_code_spans(text: str) -> str:
    """`text` with inline code spans blanked (links in code are not links)."""
    return re.sub(r"(`+)(?:(?!\1).)+?\1", lambda m: " " * len(m.group(0)), text, flags=re.S)


def heading_text(raw: str) -> str:
    """A heading's text as GitHub renders it: code spans keep their text,
    links keep their text, emphasis markers go."""
    text = re.sub(r"`([^`]*)`", r"\1", raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("*", "")


def slug(raw_heading: str) -> str:
    """GitHub's anchor for a heading: lowercase; every character that is not
    a letter, a digit, `_`, `-` or a space dropped; spaces become `-`."""
    text = heading_text(raw_heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(text: str) -> list[tuple[int, str, int]]:
    """(level, raw text, line number) of every ATX heading outside code."""
    prose, _ = split_fences(text)
    found = []
    for number, line in enumerate(prose, start=1):
        match = HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2), number))
    return found


def anchors(text: str) -> set[str]:
    """Every anchor a link into this file may name: the headings' slugs
    (repeats get -1, -2, ... as on GitHub) and explicit `<a id/name>`."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, raw, _ in headings(text):
        base = slug(raw)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    prose, _ = split_fences(text)
    found.update(re.findall(r"<a\s+(?:id|name)=[\"']([^\"']+)[\"']", "\n".join(prose)))
    return found


INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)


def links(text: str) -> list[tuple[str, int]]:
    """(target, line number) of every inline link, image and reference
    definition outside code."""
    prose, _ = split_fences(text)
    body = strip_code_spans("\n".join(prose))
    found = []
    for pattern in (INLINE_LINK, REFERENCE_DEFINITION):
        for match in pattern.finditer(body):
            target = match.group(1).strip("<>")
            found.append((target, body.count("\n", 0, match.start(1)) + 1))
    return found


def section(text: str, title: str) -> str:
    """The text under the heading `title` (its raw text, exactly), down to
    the next heading of the same or a higher level."""
    lines = text.splitlines()
    found = headings(text)
    for index, (level, raw, number) in enumerate(found):
        if raw == title:
            end = next((n for lvl, _, n in found[index + 1:] if lvl <= level), len(lines) + 1)
            return "\n".join(lines[number:end - 1])
    raise AssertionError(f"no heading {title!r}")


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in `text`: its rows (the header first, the
    separator row left out), each a list of cells. Cells must not contain
    `|`."""
    found: list[list[list[str]]] = []
    inside = False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            inside = False
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not inside:
            found.append([])
            inside = True
        if all(re.fullmatch(r":?-+:?", cell) for cell in cells):
            continue
        found[-1].append(cells)
    return found


def table_rows(text: str) -> list[list[str]]:
    """The rows of every table in `text`, header rows included."""
    return [row for table in tables(text) for row in table]


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


SHELL_LANGS = {"sh", "bash", "shell", "zsh", "console", "shell-session"}
SEPARATORS = {"|", "||", "&&", ";", "&", ";;", "(", ")", "|&"}


def strip_comment(line: str) -> str:
    """The line without a trailing shell comment (a `#` at the start of a
    word, outside quotes)."""
    quote = None
    previous = " "
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            return line[:index]
        previous = char
    return line


def shell_commands(block: Block) -> list[tuple[str, int]]:
    """(command line, line number) of a shell or console block: console
    blocks only the lines after a `$ ` prompt; continuation lines joined;
    here-documents and comments left out."""
    console = block.lang in {"console", "shell-session"}
    commands: list[tuple[str, int]] = []
    pending = ""
    start = 0
    heredoc: str | None = None
    for offset, raw in enumerate(block.lines):
        number = block.line + offset
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        line = raw
        if not pending:
            if console:
                if not line.lstrip().startswith("$ "):
                    continue
                line = line.lstrip()[2:]
            start = number
        code = strip_comment(line).rstrip()
        if code.endswith("\\"):
            pending += code[:-1] + " "
            continue
        command = pending + code
        pending = ""
        if command.strip():
            commands.append((command, start))
        match = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", command)
        if match:
            heredoc = match.group(1)
    if pending.strip():
        commands.append((pending, start))
    return commands


def words(command: str) -> list[str]:
    """The command split as the shell would, roughly: quotes removed,
    `| && ; ( )` separate tokens."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:
        return command.split()
