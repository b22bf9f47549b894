"""The shard flags of ``run`` and ``check-config``, and check-config's list of a shard's
relays."""

from __future__ import annotations

import argparse
import os
import sys

from exporter.config import (
    SHARD_ENV,
    TOTAL_SHARDS_ENV,
    Config,
    Shard,
    ShardError,
    config_for_shard,
    resolve_shard,
)

__all__ = ["add_shard_flags", "format_shard", "shard_or_report"]


def add_shard_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", dest="shard", default=None, metavar="I",
                   help="which shard of the relays this process takes, 0 to N-1; each relay "
                        "belongs to one shard by a hash of its name "
                        f"(default: ${SHARD_ENV}, else 0)")
    p.add_argument("--total-shards", dest="total_shards", default=None, metavar="N",
                   help="how many shards split the relays; every shard runs the same config "
                        f"(default: ${TOTAL_SHARDS_ENV}, else 1: no sharding)")


def shard_or_report(args: argparse.Namespace) -> Shard | None:
    """The shard the flags (else the environment) ask for; a bad value is one line on
    stderr and None."""
    try:
        return resolve_shard(args.shard, args.total_shards, os.environ)
    except ShardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def format_shard(config: Config, shard: Shard) -> str:
    """What one shard of the config runs: how many relays of how many, then each relay, and
    the mailboxes it watches and the domains it checks."""
    part = config_for_shard(config, shard)
    count, of = len(part.relays), len(config.relays)
    lines = [f"{shard}: {count} of {of} relay{'' if of == 1 else 's'}"]
    lines += [f"  {relay.name}" for relay in part.relays]
    if part.mailboxes:
        lines.append("mailboxes watched: " + ", ".join(m.name for m in part.mailboxes))
    if shard.sharded and part.domains:
        lines.append("domains checked: " + ", ".join(d.name for d in part.domains))
    return "\n".join(lines) + "\n"
