"""Shards: which of N exporter processes owns a relay, by rendezvous (highest random weight)
hashing of its name, so going from N to N+1 shards moves only about 1/(N+1) of the relays."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ONE_SHARD",
    "SHARD_ENV",
    "TOTAL_SHARDS_ENV",
    "Shard",
    "ShardError",
    "resolve_shard",
    "shard_of",
]

SHARD_ENV = "SMTP_CANARY_SHARD"
TOTAL_SHARDS_ENV = "SMTP_CANARY_TOTAL_SHARDS"


class ShardError(ValueError):
    """A shard flag or variable is unusable; str() is one line naming it and the fix."""


def _weight(name: str, index: int) -> int:
    """The name's score on one shard: a stable hash (the same in every process and
    release, unlike Python's salted ``hash()``)."""
    digest = hashlib.blake2b(f"{index}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(name: str, total: int) -> int:
    """The shard (0 to total-1) that owns ``name``: the one where it scores highest."""
    if total <= 1:
        return 0
    return max(range(total), key=lambda index: _weight(name, index))


@dataclass(frozen=True, slots=True)
class Shard:
    """This process's shard: ``index`` of ``total`` (0 of 1, the default, owns everything)."""

    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1 or not 0 <= self.index < self.total:
            raise ShardError(f"shard {self.index} of {self.total}: use 0 to total-1, total >= 1")

    @property
    def sharded(self) -> bool:
        return self.total > 1

    def owns(self, name: str) -> bool:
        return shard_of(name, self.total) == self.index

    @property
    def tag(self) -> str:
        """What canary tokens and the state file add for this shard ("" when not sharded)."""
        return f"shard{self.index}" if self.sharded else ""

    def __str__(self) -> str:
        return f"shard {self.index} of {self.total}"


ONE_SHARD = Shard()  # no sharding: shard 0 of 1 runs everything


def _pick(flag: str | None, flag_name: str, env_name: str,
          environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(value, how to name where it came from) from the flag, else the variable, else None."""
    if flag is not None:
        return flag, f"{flag_name} {flag}"
    value = environ.get(env_name, "")
    return (value, f"${env_name}={value}") if value.strip() else None


def _whole(value: str, source: str, fix: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ShardError(f"{source}: not a whole number; {fix}") from None


def resolve_shard(index: str | None, total: str | None,
                  environ: Mapping[str, str]) -> Shard:
    """The shard from ``--shard``/``--total-shards`` (``None``: not given), else from
    $SMTP_CANARY_SHARD/$SMTP_CANARY_TOTAL_SHARDS, else 0 of 1. Raises ShardError."""
    total_given = _pick(total, "--total-shards", TOTAL_SHARDS_ENV, environ)
    index_given = _pick(index, "--shard", SHARD_ENV, environ)
    count = 1
    if total_given is not None:
        count = _whole(*total_given, "give how many shards run, e.g. --total-shards 3")
        if count < 1:
            raise ShardError(f"{total_given[1]}: there must be at least one shard; "
                             "use 1 or more")
    number = 0
    if index_given is not None:
        number = _whole(*index_given, f"number the shards 0 to {count - 1}"
                        if count > 1 else "use 0, 1, ... below --total-shards")
        if total_given is None and number != 0:
            raise ShardError(f"{index_given[1]}: without --total-shards (or "
                             f"${TOTAL_SHARDS_ENV}) there is one shard, 0; set how many "
                             "shards run")
        if total_given is not None and not 0 <= number < count:
            raise ShardError(f"{index_given[1]}: out of range for {total_given[1]}; "
                             f"use 0 to {count - 1}")
    return Shard(number, count)
