"""The known-replies table: loaded and checked once at import, scanned only on failures."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from typing import Any

import yaml

from exporter.config import lookup_preset, preset_names
from exporter.model import HINTS, Phase, Reason

__all__ = ["Diagnosis", "Entry", "KnownReplyError", "diagnose", "load_entries"]

_KEYS = {"id", "code", "status", "text", "phases", "presets", "hint", "source"}
_ID = re.compile(r"[a-z][a-z0-9_]{2,63}")
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
# The enhanced status code of a reply (RFC 3463), after its basic code.
_REPLY_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
# A repeated group ("(a+)+", "(?:ab)*"): the way backtracking blows up; groups may be optional.
_NESTED = re.compile(r"\)[*+{]")
MAX_PATTERN = 200
MAX_HINT = 200  # with a preset's note first, still under the 300 of a metric label


class KnownReplyError(ValueError):
    """known_replies.yaml is malformed; the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One known reply: what it looks like, where it comes, and what to do."""

    id: str
    hint: str
    code: int | None
    status: str | None
    text: re.Pattern[str] | None
    phases: frozenset[Phase]
    presets: tuple[str, ...]

    def matches(self, code: int, status: str | None, reply: str, phase: Phase | None,
                preset: str | None) -> bool:
        if self.code is not None and self.code != code:
            return False
        if self.status is not None and self.status != status:
            return False
        if self.phases and phase not in self.phases:
            return False
        if self.presets and not (preset and any(fnmatchcase(preset, p) for p in self.presets)):
            return False
        return self.text is None or self.text.search(reply) is not None


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A failure's cause id ("" when no entry matched) and the hint a person acts on."""

    cause: str
    hint: str


def _pattern(where: str, text: Any) -> re.Pattern[str]:
    if not isinstance(text, str) or not text or len(text) > MAX_PATTERN:
        raise KnownReplyError(f"{where}: text must be a regex of 1 to {MAX_PATTERN} characters")
    if _NESTED.search(text) or re.search(r"\\[1-9]", text):
        raise KnownReplyError(f"{where}: text has nested quantifiers or a backreference; "
                              "write a pattern that matches in linear time")
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        raise KnownReplyError(f"{where}: text is not a valid regex: {exc}") from None


def _entry(index: int, raw: Any, seen: set[str]) -> Entry:
    where = f"known_replies.yaml entry {index + 1}"
    if not isinstance(raw, dict):
        raise KnownReplyError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise KnownReplyError(f"{where}: unknown key {unknown[0]}; valid keys are "
                              f"{', '.join(sorted(_KEYS))}")
    ident = raw.get("id")
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise KnownReplyError(f"{where}: id must be lower_snake_case, 3 to 64 characters")
    where = f"known_replies.yaml {ident}"
    if ident in seen:
        raise KnownReplyError(f"{where}: duplicate id")
    seen.add(ident)
    hint = raw.get("hint")
    if not isinstance(hint, str) or not hint.strip() or len(hint) > MAX_HINT or "\n" in hint:
        raise KnownReplyError(f"{where}: hint must be one line of 1 to {MAX_HINT} characters")
    code = raw.get("code")
    if code is not None and (not isinstance(code, int) or not 400 <= code <= 599):
        raise KnownReplyError(f"{where}: code must be a 4xx or 5xx reply code")
    status = raw.get("status")
    if status is not None and (not isinstance(status, str) or not _STATUS.fullmatch(status)):
        raise KnownReplyError(f"{where}: status must be an enhanced status code like 5.7.8")
    text = None if raw.get("text") is None else _pattern(where, raw["text"])
    if code is None and status is None and text is None:
        raise KnownReplyError(f"{where}: set at least one of code, status, text")
    phases = raw.get("phases", [])
    try:
        phase_set = frozenset(Phase(p) for p in phases)
    except (TypeError, ValueError):
        raise KnownReplyError(f"{where}: phases must list SMTP phases ("
                              f"{', '.join(p.value for p in Phase)})") from None
    presets = raw.get("presets", [])
    if not isinstance(presets, list) or not all(
            isinstance(p, str) and (lookup_preset(p) or p == "ses-*") for p in presets):
        raise KnownReplyError(f"{where}: presets must list preset names ("
                              f"{', '.join(preset_names())}, or ses-*)")
    return Entry(ident, hint.strip(), code, status, text, phase_set, tuple(presets))


def load_entries(text: str) -> tuple[Entry, ...]:
    """Parse and check a known-replies document; any mistake is a KnownReplyError."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KnownReplyError(f"known_replies.yaml is not valid YAML: {exc}") from None
    if not isinstance(doc, list):
        raise KnownReplyError("known_replies.yaml must be a list of entries")
    seen: set[str] = set()
    return tuple(_entry(i, raw, seen) for i, raw in enumerate(doc))


ENTRIES = load_entries(
    resources.files("exporter.diagnosis").joinpath("known_replies.yaml").read_text("utf-8"))
_CODE = re.compile(r"([45]\d\d)[ -]")


def diagnose(reason: Reason, phase: Phase | None, reply: str | None, *,
             preset: str | None = None, hint: str | None = None,
             entries: tuple[Entry, ...] = ENTRIES) -> Diagnosis:
    """The cause and hint of a failure: the first entry matching its 4xx/5xx reply, else
    cause "" and ``hint`` (or the reason's generic hint); a credential failure puts the
    preset's note first."""
    found: Entry | None = None
    head = _CODE.match(reply + " ") if reply else None
    if head is not None and reply is not None:
        code = int(head.group(1))
        status = _REPLY_STATUS.search(reply, 4, 40)
        status_text = status.group(1) if status else None
        found = next((e for e in entries
                      if e.matches(code, status_text, reply, phase, preset)), None)
    text = found.hint if found else (hint or HINTS[reason])
    if reason is Reason.AUTH_FAILED and preset and not (found and found.presets):
        known = lookup_preset(preset)
        if known is not None:
            text = f"{preset}: {known.notes}; {text}"
    return Diagnosis(found.id if found else "", text)
