"""Every known provider reply, replayed by a loopback SMTP server in the phase it comes in,
gives its stable cause and a hint naming the fix; unknown replies keep the generic hint."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.canary.send import send_canary
from exporter.config.model import CanaryConfig, CanaryTarget
from exporter.config.presets import PRESETS
from exporter.diagnosis import KnownReplyError, diagnose, load_entries
from exporter.diagnosis.known import ENTRIES, MAX_HINT
from exporter.model import HINTS, Phase, Reason
from exporter.relay.probe import probe_relay
from tests.conftest import auth, make_relay
from tests.servers.loop import ServerLoop
from tests.servers.scripted import EHLO_REPLY, start_scripted

DATA = json.loads((Path(__file__).parent.parent / "data" / "provider-replies.json").read_text())
REPLIES: list[dict[str, Any]] = DATA["replies"]
HINT_OF = {entry.id: entry.hint for entry in ENTRIES}


def replaying(phase: str, lines: list[str]) -> Any:
    """A server that says ``lines`` (one SMTP reply) in ``phase`` and OK everywhere else."""
    reply = "".join(f"{line}\r\n" for line in lines).encode()
    ok = {b"EHLO": EHLO_REPLY, b"AUTH": b"235 2.7.0 ok\r\n", b"MAIL": b"250 2.1.0 ok\r\n",
          b"RCPT": b"250 2.1.5 ok\r\n", b"DATA": b"354 go ahead\r\n", b"RSET": b"250 ok\r\n"}
    step = {"auth": b"AUTH", "mail": b"MAIL", "rcpt": b"RCPT"}.get(phase)
    if step is not None:
        ok[step] = reply

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(reply if phase == "greeting" else b"220 replay.example.test ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            writer.write(ok.get(verb, b"502 5.5.2 unknown\r\n"))
            await writer.drain()
            if verb == b"DATA":
                while await reader.readline() not in (b".\r\n", b""):
                    pass
                writer.write(reply if phase == "data" else b"250 2.0.0 queued\r\n")
                await writer.drain()

    return handler


def _relay(port: int, case: dict[str, Any]) -> Any:
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": port, "tls": "none",
                              "timeout": "3s"}
    if case["preset"]:
        fields["preset"] = case["preset"]
    if case["phase"] == "auth":
        fields.update(auth=auth("plain"), allow_plaintext_auth=True)
    if case["phase"] in ("mail", "rcpt"):
        fields["rcpt_check"] = "rcpt@example.test"
    return make_relay(**fields)


@pytest.mark.parametrize("case", REPLIES, ids=[f"{c['cause']}-{c['phase']}-{i}"
                                               for i, c in enumerate(REPLIES)])
async def test_a_known_reply_gives_its_cause_and_fix(
    server_loop: ServerLoop, case: dict[str, Any]
) -> None:
    """A provider's documented reply, in its phase, is diagnosed as its cause with its fix."""
    port = start_scripted(server_loop, replaying(case["phase"], case["reply"]))
    relay = _relay(port, case)
    if case["phase"] == "data":
        canary = CanaryConfig(sender="canary@example.test",
                              to=(CanaryTarget("to@example.test", "box"),))
        result: Any = await send_canary(relay, canary, instance="t")
    else:
        result = await probe_relay(relay)
    assert result.success is False
    assert result.failed_phase is Phase(case["phase"])
    assert result.cause == case["cause"], result.reply
    assert HINT_OF[case["cause"]] in result.hint


def test_every_known_reply_has_a_replayed_wording() -> None:
    """No entry of known_replies.yaml is unproven: each has a sourced wording replayed above."""
    replayed = {case["cause"] for case in REPLIES}
    assert {entry.id for entry in ENTRIES} - replayed == set()
    assert replayed - set(HINT_OF) == set()
    assert all(case["source"].startswith("http") for case in REPLIES)


async def test_an_unknown_reply_keeps_the_generic_hint(server_loop: ServerLoop) -> None:
    """A reply no entry knows keeps the reason's generic hint and the cause ""."""
    port = start_scripted(server_loop, replaying("auth", ["535 5.7.8 Error: nope"]))
    result = await probe_relay(make_relay(host="127.0.0.1", port=port, tls="none",
                                          auth=auth("plain"), allow_plaintext_auth=True))
    assert result.reason is Reason.AUTH_FAILED
    assert (result.cause, result.hint) == ("", HINTS[Reason.AUTH_FAILED])


async def test_a_credential_failure_shows_the_presets_note_first(
    server_loop: ServerLoop
) -> None:
    """auth_failed through a preset starts with the preset's note, then the generic hint."""
    port = start_scripted(server_loop, replaying("auth", ["535 5.7.8 Error: nope"]))
    result = await probe_relay(make_relay(preset="socketlabs", host="127.0.0.1", port=port,
                                          tls="none", auth=auth("plain"),
                                          allow_plaintext_auth=True))
    assert result.cause == ""
    assert result.hint == (f"socketlabs: SMTP credentials from the server's settings; "
                           f"{HINTS[Reason.AUTH_FAILED]}")


def test_every_hint_fits_the_metric_label() -> None:
    """The longest preset note before the longest hint stays within the 300-character label."""
    longest_note = max(len(f"{p.name}: {p.notes}; ") for p in PRESETS.values())
    assert longest_note + MAX_HINT <= 300
    assert all(len(entry.hint) <= MAX_HINT for entry in ENTRIES)


@pytest.mark.parametrize(("doc", "says"), [
    ("- {id: a_b, text: x, hint: h, colour: red}", "unknown key colour"),
    ("- {id: a_b, text: x, hint: h}\n- {id: a_b, code: 550, hint: h}", "a_b: duplicate id"),
    ("- {id: a_b, text: '(unclosed', hint: h}", "a_b: text is not a valid regex"),
    ("- {id: a_b, text: '(a+)+$', hint: h}", "a_b: text has nested quantifiers"),
    ("- {id: a_b, text: '(x)\\1', hint: h}", "a_b: text has nested quantifiers or a backref"),
    ("- {id: a_b, hint: h}", "a_b: set at least one of code, status, text"),
    ("- {id: a_b, code: 250, hint: h}", "a_b: code must be a 4xx or 5xx"),
    ("- {id: a_b, status: '5.7', hint: h}", "a_b: status must be an enhanced status code"),
    ("- {id: a_b, code: 550, phases: [later], hint: h}", "a_b: phases must list SMTP phases"),
    ("- {id: a_b, code: 550, presets: [gmial], hint: h}", "a_b: presets must list preset"),
    ("- {id: A-B, code: 550, hint: h}", "entry 1: id must be lower_snake_case"),
])
def test_a_malformed_table_is_refused_naming_the_field(doc: str, says: str) -> None:
    """Unknown keys, duplicate ids, bad or slow regexes and unknown names fail loading."""
    with pytest.raises(KnownReplyError) as err:
        load_entries(doc)
    assert says in str(err.value)


def test_matching_a_failure_costs_microseconds() -> None:
    """A miss scans the whole precompiled table in well under a millisecond."""
    reply = "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown " * 4
    runs = 2000
    start = time.perf_counter()
    for _ in range(runs):
        found = diagnose(Reason.REJECTED_PERMANENT, Phase.RCPT, reply, preset="gmail")
    per_failure = (time.perf_counter() - start) / runs
    assert found.cause == ""
    assert per_failure < 0.001


def test_the_wheel_ships_the_table() -> None:
    """pyproject's package data names known_replies.yaml, so an installed exporter loads it."""
    import tomllib

    root = Path(__file__).resolve().parent.parent.parent
    with (root / "pyproject.toml").open("rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["exporter"]
    assert "diagnosis/known_replies.yaml" in data
    assert (root / "exporter" / "diagnosis" / "known_replies.yaml").is_file()
