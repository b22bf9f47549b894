"""Counting what a test could leak: asyncio tasks, threads and open file descriptors."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    tasks: int
    threads: int
    fds: int

    def __str__(self) -> str:
        return f"{self.tasks} tasks, {self.threads} threads, {self.fds} fds"


def count() -> Resources:
    """What this process holds now (tasks of the running loop, if any). The event loop's
    default executor ("asyncio_N" threads, used by to_thread) is a bounded pool that stays
    for the loop's life; it is not counted."""
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = 0
    threads = [t for t in threading.enumerate() if not t.name.startswith("asyncio_")]
    return Resources(tasks, len(threads), len(os.listdir("/proc/self/fd")))


def thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


async def settled(before: Resources, *, timeout: float = 10.0) -> Resources:
    """Wait until nothing more is held than ``before`` (closing sockets and ending threads
    take a moment); return the last count, which the caller compares."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        now = count()
        if (now.tasks <= before.tasks and now.threads <= before.threads
                and now.fds <= before.fds) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.1)
