"""Small helpers for tests that talk to a running exporter over HTTP."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families


def http(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
         timeout: float = 5.0) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers; HTTP errors are answers too, not exceptions."""
    req = urllib.request.Request(url, method=method, headers=headers or {},
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace"), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace"), dict(err.headers)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by name and label set."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


async def eventually(check: Callable[[], bool], *, timeout: float = 10.0,
                     interval: float = 0.1) -> None:
    """Wait until ``check()`` holds; fail with the timeout otherwise."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def wait_for(check: Callable[[], bool], *, timeout: float = 15.0, interval: float = 0.2) -> None:
    """The blocking twin of ``eventually`` for tests that drive subprocesses."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def assert_promtool_accepts(exposition: str) -> None:
    """`promtool check metrics` passes on the exposition: parse errors and lint findings fail
    the test. Without promtool the check is skipped, except in CI, where it must exist."""
    import subprocess

    from tests.tools import executable

    promtool = executable("promtool", "apt-get install prometheus")
    proc = subprocess.run([promtool, "check", "metrics"], input=exposition, text=True,
                          capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
