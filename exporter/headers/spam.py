"""Spam scores and flags that receivers stamp on a message: SpamAssassin, rspamd, Microsoft."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

__all__ = ["Headers", "is_spam_flagged", "spam_scores"]

Headers = Mapping[str, Sequence[str]] | Sequence[tuple[str, str]]
_Fields = list[tuple[str, str]]
_Parser = Callable[[str], float | None]

_NUMBER = re.compile(r"[+-]?(?:\d{1,12}(?:\.\d{0,12})?|\.\d{1,12})", re.ASCII)
_SCL_SPAM = 5  # Microsoft: SCL 5 and 6 are spam, 9 high confidence spam; -1 skipped filtering


def spam_scores(headers: Headers) -> dict[str, float]:
    """Score per source ("spamassassin", "rspamd", "microsoft_scl"); unparseable ones skipped."""
    fields = _fields(headers)
    scores: dict[str, float] = {}
    spamassassin = _score(fields, ("x-spam-status", _spamassassin_score), ("x-spam-score", _number))
    if spamassassin is not None:
        scores["spamassassin"] = spamassassin
    rspamd = _score(fields, ("x-spamd-result", _rspamd_score), ("x-rspamd-score", _number))
    if rspamd is not None:
        scores["rspamd"] = rspamd
    scl = _scl(fields)
    if scl is not None:
        scores["microsoft_scl"] = float(scl)
    return scores


def is_spam_flagged(headers: Headers) -> bool | None:
    """True when any source calls it spam, False when sources are present and none does."""
    fields = _fields(headers)
    flags = [
        _yes_no(value) for name, value in fields if name in ("x-spam-flag", "x-spam-status")
    ]
    flags += [_rspamd_flag(value) for name, value in fields if name == "x-spamd-result"]
    scl = _scl(fields)
    if scl is not None:
        flags.append(scl >= _SCL_SPAM)
    known = [flag for flag in flags if flag is not None]
    if not known:
        return None
    return any(known)


def _fields(headers: Headers) -> _Fields:
    """(lower-case name, value) pairs in order; anything that is not a str pair is dropped."""
    pairs: list[tuple[str, object]] = []
    try:
        if isinstance(headers, Mapping):
            for name, values in headers.items():
                if isinstance(values, str):
                    values = (values,)
                pairs.extend((name, value) for value in values)
        else:
            pairs.extend(item for item in headers if isinstance(item, tuple) and len(item) == 2)
    except TypeError:  # not iterable after all
        pass
    return [
        (name.strip().lower(), value)
        for name, value in pairs
        if isinstance(name, str) and isinstance(value, str)
    ]


def _score(fields: _Fields, *sources: tuple[str, _Parser]) -> float | None:
    """The first score that parses, trying each (field name, parser) in turn, topmost first."""
    for name, parse in sources:
        for field_name, value in fields:
            if field_name == name:
                score = parse(value)
                if score is not None:
                    return score
    return None


def _number(text: str) -> float | None:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    score = float(text)
    return score if math.isfinite(score) else None


def _spamassassin_score(value: str) -> float | None:
    """``Yes, score=7.3 required=5.0 tests=...`` (older versions write hits=)."""
    for item in value.replace(",", " ").split():
        key, _, number = item.partition("=")
        if key.lower() in ("score", "hits"):
            return _number(number)
    return None


def _rspamd_parts(value: str) -> tuple[str, str] | None:
    """``default: False [3.40 / 15.00]; ...`` -> ("False", "3.40 / 15.00")."""
    head = value.split(";", 1)[0]
    _, colon, rest = head.partition(":")
    flag, bracket, bounds = rest.partition("[")
    if not colon or not bracket:
        return None
    return flag.strip(), bounds.partition("]")[0]


def _rspamd_score(value: str) -> float | None:
    parts = _rspamd_parts(value)
    return _number(parts[1].partition("/")[0]) if parts is not None else None


def _rspamd_flag(value: str) -> bool | None:
    parts = _rspamd_parts(value)
    return _yes_no(parts[0]) if parts is not None else None


def _yes_no(value: str) -> bool | None:
    word = value.replace(",", " ").split(maxsplit=1)
    answer = word[0].lower() if word else ""
    if answer in ("yes", "true"):
        return True
    if answer in ("no", "false"):
        return False
    return None


def _scl(fields: _Fields) -> int | None:
    """The organization SCL header, else the SCL: entry of X-Forefront-Antispam-Report."""
    for name, value in fields:
        if name == "x-ms-exchange-organization-scl":
            scl = _scl_value(value)
            if scl is not None:
                return scl
    for name, value in fields:
        if name == "x-forefront-antispam-report":
            for entry in value.split(";"):
                key, _, number = entry.partition(":")
                if key.strip().upper() == "SCL":
                    scl = _scl_value(number)
                    if scl is not None:
                        return scl
    return None


def _scl_value(text: str) -> int | None:
    text = text.strip()
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 2):
        return None
    scl = int(text)
    return scl if -1 <= scl <= 9 else None
