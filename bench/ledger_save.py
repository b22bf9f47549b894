"""How long saving the canary ledger stalls the event loop, and how many file writes it takes.

Four runs, each in a fresh state directory under ``--dir``; all but the first make
``--saves`` changes to a ledger (exporter/canary/ledger.py) already holding ``--records``
canaries:

- ``idle``: no change at all for half a second, the stalls the machine itself causes;
- ``on-loop``: each change is serialised and written (temp file, fsync, rename, directory
  fsync) on the event loop, one write per change, as the ledger did before its writes moved
  to a thread;
- ``ledger, one at a time``: each change is followed by ``await ledger.save()``, as a canary
  send does before it starts;
- ``ledger, all at once``: every change and its ``save()`` runs concurrently, as many sends
  starting together do; concurrent saves share writes.

Meanwhile a probe task asks to wake every millisecond and records how late it wakes: the
worst and the 99th-percentile lateness are the loop stalls. ``--fsync-delay`` adds that many
seconds to every fsync, as a slow or busy disk would. Prints a table; times are not asserted
anywhere. Nothing is contacted over the network.

    python bench/ledger_save.py [--saves 200] [--records 50] [--fsync-delay 0] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.canary import ledger
from exporter.canary.ledger import CanaryRecord, CanaryState

TICK = 0.001


@dataclass
class Result:
    name: str
    seconds: float
    writes: int
    max_stall: float
    p99_stall: float


def _record(i: int) -> CanaryRecord:
    now = time.time()
    return CanaryRecord(token=f"smtpcanary_bench_{i:06d}", relay=f"relay-{i % 7}",
                        mailbox=f"box-{i % 3}", address=f"canary{i}@example.test",
                        sent_at=now, deadline=now + 600)


async def _probe(stalls: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(TICK)
        stalls.append(max(0.0, loop.time() - before - TICK))


async def _measure(name: str, work: Callable[[CanaryState], Awaitable[None]],
                   directory: Path, records: int) -> Result:
    state = CanaryState(str(directory), instance="bench")
    for i in range(records):
        state._records[(f"old{i}", "box")] = _record(-i - 1)
    writes = 0
    real = ledger._atomic_write

    def counted(path: Path, data: bytes) -> None:
        nonlocal writes
        writes += 1
        real(path, data)

    ledger._atomic_write = counted
    stalls: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe(stalls, stop))
    await asyncio.sleep(0.05)
    stalls.clear()
    start = time.perf_counter()
    try:
        await work(state)
    finally:
        seconds = time.perf_counter() - start
        stop.set()
        await probe
        ledger._atomic_write = real
    stalls.sort()
    p99 = stalls[int(len(stalls) * 0.99)] if stalls else 0.0
    return Result(name, seconds, writes, stalls[-1] if stalls else 0.0, p99)


async def _idle(state: CanaryState) -> None:
    await asyncio.sleep(0.5)


def _on_loop(saves: int) -> Callable[[CanaryState], Awaitable[None]]:
    async def work(state: CanaryState) -> None:
        assert state.path is not None
        for i in range(saves):
            record = _record(i)
            state._records[(record.token, record.mailbox)] = record
            doc = {"version": ledger.STATE_VERSION,
                   "canaries": [asdict(r) for r in state._records.values()]}
            ledger._atomic_write(state.path, json.dumps(doc, indent=1).encode("utf-8"))
            await asyncio.sleep(0)
    return work


def _one_at_a_time(saves: int) -> Callable[[CanaryState], Awaitable[None]]:
    async def work(state: CanaryState) -> None:
        for i in range(saves):
            state.add([_record(i)])
            await state.save()
    return work


def _all_at_once(saves: int) -> Callable[[CanaryState], Awaitable[None]]:
    async def one(state: CanaryState, i: int) -> None:
        state.add([_record(i)])
        await state.save()

    async def work(state: CanaryState) -> None:
        await asyncio.gather(*(one(state, i) for i in range(saves)))
    return work


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--records", type=int, default=50,
                        help="canaries already in the ledger")
    parser.add_argument("--fsync-delay", type=float, default=0.0,
                        help="seconds added to every fsync (a slow disk)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the state directories go (default: a temp dir)")
    args = parser.parse_args()
    if args.fsync_delay > 0:
        real_fsync = os.fsync

        def slow_fsync(fd: Any) -> None:
            time.sleep(args.fsync_delay)
            real_fsync(fd)

        os.fsync = slow_fsync
    runs = [("idle", _idle),
            ("on-loop (before)", _on_loop(args.saves)),
            ("ledger, one at a time", _one_at_a_time(args.saves)),
            ("ledger, all at once", _all_at_once(args.saves))]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = [await _measure(name, work, Path(tmp, str(n)), args.records)
                   for n, (name, work) in enumerate(runs)]
    print(f"{args.saves} saves, {args.records} canaries already in the ledger, fsync delay "
          f"{args.fsync_delay * 1000:g} ms")
    print(f"{'run':<24}{'seconds':>9}{'writes':>8}{'max stall ms':>14}{'p99 stall ms':>14}")
    for r in results:
        print(f"{r.name:<24}{r.seconds:>9.3f}{r.writes:>8}{r.max_stall * 1000:>14.2f}"
              f"{r.p99_stall * 1000:>14.2f}")


if __name__ == "__main__":
    asyncio.run(main())
