"""Peer text made safe in one place: valid Unicode, visible controls, secrets hidden in every
form a server may echo them, and a cap that cannot leave half a secret behind."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from exporter.peertext import REDACTED, Redactor, clean, clean_lines, visible

SECRET = "s3cr3t pass+word/=!"  # space, +, /, = and ! change under URL and base64 encodings


def test_invalid_utf8_becomes_replacement_characters() -> None:
    """Bytes that were not UTF-8 (lone surrogates) come out as U+FFFD, encodable anywhere."""
    raw = b"250 caf\xe9 \xff".decode("utf-8", "surrogateescape")
    out = visible(raw)
    assert out == "250 caf\ufffd \ufffd"
    out.encode("utf-8")
    json.loads(json.dumps(out, ensure_ascii=False))


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\x00", "\x7f", "\x9b", "\x9d"])
def test_control_characters_are_shown_escaped(char: str) -> None:
    """C0, DEL and C1 controls (ESC, BEL, NUL, the 8-bit CSI and OSC) never pass raw."""
    out = clean(f"220 hi{char}]52;c;AAAA")
    assert char not in out
    assert f"\\x{ord(char):02x}" in out


@pytest.mark.parametrize("form", [
    SECRET,
    urllib.parse.quote(SECRET, safe=""),
    urllib.parse.quote(SECRET),
    urllib.parse.quote(SECRET, safe="!'()*-._~"),
    urllib.parse.quote_plus(SECRET),
    base64.b64encode(SECRET.encode()).decode(),
    "s3cr3t\r\n pass+word/=!",
])
def test_a_secret_is_hidden_in_every_echoed_form(form: str) -> None:
    """The secret raw, URL-encoded, base64-encoded or broken over lines is redacted."""
    out = clean(f"535 5.7.8 bad credentials {form} rejected", redactor=Redactor([SECRET]))
    assert "s3cr3t" not in out and "czNjcjN0" not in out
    assert REDACTED in out


@pytest.mark.parametrize("cut", range(0, 40))
def test_a_secret_cut_by_the_cap_leaves_no_prefix(cut: int) -> None:
    """Whatever the cap, no 4 characters of the secret survive at the cut."""
    text = "x" * cut + SECRET + " tail"
    out = clean(text, redactor=Redactor([SECRET]), limit=cut + 8)
    assert "s3cr" not in out
    assert len(out) <= cut + 8 + len(REDACTED)


def test_text_is_capped_with_an_ellipsis() -> None:
    """A long reply is cut to the limit and says so."""
    out = clean("a" * 10_000, limit=100)
    assert len(out) == 100 and out.endswith("…")


def test_short_secrets_are_not_searched() -> None:
    """A secret under 4 characters would redact ordinary words: it is left to the caller."""
    assert clean("abc def", redactor=Redactor(["abc"])) == "abc def"


def test_any_lone_surrogate_becomes_a_replacement_character() -> None:
    """Lone surrogates of any kind (a JSON "\\ud800" escape, not only undecodable bytes)
    come out as U+FFFD instead of raising."""
    assert visible("a\ud800b\udcffc\udfff") == "a\ufffdb\ufffdc\ufffd"


def test_line_separators_and_bidi_overrides_are_shown_escaped() -> None:
    """U+2028 (a line break to JSON readers) and U+202E (reverses what follows) are escaped,
    and making text visible twice changes nothing more."""
    out = visible("a\u2028b\u202ec\x1bd")
    assert out == "a\\u2028b\\u202ec\\x1bd"
    assert visible(out) == out


@pytest.mark.parametrize("split", range(1, len(SECRET)))
def test_a_secret_split_over_lines_is_redacted(split: int) -> None:
    """A reply whose lines split a secret: the lines are cleaned as one, the secret hidden."""
    lines = ["535-5.7.8 bad " + SECRET[:split], SECRET[split:] + " rejected"]
    out = clean_lines(lines, redactor=Redactor([SECRET]))
    assert len(out) == 1 and REDACTED in out[0]
    assert "s3cr" not in out[0] and "word" not in out[0]


def test_lines_without_a_split_secret_stay_lines() -> None:
    """Each line of a reply is cleaned on its own when no secret spans them."""
    out = clean_lines(["250-hello \x1b[2J", b"250 caf\xe9"], redactor=Redactor([SECRET]))
    assert out == ["250-hello \\x1b[2J", "250 caf\ufffd"]
