"""The demo's OAuth2 token endpoint and its XOAUTH2 relay, through the exporter's own
token source and prober."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.config.secret import Secret
from exporter.demo.run import USERNAME, DemoRelay
from exporter.demo.tokens import CLIENT_ID
from exporter.relay.probe import probe_relay
from exporter.smtp.oauth2 import RefreshingTokenSource, StaticTokenSource, TokenError
from tests.conftest import auth, make_relay


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[DemoRelay]:
    relay = DemoRelay(tmp_path)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


def _source(demo: DemoRelay, refresh_token: str) -> RefreshingTokenSource:
    return RefreshingTokenSource(
        token_url=demo.tokens.url, client_id=CLIENT_ID, client_secret=None,
        refresh_token=Secret(refresh_token), scope=None, grant_type="refresh_token",
        timeout=2.0)


async def test_refreshed_token_logs_in_and_a_stale_one_does_not(demo: DemoRelay) -> None:
    """A token refreshed from the demo endpoint passes XOAUTH2 on the STARTTLS listener;
    a token it never issued is refused with 535, as a provider refuses an expired one."""
    config = make_relay(port=demo.starttls_port, tls="starttls", ca_file=str(demo.ca_file),
                        host="localhost",
                        auth=auth("xoauth2", token_env="RELAY_TOKEN", username=USERNAME))
    ok = await probe_relay(config, token_source=_source(demo, demo.tokens.refresh_token))
    assert ok.success, ok
    stale = await probe_relay(config, token_source=StaticTokenSource(Secret("never-issued")))
    assert stale.reason is not None and stale.reason.value == "auth_failed"
    assert stale.reply is not None and stale.reply.startswith("535")


async def test_wrong_refresh_token_is_invalid_grant(demo: DemoRelay) -> None:
    """The endpoint answers a wrong refresh token with OAuth2's invalid_grant, which the
    token source reports without echoing the token."""
    with pytest.raises(TokenError) as caught:
        await _source(demo, "wrong-refresh-SECRET").token()
    assert "invalid_grant" in str(caught.value)
    assert "wrong-refresh-SECRET" not in str(caught.value)


def test_tokens_expire() -> None:
    """An issued token is valid for its lifetime only."""
    from exporter.demo.tokens import DemoTokenEndpoint

    endpoint = DemoTokenEndpoint(lifetime=0.0)
    token, _ = endpoint.issue()
    assert not endpoint.valid(token)
    endpoint.lifetime = 60.0
    token, lifetime = endpoint.issue()
    assert endpoint.valid(token) and lifetime == 60.0
    assert not endpoint.valid("x" + token)
