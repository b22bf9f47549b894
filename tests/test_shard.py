"""Which shard owns a relay: a stable rendezvous hash that moves few relays when the number
of shards changes, one-line errors for bad flags, and the part of a config a shard runs."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.config import Shard, ShardError, config_for_shard, resolve_shard
from exporter.config.shard import shard_of
from exporter.dns import DNSManager, DNSStore
from tests.conftest import make_config

NAMES = [f"relay-{i:04d}" for i in range(1000)]


def test_going_from_three_to_four_shards_moves_about_a_quarter() -> None:
    """Adding a fourth shard moves only the relays the new shard takes (about 1/4), never
    relays between the old shards; a modulo hash would move about 3/4."""
    before = {n: shard_of(n, 3) for n in NAMES}
    after = {n: shard_of(n, 4) for n in NAMES}
    moved = [n for n in NAMES if before[n] != after[n]]
    fraction = len(moved) / len(NAMES)
    print(f"3 -> 4 shards over {len(NAMES)} relays: {fraction:.3f} moved")
    assert fraction <= 0.30
    assert all(after[n] == 3 for n in moved)


def test_shards_are_balanced_and_stable_across_processes() -> None:
    """Each of 3 shards takes about a third of 1,000 relays, and the assignment is pinned:
    a new release (or Python's salted hash()) must not reshuffle a running fleet."""
    counts = [sum(1 for n in NAMES if shard_of(n, 3) == i) for i in range(3)]
    assert all(280 <= c <= 390 for c in counts), counts
    assert [shard_of(n, 3) for n in ("relay-0000", "relay-0001", "relay-0003")] == [0, 2, 1]
    assert shard_of("smtp.example.com", 7) == 2
    assert {shard_of(n, 1) for n in NAMES} == {0}


def test_canary_tokens_and_state_carry_the_shard() -> None:
    """Shards of one instance tag their canaries apart (as locations do); one shard keeps
    today's tag."""
    config = make_config({"name": "a", "port": 25, "tls": "none"}, instance="prod")
    assert config_for_shard(config, Shard()).canary_instance == "prod"
    sharded = config_for_shard(config, Shard(1, 3))
    assert sharded.canary_instance == "prod.shard1"


@pytest.mark.parametrize(("flags", "env", "message"), [
    (("3", "3"), {}, "--shard 3: out of range for --total-shards 3; use 0 to 2"),
    (("-1", "2"), {}, "--shard -1: out of range for --total-shards 2; use 0 to 1"),
    ((None, "0"), {}, "--total-shards 0: there must be at least one shard; use 1 or more"),
    (("one", "2"), {}, "--shard one: not a whole number; number the shards 0 to 1"),
    (("1", None), {}, "--shard 1: without --total-shards (or $SMTP_CANARY_TOTAL_SHARDS) "
                      "there is one shard, 0; set how many shards run"),
    ((None, None), {"SMTP_CANARY_SHARD": "4", "SMTP_CANARY_TOTAL_SHARDS": "2"},
     "$SMTP_CANARY_SHARD=4: out of range for $SMTP_CANARY_TOTAL_SHARDS=2; use 0 to 1"),
    ((None, None), {"SMTP_CANARY_TOTAL_SHARDS": "x"},
     "$SMTP_CANARY_TOTAL_SHARDS=x: not a whole number; give how many shards run, "
     "e.g. --total-shards 3"),
])
def test_bad_shard_values_name_the_flag_and_the_fix(
        flags: tuple[str | None, str | None], env: dict[str, str], message: str) -> None:
    """Every bad value is refused with one line that names the flag or variable and the fix."""
    with pytest.raises(ShardError) as caught:
        resolve_shard(*flags, env)
    assert str(caught.value) == message


def test_flags_win_over_the_environment() -> None:
    """--shard and --total-shards win over their variables; nothing set is shard 0 of 1."""
    env = {"SMTP_CANARY_SHARD": "5", "SMTP_CANARY_TOTAL_SHARDS": "9"}
    assert resolve_shard("1", "2", env) == Shard(1, 2)
    assert resolve_shard(None, None, env) == Shard(5, 9)
    assert resolve_shard(None, None, {}) == Shard(0, 1)


def _shard_config() -> Any:
    canary = {"from": "probe@sender.example.com", "to": [{"address": "c@example.org",
                                                      "mailbox": "shared"}]}
    relays = [{"name": n, "port": 25, "tls": "none", **({"canary": canary} if c else {})}
              for n, c in (("beta", True), ("alpha", True), ("gamma", False))]
    box = {"host": "127.0.0.1", "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}
    return make_config(*relays, mailboxes=[{"name": "shared", **box},
                                           {"name": "spare", **box}],
                       domains=[{"name": "example.net"}])


def test_a_shard_runs_its_relays_their_mailboxes_and_its_domains() -> None:
    """A shard keeps its relays, watches a mailbox if one of its canaries goes there (an
    unused mailbox on one shard only), and checks the domains that hash to it; shard 0 of 1
    runs the config unchanged."""
    config = _shard_config()
    assert config_for_shard(config, Shard()).relays == config.relays
    parts = [config_for_shard(config, Shard(i, 2)) for i in range(2)]
    assert [sorted(r.name for r in p.relays) for p in parts] == [["beta"], ["alpha", "gamma"]]
    assert [[m.name for m in p.mailboxes] for p in parts] == [["shared", "spare"], ["shared"]]
    domains = [{d.name for d in p.domains} for p in parts]
    assert domains[0] | domains[1] == {"example.net", "sender.example.com"}
    assert not domains[0] & domains[1]


async def test_each_sending_domain_is_checked_by_one_shard() -> None:
    """A canary's From domain is checked once across the shards, by the shard it hashes to,
    even when relays on other shards send from it; relay DNS checks go with the relay."""
    config = _shard_config()
    checked: list[set[str]] = []
    for i in range(2):
        store = DNSStore()
        manager = DNSManager(store)
        manager.first_spread = 1e9  # no check needs to run: what is scheduled is the point
        manager.apply(config_for_shard(config, Shard(i, 2)))
        snap = store.snapshot()
        checked.append(set(snap.domains))
        assert set(snap.relays) == {r.name for r in config_for_shard(config, Shard(i, 2)).relays}
        await manager.stop()
    assert checked[0] | checked[1] == {"example.net", "sender.example.com"}
    assert not checked[0] & checked[1]
