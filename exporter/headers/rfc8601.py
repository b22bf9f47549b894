"""A cursor over a header value that knows RFC 5322 comments, quoted strings and folding, and
the check that a value is one field body (no control characters, no second field)."""

from __future__ import annotations

import re

__all__ = ["NAME_STOPS", "LexicalError", "Scanner", "field_body_defect"]

WHITESPACE = frozenset(" \t\r\n")
# Characters that always end a bare word: whitespace, comment and quote delimiters, ";" and "=".
_WORD_END = WHITESPACE | frozenset('()";=')
# A property value may contain "=" (VERP addresses, BATV tags) but still ends at these.
_VALUE_END = WHITESPACE | frozenset('()";')
# A name also ends at "." and "/": "policy (c) . (c) expired" and "dkim / 1" are legal, so
# name() joins the parts of a dotted name back up across comments.
NAME_STOPS = frozenset("./")


# Characters no header may hold, and that would otherwise end up inside a word and drop it: C0
# and C1 controls (NUL among them) but HTAB, CR and LF, DEL, and the Unicode spaces that look
# like " " or like nothing (NBSP, the U+2000 spaces, ZWSP, line separators, BOM).
_FORBIDDEN = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xa0\u1680\u2000-\u200b\u2028\u2029"
    r"\u202f\u205f\u3000\ufeff]"
)
# A line break that starts a new header field rather than folding this one: the next line is
# empty (the header section ends) or begins "field-name:" (RFC 5322 ftext, then optional WSP).
# A continuation line begins with WSP; atomic groups and a possessive run keep it linear.
_NEW_FIELD = re.compile(r"(?>\r\n?|\n)(?:(?>\r\n?|\n)|([!-9;-~]++)[ \t]*:)")


class LexicalError(ValueError):
    """The text breaks the lexical rules (an unclosed comment or quote, a stray ")")."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


def field_body_defect(text: str, start: int = 0) -> LexicalError | None:
    """Why ``text[start:]`` cannot be one header field body, or None: a forbidden character,
    or a line break that begins another field (trailing whitespace aside)."""
    forbidden = _FORBIDDEN.search(text, start)
    if forbidden is not None:
        return LexicalError(f"character U+{ord(forbidden.group()):04X} not allowed",
                            forbidden.start())
    new_field = _NEW_FIELD.search(text, start, len(text.rstrip()))
    if new_field is None:
        return None
    if new_field.group(1) is None:
        return LexicalError("empty line inside the header value", new_field.start())
    name = new_field.group(1)
    shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
    return LexicalError(f"another header field {shown} begins", new_field.start())


class Scanner:
    """Reads a header value left to right; every method moves forward, so parsing is linear."""

    __slots__ = ("end", "pos", "text")

    def __init__(self, text: str, start: int = 0) -> None:
        self.text = text
        self.pos = start
        self.end = len(text)

    def at_end(self) -> bool:
        """True once every character has been consumed."""
        return self.pos >= self.end

    def peek(self) -> str:
        """The next character, or "" at the end."""
        return self.text[self.pos] if self.pos < self.end else ""

    def take(self, char: str) -> bool:
        """Consume ``char`` if it is next."""
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def skip_cfws(self) -> None:
        """Skip whitespace (CR and LF included, so folding is whitespace) and comments."""
        text, end = self.text, self.end
        while self.pos < end:
            char = text[self.pos]
            if char in WHITESPACE:
                self.pos += 1
            elif char == "(":
                self._skip_comment()
            else:
                return

    def _skip_comment(self) -> None:
        text, end = self.text, self.end
        start = self.pos
        depth = 0
        while self.pos < end:
            char = text[self.pos]
            self.pos += 1
            if char == "\\":
                self.pos += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return
        self.pos = end
        raise LexicalError("unterminated comment", start)

    def word(self, stops: frozenset[str] = frozenset()) -> str:
        """A run of characters up to whitespace, a delimiter or one of ``stops``; may be ""."""
        text, end = self.text, self.end
        start = self.pos
        while self.pos < end and text[self.pos] not in _WORD_END and text[self.pos] not in stops:
            self.pos += 1
        return text[start : self.pos]

    def name(self) -> str:
        """A method or property name, its dotted parts joined across comments; may be ""."""
        first = self.word(NAME_STOPS)
        if not first:
            return ""
        parts = [first]
        while True:
            mark = self.pos
            self.skip_cfws()
            if not self.take("."):
                self.pos = mark
                return ".".join(parts)
            self.skip_cfws()
            parts.append(self.word(NAME_STOPS))

    def quoted(self) -> str:
        """A quoted string (the next character is '"'), with its backslash escapes undone."""
        text, end = self.text, self.end
        start = self.pos
        self.pos += 1
        pieces: list[str] = []
        run = self.pos
        while self.pos < end:
            char = text[self.pos]
            if char == '"':
                pieces.append(text[run : self.pos])
                self.pos += 1
                return "".join(pieces)
            if char == "\\":
                pieces.append(text[run : self.pos])
                run = self.pos + 1
                self.pos += 2
            else:
                self.pos += 1
        self.pos = end
        raise LexicalError("unterminated quoted string", start)

    def value(self) -> str:
        """A quoted string, or a bare value that may contain "=", "@", "/" and ":"."""
        if self.peek() == '"':
            return self.quoted()
        text, end = self.text, self.end
        start = self.pos
        while self.pos < end and text[self.pos] not in _VALUE_END:
            self.pos += 1
        return text[start : self.pos]
