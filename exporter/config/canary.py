"""A relay's canary block: who sends canaries, which mailboxes read them back, how often."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from functools import partial

from exporter.config.model import CanaryConfig, CanaryTarget
from exporter.config.reader import Problems, Reader, as_mapping, check_keys, join
from exporter.config.values import (
    describe,
    duration_text,
    kind,
    to_address,
    to_int,
    to_long_duration,
    to_str,
    to_timeout,
)

__all__ = ["parse_canary"]

_CANARY_KEYS = ("from", "to", "interval", "timeout", "max_per_day")
_CANARY_SPECIAL = {"sender": "unknown key; the sender address is set with from:"}
_TARGET_KEYS = ("address", "mailbox")
_DAY = 86400
_MIN_INTERVAL = 10.0
_TO_HELP = "list at least one recipient as {address: ..., mailbox: ...}"


def parse_canary(
    value: object, path: str, mailboxes: Sequence[str], problems: Problems
) -> CanaryConfig | None:
    """The canary block at ``path``, or None when there is none (or it is not a mapping).

    Each recipient's mailbox must be one of ``mailboxes``, the configured mailbox names.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.error(path, f"expected a mapping of canary settings, got {kind(value)}")
        return None
    block = as_mapping(value, path, problems, "canary settings")
    check_keys(block, path, _CANARY_KEYS, problems, _CANARY_SPECIAL)
    reader = Reader(((block, path),), problems)
    sender = reader.get("from", to_address, "")
    if not reader.is_set("from"):
        problems.error(reader.at("from"), "missing; set the address canaries are sent from")
    targets = _parse_targets(block.get("to"), reader.at("to"), mailboxes, problems)
    to_interval = partial(to_long_duration, what="interval", minimum=_MIN_INTERVAL)
    interval = reader.get("interval", to_interval, None)
    max_per_day = reader.get("max_per_day", _to_max_per_day, None)
    interval_valid = interval is not None or not reader.is_set("interval")
    interval = 300.0 if interval is None else interval
    if max_per_day is not None and interval_valid:
        _check_rate(reader, interval, max_per_day)
    return CanaryConfig(
        sender=sender,
        to=targets,
        interval=interval,
        timeout=reader.get("timeout", partial(to_timeout, example="10m"), 600.0),
        max_per_day=max_per_day,
    )


def _parse_targets(
    value: object, path: str, mailboxes: Sequence[str], problems: Problems
) -> tuple[CanaryTarget, ...]:
    if value is None or value == []:
        problems.error(path, f"{'missing' if value is None else 'empty'}; {_TO_HELP}")
        return ()
    if not isinstance(value, list):
        problems.error(path, f"expected a list of recipients, got {describe(value)}; {_TO_HELP}")
        return ()
    targets: list[CanaryTarget] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(value):
        target = _parse_target(item, f"{path}[{index}]", mailboxes, seen, problems)
        if target is not None:
            targets.append(target)
    return tuple(targets)


def _parse_target(
    value: object,
    path: str,
    mailboxes: Sequence[str],
    seen: dict[str, str],
    problems: Problems,
) -> CanaryTarget | None:
    if not isinstance(value, Mapping):
        problems.error(path, f"expected a mapping with address and mailbox, got {kind(value)}")
        return None
    block = as_mapping(value, path, problems, "recipient settings")
    check_keys(block, path, _TARGET_KEYS, problems)
    reader = Reader(((block, path),), problems)
    address = reader.get("address", to_address, "")
    if not reader.is_set("address"):
        problems.error(reader.at("address"), "missing; set the address the canary is sent to")
    elif address and address.lower() in seen:
        problems.error(
            reader.at("address"),
            f'"{address}" is listed twice (also {seen[address.lower()]}); list each recipient once',
        )
    elif address:
        seen[address.lower()] = path
    mailbox = reader.get("mailbox", to_str, "")
    if not reader.is_set("mailbox"):
        problems.error(
            reader.at("mailbox"), "missing; name the mailbox under mailboxes: that receives it"
        )
    elif mailbox and mailbox not in mailboxes:
        problems.error(reader.at("mailbox"), _unknown_mailbox(mailbox, mailboxes))
    elif mailbox and f"mailbox:{mailbox}" in seen:
        # One canary reaches a mailbox once; its metrics are per relay and mailbox.
        problems.error(
            reader.at("mailbox"),
            f"{mailbox} already receives this canary (also {seen[f'mailbox:{mailbox}']}); "
            "send to each mailbox through one address",
        )
    elif mailbox:
        seen[f"mailbox:{mailbox}"] = path
    return CanaryTarget(address, mailbox)


def _unknown_mailbox(name: str, mailboxes: Sequence[str]) -> str:
    if not mailboxes:
        return f'no mailbox named "{name}"; add it under mailboxes:'
    close = difflib.get_close_matches(name, mailboxes, n=1)
    if close:
        return f'no mailbox named "{name}"; did you mean {close[0]}?'
    return f'no mailbox named "{name}"; configured mailboxes: {", ".join(mailboxes)}'


def _to_max_per_day(value: object) -> int:
    number = to_int(value)
    if number < 1:
        raise ValueError(f"{number} is too small; use 1 or more")
    return number


def _check_rate(reader: Reader, interval: float, max_per_day: int) -> None:
    """The schedule's canaries a day, ceil(86400 / interval), must not exceed max_per_day."""
    per_day = math.ceil(round(_DAY / interval, 6))
    if per_day <= max_per_day:
        return
    slowest = math.ceil(round(_DAY / max_per_day, 6))
    reader.problems.error(
        join(reader.path, "interval"),
        f"{duration_text(interval)} sends {per_day} canaries a day, above max_per_day "
        f"{max_per_day}; raise interval to at least {duration_text(slowest)}",
    )
