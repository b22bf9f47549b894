"""One shard's part of a config: its relays (with their canaries and relay DNS checks), the
mailboxes those canaries go to, and the sending domains whose hash falls on it."""

from __future__ import annotations

from dataclasses import replace

from exporter.config.dnschecks import check_domains
from exporter.config.model import Config
from exporter.config.shard import Shard

__all__ = ["config_for_shard"]


def config_for_shard(config: Config, shard: Shard) -> Config:
    """The config one shard runs; shard 0 of 1 runs all of it, unchanged.

    A mailbox is watched by every shard with a canary for it; a mailbox no relay sends to is
    watched by the shard its name hashes to, so it is still watched once. ``domains`` lists
    the shard's sending domains, the configured ones and the canaries' From domains alike."""
    if not shard.sharded:
        return replace(config, shard=shard)
    relays = tuple(r for r in config.relays if shard.owns(r.name))
    targeted = {t.mailbox for r in config.relays if r.canary for t in r.canary.to}
    mine = {t.mailbox for r in relays if r.canary for t in r.canary.to}
    mailboxes = tuple(m for m in config.mailboxes
                      if m.name in mine or (m.name not in targeted and shard.owns(m.name)))
    domains = tuple(d for d in check_domains(config.domains, config.relays)
                    if shard.owns(d.name))
    return replace(config, relays=relays, mailboxes=mailboxes, domains=domains, shard=shard)
