"""The line structure of a lookup text: where it holds code, whose white space matters.

A text holds code when it has a fenced block (a line opening with three or more backticks
or tildes, however indented, up to the matching closing fence or the end of the text) or
an *indented* line: a line after the first non-blank one whose leading white space holds
a tab or is at least two characters long, or that follows a line ending in ``:``, ``{``,
``(``, ``[`` or ``\\`` (a block opener). One leading space after any other line is taken
as wrapped prose.

In a text with code, the lines outside fences form paragraphs (split at blank lines); a
paragraph holding an indented line is code. Code (fenced blocks, fences included, and
code paragraphs) keeps every line as it is, less trailing white space; prose keeps
nothing of its white space but word boundaries. Everything is one pass over the lines:
linear in the length of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["Layout", "layout"]

_LINE_BREAK: Final = re.compile(r"\r\n?|\n")
_WHITESPACE: Final = re.compile(r"\s+")
# An opening fence: three or more backticks or tildes after any indentation (wider than
# Markdown's three spaces: a fence in a prompt is code however it is indented).
_FENCE: Final = re.compile(r"[^\S\r\n]*(`{3,}|~{3,})")
# What ends a line that opens a block: any indentation of the next line is structure.
_BLOCK_OPENERS: Final = frozenset(":{([\\")
# Long texts are split and collapsed a slice of this many characters at a time, with the
# same result: one regex call over a whole long text holds the GIL, and so the event
# loop, for its whole length, even when it runs on a worker thread.
_SLICE: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Layout:
    """A text split into what may be re-spaced (prose) and what may not (code)."""

    normalized: str
    """The exact-match form: prose white-space runs as one space; code kept line by line
    with its indentation (trailing white space of each line dropped); without code, one
    line."""
    code: tuple[str, ...]
    """The code parts in order (fenced blocks with their fences, code paragraphs), each
    as its lines joined with ``\\n``; empty when the text holds no code."""


def _collapse(text: str) -> str:
    if len(text) <= _SLICE:
        return _WHITESPACE.sub(" ", text).strip()
    out: list[str] = []
    for start in range(0, len(text), _SLICE):
        piece = _WHITESPACE.sub(" ", text[start : start + _SLICE])
        # A run cut in two became a space on each side of the cut: one space, as whole.
        if out and out[-1].endswith(" ") and piece.startswith(" "):
            piece = piece[1:]
        if piece:
            out.append(piece)
    return "".join(out).strip()


def _split_lines(text: str) -> list[str]:
    """``_LINE_BREAK.split(text)``, a slice at a time for a long text."""
    if len(text) <= _SLICE:
        return _LINE_BREAK.split(text)
    lines: list[str] = []
    pending: list[str] = []  # the line that runs on across a cut
    start = 0
    while start < len(text):
        end = start + _SLICE
        if text[end - 1 : end + 1] == "\r\n":
            end += 1  # never cut a CRLF in two
        parts = _LINE_BREAK.split(text[start:end])
        pending.append(parts[0])
        if len(parts) > 1:
            lines.append("".join(pending))
            lines += parts[1:-1]
            pending = [parts[-1]]
        start = end
    lines.append("".join(pending))
    return lines


def _opening(line: str) -> tuple[str, int] | None:
    """The fence character and width when ``line`` opens a fenced block."""
    match = _FENCE.match(line)
    if match is None:
        return None
    fence = match.group(1)
    # A backtick fence's info string holds no backtick (else it is inline code).
    if fence[0] == "`" and "`" in line[match.end() :]:
        return None
    return fence[0], len(fence)


def _closes(line: str, char: str, width: int) -> bool:
    """Whether ``line`` closes a fence of ``width`` ``char`` characters."""
    stripped = line.lstrip()
    run = len(stripped) - len(stripped.lstrip(char))
    return run >= width and not stripped[run:].strip()


def layout(text: str) -> Layout:
    """The layout of ``text`` (in the Unicode form the caller compares)."""
    if "\n" not in text and "\r" not in text and _opening(text) is None:
        return Layout(_collapse(text), ())
    lines = [line.rstrip() for line in _split_lines(text)]

    # Pass 1: each line's kind: "f" fenced (fences included), "i" indented, "" other.
    kinds: list[str] = []
    fence: tuple[str, int] | None = None
    previous = ""  # the last non-blank line outside fences
    for line in lines:
        if fence is not None:
            kinds.append("f")
            if _closes(line, *fence):
                fence = None
            continue
        fence = _opening(line)
        if fence is not None:
            kinds.append("f")
            continue
        kind = ""
        if line:
            depth = len(line) - len(line.lstrip())
            if (
                previous
                and depth
                and (depth >= 2 or "\t" in line[:depth] or previous[-1:] in _BLOCK_OPENERS)
            ):
                kind = "i"
            previous = line
        kinds.append(kind)
    if "f" not in kinds and "i" not in kinds:
        return Layout(_collapse(text), ())

    # Pass 2: segments in order, each a fenced block or a paragraph (blank lines apart).
    out: list[str] = []
    code: list[str] = []
    i = 0
    n = len(lines)
    while i < n:
        if kinds[i] == "f":
            j = i + 1
            opened = _opening(lines[i])
            assert opened is not None
            while j < n and kinds[j] == "f":
                j += 1
                if _closes(lines[j - 1], *opened):
                    break
            part = "\n".join(lines[i:j])
            code.append(part)
            out.append(part)
            i = j
            continue
        if not lines[i]:
            if out and out[-1] != "":
                out.append("")  # a run of blank lines is one paragraph break
            i += 1
            continue
        j = i
        is_code = False
        while j < n and lines[j] and kinds[j] != "f":
            is_code = is_code or kinds[j] == "i"
            j += 1
        if is_code:
            part = "\n".join(lines[i:j])
            code.append(part)
            out.append(part)
        else:
            out.append(_collapse(" ".join(lines[i:j])))
        i = j
    while out and out[-1] == "":
        out.pop()
    # Blank lines that end an unclosed fence are trailing white space too.
    return Layout("\n".join(out).rstrip("\n"), tuple(code))
