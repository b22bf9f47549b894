"""The canary ledger's state file: written off the event loop, concurrent saves coalesced, a
change on disk once the save that covers it returns, and a canary on disk before its send."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.canary import ledger
from exporter.canary.ledger import CanaryRecord, CanaryState
from exporter.canary.manager import CanaryManager
from exporter.canary.result import CanarySent
from exporter.canary.store import CanaryStore
from exporter.config import Config, RelayConfig, parse_config
from tests.conftest import ENV
from tests.servers.scripted import refused_port


def _record(token: str, *, sent_at: float = 1000.0) -> CanaryRecord:
    return CanaryRecord(token=token, relay="r", mailbox="box", address="a@example.test",
                        sent_at=sent_at, deadline=sent_at + 600)


def _on_disk(state: CanaryState) -> dict[str, dict[str, Any]]:
    assert state.path is not None
    doc = json.loads(state.path.read_text(encoding="utf-8"))
    return {item["token"]: item for item in doc["canaries"]}


class Writes:
    """Counts the ledger's file writes; each can be held until released, or slowed."""

    def __init__(self, *, delay: float = 0.0, hold: bool = False) -> None:
        self.count = 0
        self.delay = delay
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._real = ledger._atomic_write

    def __call__(self, path: Path, data: bytes) -> None:
        self.count += 1
        self.started.set()
        self.release.wait(10)
        time.sleep(self.delay)
        self._real(path, data)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Writes]:
    counter = Writes()
    monkeypatch.setattr(ledger, "_atomic_write", counter)
    yield counter
    counter.release.set()


async def test_change_during_a_write_is_on_disk_after_the_next_save(
    tmp_path: Path, writes: Writes
) -> None:
    """A canary added while a write is in flight is not in that write, and is on disk once
    the next save() returns."""
    writes.release.clear()
    state = CanaryState(str(tmp_path), instance="t")
    state.add([_record("first")])
    first = asyncio.create_task(state.save())
    assert await asyncio.to_thread(writes.started.wait, 5)
    state.add([_record("second")])
    second = asyncio.create_task(state.save())
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()
    writes.release.set()
    await first
    await second
    assert set(_on_disk(state)) == {"first", "second"}
    assert writes.count == 2
    state.remove("first", "box")
    await state.save()
    assert set(_on_disk(state)) == {"second"}


async def test_concurrent_saves_share_writes(tmp_path: Path, writes: Writes) -> None:
    """100 canaries added a millisecond apart, each awaiting its save while 20 ms writes run,
    take far fewer than 100 file writes, and each is on disk when its save returns."""
    writes.delay = 0.02
    state = CanaryState(str(tmp_path), instance="t")
    missing: list[str] = []

    async def send(i: int) -> None:
        await asyncio.sleep(i * 0.001)
        token = f"c{i:03d}"
        state.add([_record(token)])
        await state.save()
        if token not in _on_disk(state):
            missing.append(token)

    await asyncio.gather(*(send(i) for i in range(100)))
    assert missing == []
    assert len(_on_disk(state)) == 100
    assert 1 <= writes.count <= 25, writes.count
    count = writes.count
    await state.save()  # nothing changed since: no write
    assert writes.count == count


async def test_slow_write_does_not_block_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every fsync taking 0.3 s, a save takes that long but the event loop keeps
    running: a task waking every 10 ms is never more than 0.1 s late."""
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.3)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    state = CanaryState(str(tmp_path), instance="t")
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    probing = asyncio.create_task(probe())
    await asyncio.sleep(0.03)
    start = time.monotonic()
    for i in range(3):
        state.add([_record(f"c{i}")])
        await state.save()
    took = time.monotonic() - start
    done.set()
    await probing
    assert took >= 3 * 0.3
    assert len(lags) > 20
    assert max(lags) < 0.1, max(lags)
    assert set(_on_disk(state)) == {"c0", "c1", "c2"}


async def test_cancelled_save_leaves_the_shared_write_to_the_others(
    tmp_path: Path, writes: Writes
) -> None:
    """Cancelling one of two callers waiting for the same write does not cancel the write:
    the other caller returns with the change on disk."""
    writes.release.clear()
    state = CanaryState(str(tmp_path), instance="t")
    state.add([_record("one")])
    waiting = [asyncio.create_task(state.save()) for _ in range(2)]
    assert await asyncio.to_thread(writes.started.wait, 5)
    waiting[0].cancel()
    writes.release.set()
    await waiting[1]
    assert waiting[0].cancelled()
    assert set(_on_disk(state)) == {"one"}


async def test_failed_write_is_counted_and_save_returns(tmp_path: Path) -> None:
    """A state directory that cannot exist (its parent is a file) makes each write fail:
    save() still returns, the failures are counted with the reason, the records stay."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    state = CanaryState(str(blocker / "state"), instance="t")
    state.add([_record("one")])
    await state.save()
    state.update(_record("one", sent_at=2000.0))
    await state.save()
    assert state.write_errors == 2
    assert state.last_error is not None and "cannot write" in state.last_error
    assert [r.sent_at for r in state.in_flight()] == [2000.0]


async def test_no_state_dir_saves_nothing(writes: Writes) -> None:
    """Without a state directory the ledger lives in memory only and save() writes nothing."""
    state = CanaryState(None, instance="t")
    state.add([_record("one")])
    await state.save()
    assert writes.count == 0
    assert [r.token for r in state.in_flight()] == ["one"]


def _manager_config(tmp_path: Path) -> Config:
    doc = {
        "instance": "t", "state_dir": str(tmp_path / "state"),
        "mailboxes": [{"name": "box", "host": "127.0.0.1", "port": refused_port(),
                       "tls": "implicit", "trusted_authserv_ids": ["mx"],
                       "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}],
        "relays": [{"name": "r", "host": "127.0.0.1", "port": refused_port(), "tls": "none",
                    "interval": "1h", "timeout": "2s",
                    "canary": {"from": "c@example.test", "interval": "1h", "timeout": "10m",
                               "to": [{"address": "a@example.test", "mailbox": "box"}]}}],
    }
    return parse_config(yaml.safe_dump(doc), environ=ENV)


async def test_canary_is_on_disk_before_its_send_starts_and_stop_flushes(
    tmp_path: Path,
) -> None:
    """The manager's send starts only once the canary is in the state file, and stop()
    writes the send time the relay's answer set."""
    config = _manager_config(tmp_path)
    relay = config.relays[0]
    path = tmp_path / "state" / "canaries-t.json"
    seen: list[bool] = []

    async def send(relay: RelayConfig, canary: object, *, token: str, **_: object
                   ) -> CanarySent:
        seen.append(token in path.read_text(encoding="utf-8"))
        return CanarySent(relay=relay.name, token=token, success=True, started_at=time.time(),
                          sent_at=5000.0, accepted=("a@example.test",))

    manager = CanaryManager(CanaryStore(), send=send)
    manager.first_spread = 1e9
    manager.apply(config)
    try:
        result = await manager.send_once(relay)
    finally:
        await manager.stop()
    assert seen == [True]
    [record] = json.loads(path.read_text(encoding="utf-8"))["canaries"]
    assert record["token"] == result.token
    assert record["sent_at"] == 5000.0


async def test_stop_writes_the_state_file_with_nothing_in_flight(tmp_path: Path) -> None:
    """A daemon that sent no canary still leaves a state file at stop, saying none is in
    flight (the container's state volume shows it)."""
    config = _manager_config(tmp_path)
    path = tmp_path / "state" / "canaries-t.json"
    manager = CanaryManager(CanaryStore())
    manager.first_spread = 1e9
    manager.apply(config)
    await manager.stop()
    assert json.loads(path.read_text(encoding="utf-8"))["canaries"] == []
