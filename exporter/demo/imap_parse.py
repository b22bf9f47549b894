"""The demo IMAP server's command syntax: tokens, sequence sets, STORE flags, LIST patterns."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "SYSTEM_FLAGS", "Command", "ParseError", "SequenceSet", "Token", "command_tag",
    "format_uid_set", "mailbox_matches", "parse_command", "parse_plain", "parse_sequence_set",
    "parse_store", "quote", "strings", "tokenize",
]

Token: TypeAlias = "str | list[Token]"  # noqa: S105 - a type, not a password
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_FLAG_CASE = {f.lower(): f for f in (*SYSTEM_FLAGS, "\\Recent")}
_TAG = re.compile(r'[^\x00-\x20\x7f(){%*"\\+]+')
_STORE_OP = re.compile(r"([+-]?)FLAGS(\.SILENT)?", re.IGNORECASE)
_SEQ_RANGE = re.compile(r"([1-9]\d*|\*)(?::([1-9]\d*|\*))?")


class ParseError(ValueError):
    """The client's command does not parse; the server answers BAD with this text."""


@dataclass(frozen=True)
class Command:
    """``A1 UID FETCH 1:* (FLAGS)`` -> tag A1, name FETCH, args, uid=True."""

    tag: str
    name: str
    args: list[Token]
    uid: bool = False


def command_tag(chunks: Sequence[tuple[bytes, bytes | None]]) -> str:
    """The command's tag, or ``*`` if it has none that is valid."""
    tag = chunks[0][0].split(b" ", 1)[0].decode("ascii", "replace") if chunks else ""
    return tag if _TAG.fullmatch(tag) else "*"


def parse_command(chunks: Sequence[tuple[bytes, bytes | None]]) -> Command:
    """Tag, command name (upper case, after ``UID`` if there is one) and arguments."""
    tokens = tokenize(chunks)
    if len(tokens) < 2 or not isinstance(tokens[1], str) or command_tag(chunks) == "*":
        raise ParseError("expected a tag and a command")
    name, args, uid = tokens[1].upper(), tokens[2:], False
    if name == "UID" and args and isinstance(args[0], str):
        name, args, uid = args[0].upper(), args[1:], True
    return Command(command_tag(chunks), name, args, uid)


def strings(args: Sequence[Token], count: int, usage: str) -> list[str]:
    """Exactly ``count`` atoms or strings, else a ParseError that says ``usage``."""
    if len(args) != count or not all(isinstance(a, str) for a in args):
        raise ParseError(usage)
    return [str(a) for a in args]


def tokenize(chunks: Sequence[tuple[bytes, bytes | None]]) -> list[Token]:
    """Atoms, quoted strings and literals (all as str) and parenthesized lists of a command.

    ``chunks`` are the command's lines without CRLF and ``{n}`` markers, each with the
    literal that followed it. Atoms keep ``[...]`` sections whole: ``BODY[HEADER.FIELDS (A)]``.
    """
    stack: list[list[Token]] = [[]]
    for line, literal in chunks:
        text = line.decode("utf-8", "replace")
        i = 0
        while i < len(text):
            char = text[i]
            if char == " ":
                i += 1
            elif char == "(":
                stack.append([])
                i += 1
            elif char == ")":
                if len(stack) == 1:
                    raise ParseError("unbalanced ')'")
                inner = stack.pop()
                stack[-1].append(inner)
                i += 1
            elif char == '"':
                value, i = _quoted(text, i)
                stack[-1].append(value)
            else:
                end = i
                while end < len(text) and text[end] not in ' ()"':
                    if text[end] == "[":
                        end = text.find("]", end)
                        if end < 0:
                            raise ParseError("unbalanced '['")
                    end += 1
                stack[-1].append(text[i:end])
                i = end
        if literal is not None:
            stack[-1].append(literal.decode("utf-8", "replace"))
    if len(stack) != 1:
        raise ParseError("unbalanced '('")
    return stack[0]


def _quoted(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            if i + 1 == len(text) or text[i + 1] not in '\\"':
                raise ParseError("only \\\\ and \\\" may be escaped in a quoted string")
            i += 1
        out.append(text[i])
        i += 1
    raise ParseError("unterminated quoted string")


def quote(text: str) -> str:
    """``text`` as an IMAP quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class SequenceSet:
    """Closed ranges of message numbers or UIDs, ``*`` already resolved."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and any(lo <= number <= hi for lo, hi in self.ranges)


def parse_sequence_set(text: str, largest: int) -> SequenceSet:
    """``1:*``, ``3,5:7``; ``*`` is ``largest`` and ``7:5`` means ``5:7`` (RFC 3501, 9)."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        match = _SEQ_RANGE.fullmatch(part)
        if match is None:
            raise ParseError(f"invalid sequence set {text!r}")
        first = largest if match[1] == "*" else int(match[1])
        last = largest if (match[2] or match[1]) == "*" else int(match[2] or match[1])
        ranges.append((min(first, last), max(first, last)))
    return SequenceSet(tuple(ranges))


def format_uid_set(uids: Sequence[int]) -> str:
    """Ascending runs compressed: ``[1, 2, 3, 7]`` -> ``1:3,7``."""
    runs: list[list[int]] = []
    for uid in uids:
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in runs)


def parse_store(args: Sequence[Token]) -> tuple[str, bool, set[str]]:
    """``+FLAGS.SILENT (\\Seen)`` -> ("+", True, {"\\Seen"}); \\Recent is never stored."""
    operation = _STORE_OP.fullmatch(args[0]) if args and isinstance(args[0], str) else None
    listed = args[1] if len(args) == 2 and isinstance(args[1], list) else args[1:]
    if operation is None or len(args) < 2 or not all(isinstance(f, str) for f in listed):
        raise ParseError("STORE needs a sequence set, [+-]FLAGS[.SILENT] and flags")
    flags = {_FLAG_CASE.get(str(f).lower(), str(f)) for f in listed} - {"\\Recent"}
    if bad := sorted(f for f in flags if f.startswith("\\") and f not in SYSTEM_FLAGS):
        raise ParseError(f"unknown system flag {bad[0]}")
    return operation[1], bool(operation[2]), flags


def parse_plain(answer: bytes) -> tuple[str, str, str]:
    """A SASL PLAIN response (RFC 4616): (authorization id, user, password)."""
    try:
        authz, user, password = base64.b64decode(answer, validate=True).decode().split("\0")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ParseError("expected base64 of authzid NUL user NUL password") from None
    return authz, user, password


def mailbox_matches(reference: str, pattern: str, name: str) -> bool:
    """LIST wildcards: ``*`` matches anything, ``%`` anything but the ``/`` delimiter."""
    regex = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c)
                    for c in reference + pattern)
    return re.fullmatch(regex, name, re.IGNORECASE if name == "INBOX" else 0) is not None

