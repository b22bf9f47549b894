"""A probe whose OAuth2 token refresh fails shows the token endpoint's error as its reply,
never the relay's EHLO answer."""

from __future__ import annotations

import ssl

from exporter.model import Phase, Reason
from exporter.relay import format_table, probe_relay, result_to_dict
from exporter.smtp import token_source_for
from tests.conftest import make_relay
from tests.servers.loop import ServerLoop
from tests.servers.scripted import refused_port
from tests.servers.smtp import start_relay
from tests.servers.tokens import error_reply, serve_tokens


def _xoauth2_relay(port: int, ca_file: str, token_url: str) -> dict[str, object]:
    return {"port": port, "tls": "starttls", "ca_file": ca_file,
            "auth": {"mechanism": "xoauth2", "username": "probe@example.test",
                     "oauth2": {"token_url": token_url, "client_id": "cid",
                                "refresh_token_env": "RELAY_PASSWORD"}}}


async def test_refused_refresh_shows_the_token_endpoints_error_as_the_reply(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """A token endpoint answering 400 invalid_grant makes the probe's reply (result, JSON and
    the probe table) name invalid_grant and its description, not the EHLO's 250."""
    smtp = start_relay(server_loop, ctx=server_ctx)
    with serve_tokens() as endpoint:
        endpoint.default = error_reply(400, "invalid_grant", "Token has been expired or revoked.")
        relay = make_relay(**_xoauth2_relay(smtp.port, ca_file, endpoint.url))
        result = await probe_relay(relay, token_source=token_source_for(relay.auth))
    assert result.reason == Reason.AUTH_FAILED
    assert result.failed_phase == Phase.AUTH
    assert result.reply == "400 invalid_grant (Token has been expired or revoked.)"
    assert result_to_dict(result)["reply"] == result.reply
    replies = [line for line in format_table([result]).splitlines() if "reply:" in line]
    assert replies == ["  reply: 400 invalid_grant (Token has been expired or revoked.)"]


async def test_unreachable_token_endpoint_leaves_the_reply_empty(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """A token endpoint that does not answer leaves the probe without a reply, rather than
    showing the relay's EHLO answer."""
    smtp = start_relay(server_loop, ctx=server_ctx)
    url = f"http://127.0.0.1:{refused_port()}/token"
    relay = make_relay(**_xoauth2_relay(smtp.port, ca_file, url))
    result = await probe_relay(relay, token_source=token_source_for(relay.auth))
    assert result.reason == Reason.AUTH_FAILED
    assert result.reply is None
    assert result_to_dict(result)["reply"] is None
