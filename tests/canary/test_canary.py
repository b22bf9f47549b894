"""The canary round trip against a real relay and a real Dovecot: delivery, folders, verdicts,
lost and late, restarts, shared and crowded mailboxes, a server that drops the watcher."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import pytest
import yaml

from exporter.app import App
from exporter.canary.result import CanarySent
from exporter.config import ONE_SHARD, RelayConfig, Shard
from exporter.config.shard import shard_of
from tests.conftest import CANARY_USERS, ENV, auth
from tests.helpers import eventually, http, metrics_until, value
from tests.servers.loop import ServerLoop
from tests.servers.mta import DeliveringRecorder
from tests.servers.smtp import start_relay
from testservers.dovecot import Dovecot

IMAP_ENV = {"CANARY_IMAP_PASSWORD": CANARY_USERS["canary"]}
TO = "canary@example.test"
JUNK_TO = "junk@example.test"


@dataclass
class Bed:
    relay_port: int
    recorder: DeliveringRecorder
    dovecot: Dovecot
    ca_file: str


@pytest.fixture
def bed(server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
        dovecot: Dovecot) -> Bed:
    recorder = DeliveringRecorder(dovecot=dovecot, users={TO: "canary", JUNK_TO: "canary"},
                                  junk={JUNK_TO})
    relay = start_relay(server_loop, ctx=server_ctx, recorder=recorder)
    return Bed(relay.port, recorder, dovecot, ca_file)


def write(path: Path, bed: Bed, *, instance: str = "test-a", to: tuple[str, ...] = (TO,),
          timeout: str = "5s", idle: bool = True, trusted: tuple[str, ...] = ("mx.test.example",),
          state_dir: Path | None = None, tls: str = "implicit") -> Path:
    port = bed.dovecot.imaps_port if tls == "implicit" else bed.dovecot.imap_port
    doc = {
        "instance": instance,
        "state_dir": str(state_dir or path.parent / "state"),
        "mailboxes": [{
            "name": "box", "host": "127.0.0.1", "port": port, "tls": tls,
            "ca_file": bed.ca_file, "idle": idle, "poll_interval": "1s",
            "auth": {"username": "canary", "password_env": "CANARY_IMAP_PASSWORD"},
            "trusted_authserv_ids": list(trusted),
        }],
        "relays": [{
            "name": "relay", "host": "127.0.0.1", "port": bed.relay_port, "tls": "starttls",
            "ca_file": bed.ca_file, "interval": "1h", "timeout": "3s", "auth": auth("plain"),
            "canary": {"from": "sender@example.test", "interval": "1h", "timeout": timeout,
                       "to": [{"address": a, "mailbox": "box"} for a in to]},
        }],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
async def apps() -> AsyncIterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        await app.stop()


async def start(apps: list[App], path: Path, *, location: str = "",
                shard: Shard = ONE_SHARD) -> tuple[App, str]:
    app = App(str(path), listen=("127.0.0.1", 0), environ={**ENV, **IMAP_ENV},
              location=location, shard=shard)
    app.canaries.first_spread = 1e9  # the tests send; the schedule stays out of the way
    await app.start()
    apps.append(app)
    assert app.web is not None
    return app, f"http://127.0.0.1:{app.web.port}"


def relay_of(app: App) -> RelayConfig:
    assert app.config is not None
    return app.config.relays[0]


async def metrics(base: str) -> str:
    return (await asyncio.to_thread(http, base + "/metrics"))[1]


async def wait_metric(base: str, name: str, want: float, timeout: float = 10.0,
                      **labels: str) -> str:
    return await metrics_until(base, lambda text: (value(text, name, **labels) or 0) >= want,
                               what=f"{name}{labels} to reach {want:g}", timeout=timeout,
                               interval=0.1)


async def send(app: App) -> CanarySent:
    result = await app.canaries.send_once(relay_of(app))
    assert result.success, result
    return result


class _RelayBox(TypedDict):
    relay: str
    mailbox: str


RB: _RelayBox = {"relay": "relay", "mailbox": "box"}


async def test_canary_delivered_to_inbox_with_verdicts(tmp_path: Path, bed: Bed,
                                                       apps: list[App]) -> None:
    """A canary arrives in the inbox within seconds, spf/dkim/dmarc pass and align, the
    message is deleted after reading, and the send's MAIL, RCPT and DATA are timed."""
    app, base = await start(apps, write(tmp_path / "c.yaml", bed))
    await eventually(lambda: app.canary_store.snapshot().mailboxes["box"].up)
    sent = await send(app)
    assert {"mail", "rcpt", "data"} <= {p.value for p in sent.phases}
    text = await wait_metric(base, "smtp_canary_received_total", 1, folder="inbox", **RB)
    latency = value(text, "smtp_canary_last_delivery_duration_seconds", **RB)
    assert latency is not None and 0 < latency < 5
    for method in ("spf", "dkim", "dmarc"):
        assert value(text, "smtp_canary_auth_result", method=method, result="pass", **RB) == 1
    assert value(text, "smtp_canary_auth_result", method="arc", result="none", **RB) == 1
    assert value(text, "smtp_canary_dmarc_aligned", **RB) == 1
    assert value(text, "smtp_canary_last_folder_info", folder="inbox", **RB) == 1
    assert value(text, "smtp_canary_in_flight", **RB) == 0
    assert value(text, "smtp_mailbox_up", mailbox="box") == 1
    assert value(text, "smtp_mailbox_idle_supported", mailbox="box") == 1
    assert value(text, "smtp_canary_send_phase_duration_seconds_count", relay="relay",
                 phase="data") == 1
    await eventually(lambda: not list(bed.dovecot.maildir("canary").glob("cur/*")) and
                     not list(bed.dovecot.maildir("canary").glob("new/*")))
    page = (await asyncio.to_thread(http, base + "/"))[1]
    assert sent.token in page and "dmarc=pass" in page and "mx.test.example" in page
    # No ARC seal on mail that was not forwarded is normal: shown grey, not as a failure.
    assert '<span class="wait">arc=none</span>' in page
    assert '<span class="ok">dmarc=pass</span>' in page


async def test_canary_filed_to_junk_reads_spam(tmp_path: Path, bed: Bed,
                                               apps: list[App]) -> None:
    """A canary the receiver files into Junk (found by SPECIAL-USE) counts as folder spam."""
    app, base = await start(apps, write(tmp_path / "c.yaml", bed, to=(JUNK_TO,)))
    await eventually(lambda: app.canary_store.snapshot().mailboxes["box"].up)
    await send(app)
    text = await wait_metric(base, "smtp_canary_received_total", 1, folder="spam", **RB)
    assert value(text, "smtp_canary_last_folder_info", folder="spam", **RB) == 1
    assert value(text, "smtp_canary_received_total", folder="inbox", **RB) == 0


async def test_untrusted_authentication_results_read_none(tmp_path: Path, bed: Bed,
                                                          apps: list[App]) -> None:
    """A pass stamped by an authserv-id the mailbox does not trust counts as none, even
    when it sits above the trusted receiver's fail."""
    bed.recorder.stamps = [
        "evil.example; spf=pass smtp.mailfrom=example.test; dkim=pass header.d=example.test; "
        "dmarc=pass header.from=example.test",
        "mx.test.example; spf=fail smtp.mailfrom=example.test; dkim=none; dmarc=fail "
        "header.from=example.test",
    ]
    app, base = await start(apps, write(tmp_path / "c.yaml", bed))
    await send(app)
    text = await wait_metric(base, "smtp_canary_received_total", 1, folder="inbox", **RB)
    assert value(text, "smtp_canary_auth_result", method="spf", result="fail", **RB) == 1
    assert value(text, "smtp_canary_auth_result", method="dkim", result="none", **RB) == 1
    assert value(text, "smtp_canary_auth_result", method="dmarc", result="fail", **RB) == 1
    assert value(text, "smtp_canary_dmarc_aligned", **RB) == 0


async def test_lost_once_then_late_not_received_twice(tmp_path: Path, bed: Bed,
                                                      apps: list[App]) -> None:
    """A canary held back past its timeout is lost once; delivered afterwards it is late,
    and received does not count it."""
    bed.recorder.hold = True
    app, base = await start(apps, write(tmp_path / "c.yaml", bed, timeout="2s"))
    await send(app)
    text = await wait_metric(base, "smtp_canary_in_flight", 1, **RB)
    text = await wait_metric(base, "smtp_canary_lost_total", 1, **RB)
    await asyncio.sleep(1.5)
    assert value(await metrics(base), "smtp_canary_lost_total", **RB) == 1
    await asyncio.to_thread(bed.recorder.release)
    text = await wait_metric(base, "smtp_canary_late_total", 1, **RB)
    assert value(text, "smtp_canary_received_total", folder="inbox", **RB) == 0
    assert value(text, "smtp_canary_lost_total", **RB) == 1


async def test_restart_keeps_canaries_in_flight(tmp_path: Path, bed: Bed,
                                                apps: list[App]) -> None:
    """A canary in flight when the exporter stops is matched after a restart, with its
    original send time: the latency includes the downtime."""
    bed.recorder.hold = True
    path = write(tmp_path / "c.yaml", bed, timeout="60s")
    first, _ = await start(apps, path)
    sent = await send(first)
    apps.remove(first)
    await first.stop()
    await asyncio.sleep(1.0)
    second, base = await start(apps, path)
    assert second.canaries.state is not None
    assert [r.token for r in second.canaries.state.in_flight()] == [sent.token]
    await asyncio.to_thread(bed.recorder.release)
    text = await wait_metric(base, "smtp_canary_received_total", 1, folder="inbox", **RB)
    latency = value(text, "smtp_canary_last_delivery_duration_seconds", **RB)
    assert latency is not None and latency >= 1.0


async def test_crowded_mailbox_touches_nothing_else(tmp_path: Path, bed: Bed,
                                                    apps: list[App]) -> None:
    """Among 1,500 unrelated messages the canary is found, and only it is deleted."""
    import os
    import pwd

    await asyncio.to_thread(bed.dovecot.deliver, "canary",
                            b"From: first@example.org\r\nSubject: unrelated\r\n\r\nbody\r\n")
    maildir = bed.dovecot.maildir("canary") / "cur"
    owner = pwd.getpwnam("dovecot")
    for i in range(1, 1500):
        f = maildir / f"{1700000000 + i}.M{i}P1.test:2,S"
        f.write_bytes(f"From: a{i}@example.org\r\nSubject: unrelated {i}\r\n\r\nbody\r\n".encode())
        os.chown(f, owner.pw_uid, owner.pw_gid)
    app, base = await start(apps, write(tmp_path / "c.yaml", bed))
    await send(app)
    await wait_metric(base, "smtp_canary_received_total", 1, folder="inbox", **RB)
    remaining = list(maildir.iterdir()) + list((maildir.parent / "new").iterdir())
    assert len(remaining) == 1500


async def test_two_instances_share_a_mailbox(tmp_path: Path, bed: Bed,
                                             apps: list[App]) -> None:
    """Two exporters with different instance names on one mailbox each see only their own."""
    a, base_a = await start(apps, write(tmp_path / "a.yaml", bed, instance="eu",
                                        state_dir=tmp_path / "sa"))
    b, base_b = await start(apps, write(tmp_path / "b.yaml", bed, instance="eu-west",
                                        state_dir=tmp_path / "sb"))
    await send(a)
    await send(b)
    await send(b)
    await wait_metric(base_a, "smtp_canary_received_total", 1, folder="inbox", **RB)
    await wait_metric(base_b, "smtp_canary_received_total", 2, folder="inbox", **RB)
    await asyncio.sleep(1.5)
    assert value(await metrics(base_a), "smtp_canary_received_total", folder="inbox", **RB) == 1


async def test_two_locations_share_a_config_and_a_mailbox(tmp_path: Path, bed: Bed,
                                                          apps: list[App]) -> None:
    """Two exporters run from one config file (same instance, same state_dir) in two
    locations: each counts only its own canaries, keeps its own state file, and says on its
    status page where it probes from."""
    path = write(tmp_path / "shared.yaml", bed, instance="prod", state_dir=tmp_path / "state")
    eu, base_eu = await start(apps, path, location="eu-west")
    us, base_us = await start(apps, path, location="us-east")
    sent = await send(eu)
    assert sent.token.startswith("smtpcanary_prod.eu-west_")
    await send(us)
    await send(us)
    await wait_metric(base_eu, "smtp_canary_received_total", 1, folder="inbox", **RB)
    await wait_metric(base_us, "smtp_canary_received_total", 2, folder="inbox", **RB)
    await asyncio.sleep(1.5)
    assert value(await metrics(base_eu), "smtp_canary_received_total", folder="inbox", **RB) == 1
    assert value(await metrics(base_eu), "smtp_canary_lost_total", mailbox="box",
                 relay="relay") == 0
    _, page, _ = await asyncio.to_thread(http, base_us + "/")
    assert "instance <b>prod</b> · location <b>us-east</b>" in page
    in_flight = await send(eu)  # still in flight when both stop: only eu-west's state holds it
    await eu.stop()
    await us.stop()
    apps.clear()
    state = {p.name: p.read_text() for p in (tmp_path / "state").glob("canaries-*.json")}
    assert sorted(state) == ["canaries-prod.eu-west.json", "canaries-prod.us-east.json"]
    assert in_flight.token in state["canaries-prod.eu-west.json"]
    assert "smtpcanary_" not in state["canaries-prod.us-east.json"]


async def test_watcher_reconnects_after_the_server_drops_it(tmp_path: Path, bed: Bed,
                                                            apps: list[App]) -> None:
    """Kicked mid-IDLE, the watcher logs in again and the next canary still arrives."""
    app, base = await start(apps, write(tmp_path / "c.yaml", bed))
    await eventually(lambda: app.canary_store.snapshot().mailboxes["box"].up)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(bed.dovecot.kick, "canary")
    await send(app)
    text = await wait_metric(base, "smtp_canary_received_total", 1, folder="inbox",
                             timeout=15, **RB)
    assert value(text, "smtp_mailbox_up", mailbox="box") == 1


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_polling_without_idle(tmp_path: Path, server_loop: ServerLoop,
                                    server_ctx: ssl.SSLContext, ca_file: str, ca: Any,
                                    tls: str, apps: list[App]) -> None:
    """On a server without IDLE the watcher polls (IMAP over TLS either way) and still finds it."""
    from testservers.dovecot import start_dovecot

    server = start_dovecot(tmp_path / "dv", users=CANARY_USERS, ca=ca, idle=False)
    try:
        recorder = DeliveringRecorder(dovecot=server, users={TO: "canary"})
        relay = start_relay(server_loop, ctx=server_ctx, recorder=recorder)
        bed = Bed(relay.port, recorder, server, ca_file)
        app, base = await start(apps, write(tmp_path / "c.yaml", bed, idle=False, tls=tls))
        await eventually(lambda: app.canary_store.snapshot().mailboxes["box"].up)
        assert app.canary_store.snapshot().mailboxes["box"].idle_supported is False
        await send(app)
        text = await wait_metric(base, "smtp_canary_received_total", 1, folder="inbox", **RB)
        assert value(text, "smtp_mailbox_idle_supported", mailbox="box") == 0
    finally:
        for running in list(apps):
            apps.remove(running)
            await running.stop()
        server.stop()


async def test_two_shards_share_a_mailbox(tmp_path: Path, bed: Bed, apps: list[App]) -> None:
    """Two shards of one instance run one config; each sends its own relay's canaries into one
    shared mailbox, receives exactly its own, and counts none of the other's as lost."""
    names = {shard_of(n, 2): n for n in ("alpha", "beta", "gamma", "delta")}
    doc = yaml.safe_load(write(tmp_path / "one.yaml", bed, instance="prod",
                               timeout="2s").read_text())
    doc["relays"] = [{**doc["relays"][0], "name": names[i]} for i in (0, 1)]
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(doc))
    shards = [await start(apps, path, shard=Shard(i, 2)) for i in (0, 1)]
    assert [[r.name for r in relay_of_each] for relay_of_each in (
        app.config.relays if app.config else () for app, _ in shards)] == [[names[0]],
                                                                            [names[1]]]
    sent = [await send(shards[0][0]), await send(shards[1][0]), await send(shards[1][0])]
    assert sent[0].token.startswith("smtpcanary_prod.shard0_")
    assert sent[1].token.startswith("smtpcanary_prod.shard1_")
    for i, want in ((0, 1), (1, 2)):
        await wait_metric(shards[i][1], "smtp_canary_received_total", want, folder="inbox",
                          relay=names[i], mailbox="box")
    await asyncio.sleep(2.5)  # past every canary's 2 s timeout
    for i, want in ((0, 1), (1, 2)):
        text = await metrics(shards[i][1])
        assert value(text, "smtp_canary_received_total", folder="inbox", relay=names[i],
                     mailbox="box") == want
        assert value(text, "smtp_canary_lost_total", relay=names[i], mailbox="box") == 0
        assert names[1 - i] not in text
