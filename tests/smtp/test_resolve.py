"""The relay host lookup: an address literal is the address, and no resolver is asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from exporter.smtp import resolve
from exporter.smtp.resolve import resolve_host


@pytest.fixture
async def no_resolver(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way to the system resolver or dnspython fails the test, and is recorded."""
    asked: list[str] = []

    async def system(host: str, timeout: float) -> list[str]:
        asked.append(f"system:{host}")
        raise AssertionError("the system resolver was asked")

    async def dnspython(host: str, nameservers: Any, timeout: float) -> list[str]:
        asked.append(f"dnspython:{host}")
        raise AssertionError("dnspython was asked")

    async def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        asked.append(f"getaddrinfo:{args[0]}")
        raise AssertionError("getaddrinfo was called")

    monkeypatch.setattr(resolve, "_resolve_system", system)
    monkeypatch.setattr(resolve, "_resolve_dnspython", dnspython)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.parametrize(("host", "address"), [
    ("127.0.0.1", "127.0.0.1"),
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("[2001:DB8::25]", "2001:db8::25"),
])
@pytest.mark.parametrize("nameservers", [(), (("127.0.0.1", 5300),)])
async def test_address_literal_never_goes_to_the_resolver(
    no_resolver: list[str], host: str, address: str,
    nameservers: tuple[tuple[str, int], ...],
) -> None:
    """An address literal resolves to itself, probe after probe, with or without configured
    nameservers, and neither the system resolver nor dnspython is asked."""
    for _ in range(3):
        assert await resolve_host(host, nameservers=nameservers, timeout=1.0) == [address]
    assert no_resolver == []


async def test_a_host_name_still_goes_to_the_resolver(no_resolver: list[str]) -> None:
    """A name is looked up every time (its answer may change): the cache holds literals only."""
    for _ in range(2):
        with pytest.raises(AssertionError):
            await resolve_host("relay.example.test", timeout=1.0)
    assert no_resolver == ["system:relay.example.test"] * 2
