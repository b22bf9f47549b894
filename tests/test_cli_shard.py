"""Shards as a user runs them: three real `run` processes over one config split the relays
between them, each says which shard it is, and check-config lists a shard's relays."""

from __future__ import annotations

import functools
import json
import ssl
from pathlib import Path
from typing import Any

from tests.conftest import auth, write_config
from tests.helpers import http, samples, value, wait_for
from tests.servers.loop import ServerLoop
from tests.servers.smtp import start_relay
from tests.test_cli import Daemon, daemons, port_from_log, run_cli

__all__ = ["daemons"]  # the fixture, used by name

NAMES = [f"relay-{i:02d}" for i in range(12)]


def _relays(port: int, ca_file: str, names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "port": port, "tls": "starttls", "ca_file": ca_file,
             "auth": auth("plain"), "interval": "3s", "timeout": "2s"} for n in names]


def _relays_on(text: str) -> set[str]:
    return {dict(labels)["relay"] for (name, labels) in samples(text)
            if name == "smtp_relay_info"}


def _metrics(base: str) -> str:
    return http(base + "/metrics")[1]


def _all_probed(base: str, relays: set[str]) -> bool:
    text = _metrics(base)
    return all(value(text, "smtp_probe_success", relay=r) == 1 for r in relays)


def test_three_shards_split_the_relays(tmp_path: Path, server_loop: ServerLoop,
                                       server_ctx: ssl.SSLContext, ca_file: str,
                                       daemons: list[Daemon]) -> None:
    """Three processes (flags, flags over conflicting variables, variables alone) over one
    config: each probes and exports its own relays, none is empty, none overlaps, together
    they are all relays; each says its shard in /metrics, the status page, status.json and
    its start-up log; a reload keeps every process on its shard."""
    relay = start_relay(server_loop, ctx=server_ctx)
    cfg = write_config(tmp_path / "c.yaml", *_relays(relay.port, ca_file, NAMES),
                       state_dir=str(tmp_path / "state"))
    common = ["run", "--config.file", str(cfg), "--web.listen-address", "127.0.0.1:0"]
    envs: list[tuple[list[str], dict[str, str]]] = [
        (["--shard", "0", "--total-shards", "3"], {}),
        (["--shard", "1", "--total-shards", "3"],
         {"SMTP_CANARY_SHARD": "2", "SMTP_CANARY_TOTAL_SHARDS": "5"}),
        ([], {"SMTP_CANARY_SHARD": "2", "SMTP_CANARY_TOTAL_SHARDS": "3"}),
    ]
    for i, (flags, env) in enumerate(envs):
        daemons.append(Daemon([*common, *flags], tmp_path / f"shard{i}.log", env=env))
    bases = [f"http://127.0.0.1:{port_from_log(d)}" for d in daemons]

    owned = [_relays_on(_metrics(base)) for base in bases]
    assert all(owned), owned
    assert set().union(*owned) == set(NAMES)
    assert sum(len(o) for o in owned) == len(NAMES)
    for i, (base, mine) in enumerate(zip(bases, owned, strict=True)):
        wait_for(functools.partial(_all_probed, base, mine), what=f"shard {i} probing",
                 timeout=15)
        text = _metrics(base)
        assert value(text, "smtp_exporter_shard_info", shard=str(i), total_shards="3") == 1
        assert not any(n in text for n in set(NAMES) - mine)
        assert f"shard <b>{i} of 3</b>" in http(base + "/")[1]
        doc = json.loads(http(base + "/status.json")[1])
        assert {r["relay"] for r in doc} == mine
        assert {(r["shard"], r["total_shards"]) for r in doc} == {(i, 3)}
        assert f"shard={i} total_shards=3" in daemons[i].text()

    more = [*NAMES, *(f"extra-{i}" for i in range(6))]
    write_config(cfg, *_relays(relay.port, ca_file, more), state_dir=str(tmp_path / "state"))
    answers = [http(base + "/-/reload", method="POST") for base in bases]
    assert [a[0] for a in answers] == [200, 200, 200]
    assert [a[1].strip().endswith(f"(shard {i} of 3)") for i, a in enumerate(answers)] == [
        True] * 3
    after = [_relays_on(_metrics(base)) for base in bases]
    assert set().union(*after) == set(more) and sum(len(o) for o in after) == len(more)
    assert all(before <= now for before, now in zip(owned, after, strict=True))


def test_check_config_lists_a_shards_relays(tmp_path: Path, ca_file: str) -> None:
    """check-config --shard I --total-shards N says how many of how many relays the shard
    takes and names each; without the flags its output is as before."""
    cfg = write_config(tmp_path / "c.yaml", *_relays(2525, ca_file, NAMES))
    listed = []
    for i in range(3):
        out = run_cli("check-config", "--config.file", str(cfg), "--shard", str(i),
                      "--total-shards", "3")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == f"{cfg}: OK, 12 relays"
        names = [line.strip() for line in lines[2:]]
        assert lines[1] == f"shard {i} of 3: {len(names)} of 12 relays"
        listed.append(set(names))
    assert set().union(*listed) == set(NAMES) and sum(map(len, listed)) == 12
    plain = run_cli("check-config", "--config.file", str(cfg))
    assert plain.stdout == f"{cfg}: OK, 12 relays\n"


def test_bad_shard_flags_are_one_line(tmp_path: Path, ca_file: str) -> None:
    """A shard out of range, a total below one, or garbage in a variable: exit 2 with one
    line that names the flag or variable and the fix, before anything starts."""
    cfg = write_config(tmp_path / "c.yaml", *_relays(2525, ca_file, NAMES[:2]))
    cases = [
        (["run", "--shard", "3", "--total-shards", "3"], {},
         "error: --shard 3: out of range for --total-shards 3; use 0 to 2"),
        (["run"], {"SMTP_CANARY_SHARD": "first", "SMTP_CANARY_TOTAL_SHARDS": "2"},
         "error: $SMTP_CANARY_SHARD=first: not a whole number; number the shards 0 to 1"),
        (["check-config", "--total-shards", "0"], {},
         "error: --total-shards 0: there must be at least one shard; use 1 or more"),
    ]
    for args, env, line in cases:
        out = run_cli(*args, "--config.file", str(cfg), env=env)
        assert (out.returncode, out.stderr, out.stdout) == (2, line + "\n", "")
