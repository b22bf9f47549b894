"""The relay probe against a real aiosmtpd relay with real TLS: what succeeds, how it is timed."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
import trustme

from exporter.config.secret import Secret
from exporter.model import Phase
from exporter.relay.probe import probe_relay
from exporter.smtp.oauth2 import RefreshingTokenSource, StaticTokenSource
from tests.conftest import auth, make_relay
from tests.servers.loop import ServerLoop
from tests.servers.scripted import greeting_then, postscreen_greeting, start_scripted
from tests.servers.smtp import PASSWORD, TOKEN, start_relay

HANDSHAKE = {Phase.RESOLVE, Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.TLS, Phase.QUIT}


@pytest.mark.parametrize("mechanism", ["plain", "login", "cram-md5"])
@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
async def test_password_mechanisms_succeed_on_both_tls_modes(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str, mechanism: str,
    implicit: bool,
) -> None:
    """Each password mechanism logs in over STARTTLS and implicit TLS, with every phase timed."""
    relay = start_relay(server_loop, ctx=server_ctx, implicit=implicit)
    config = make_relay(
        port=relay.port, tls="implicit" if implicit else "starttls", ca_file=ca_file,
        auth=auth(mechanism),
    )
    result = await probe_relay(config)
    assert result.success, result
    assert result.reason is None
    assert set(result.phases) == HANDSHAKE | {Phase.AUTH}
    assert all(v > 0 for v in result.phases.values())
    assert relay.recorder.seen_auth == [mechanism.upper()]
    assert result.reply is not None and result.reply.startswith("221")
    assert result.tls is not None and result.tls.verified
    assert result.tls.version in ("TLSv1.2", "TLSv1.3")
    assert result.duration >= sum(result.phases.values())


async def test_tls_facts_match_the_server_certificate(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
    good_cert: trustme.LeafCert,
) -> None:
    """The probe reports the certificate's real expiry and issuer and the negotiated cipher."""
    from cryptography import x509

    relay = start_relay(server_loop, ctx=server_ctx)
    result = await probe_relay(make_relay(port=relay.port, tls="starttls", ca_file=ca_file))
    cert = x509.load_pem_x509_certificate(good_cert.cert_chain_pems[0].bytes())
    assert result.tls is not None
    assert result.tls.not_after == cert.not_valid_after_utc.timestamp()
    assert result.tls.issuer == cert.issuer.rfc4514_string()
    assert result.tls.cipher and result.tls.cipher != "unknown"
    assert [m.lower() for m in result.auth_mechanisms] == ["cram-md5", "login", "plain",
                                                           "xoauth2"]


async def test_xoauth2_with_static_and_refreshed_tokens(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
) -> None:
    """XOAUTH2 logs in with a static token; a wrong token fails as auth_failed after the
    server's JSON challenge."""
    relay = start_relay(server_loop, ctx=server_ctx)
    config = make_relay(port=relay.port, tls="starttls", ca_file=ca_file,
                        auth=auth("xoauth2", token_env="RELAY_TOKEN"))
    ok = await probe_relay(config, token_source=StaticTokenSource(Secret(TOKEN)))
    assert ok.success, ok
    bad = await probe_relay(config, token_source=StaticTokenSource(Secret("expired")))
    assert bad.reason is not None and bad.reason.value == "auth_failed"
    assert bad.reply is not None and bad.reply.startswith("535")
    assert any("XOAUTH2 error" in line.text for line in bad.transcript)
    assert "expired" not in str(bad)


async def test_xoauth2_token_endpoint_failure_is_auth_failed(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
) -> None:
    """An unreachable token endpoint fails AUTH with a hint about the refresh, sending no AUTH."""
    from tests.servers.scripted import refused_port

    relay = start_relay(server_loop, ctx=server_ctx)
    config = make_relay(port=relay.port, tls="starttls", ca_file=ca_file,
                        auth=auth("xoauth2", token_env="RELAY_TOKEN"))
    source = RefreshingTokenSource(
        token_url=f"http://127.0.0.1:{refused_port()}/token", client_id="id",
        client_secret=Secret("s3cret-client"), refresh_token=Secret("r3fresh-token"),
        scope=None, grant_type="refresh_token", timeout=1.0,
    )
    result = await probe_relay(config, token_source=source)
    assert result.reason is not None and result.reason.value == "auth_failed"
    assert result.detail is not None and "OAuth2 token refresh failed" in result.detail
    assert relay.recorder.seen_auth == []


async def test_rcpt_check_times_mail_and_rcpt_and_sends_nothing(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
) -> None:
    """rcpt_check runs MAIL FROM and RCPT TO, then RSET: phases mail and rcpt, no message."""
    relay = start_relay(server_loop, ctx=server_ctx)
    result = await probe_relay(make_relay(
        port=relay.port, tls="starttls", ca_file=ca_file, auth=auth("plain"),
        rcpt_check="someone@example.test", mail_from="probe@example.test",
    ))
    assert result.success, result
    assert {Phase.MAIL, Phase.RCPT} <= set(result.phases)
    assert relay.recorder.rcpts == ["someone@example.test"]
    assert relay.recorder.messages == []
    assert any(line.text == "RSET" for line in result.transcript)


async def test_multiline_greeting_is_read_whole(server_loop: ServerLoop) -> None:
    """A postscreen-style 220- greeting with a pause is read whole and timed to its last line."""
    port = start_scripted(server_loop, postscreen_greeting(0.3))
    result = await probe_relay(make_relay(port=port, tls="none"))
    assert result.success, result
    assert 0.3 <= result.phases[Phase.GREETING] < 0.45
    greeting = [t.text for t in result.transcript if t.direction == "S"][:2]
    assert greeting == ["220-mx.example.test ESMTP checking you", "220 mx.example.test ESMTP ready"]


async def test_injected_delays_land_in_their_own_phases(server_loop: ServerLoop) -> None:
    """A greeting delayed 200 ms shows in the greeting phase, and not in connect or EHLO."""
    port = start_scripted(server_loop, greeting_then(b"220 slow.example.test\r\n", delay=0.2))
    result = await probe_relay(make_relay(port=port, tls="none"))
    assert result.success, result
    assert 0.2 <= result.phases[Phase.GREETING] < 0.25
    assert result.phases[Phase.CONNECT] < 0.05
    assert result.phases[Phase.EHLO] < 0.05


async def test_a_busy_event_loop_does_not_stretch_the_phases(server_loop: ServerLoop) -> None:
    """The exporter's loop is stuck for 0.3 s while the relay connects and greets after
    0.1 s: connect and greeting still read what the relay did (kernel timestamps), not
    when the exporter got round to looking."""
    port = start_scripted(server_loop, greeting_then(b"220 slow.example.test\r\n", delay=0.1))
    loop = asyncio.get_running_loop()
    probe = asyncio.ensure_future(probe_relay(make_relay(port=port, tls="none")))
    loop.call_soon(time.sleep, 0.3)  # after the probe's first step: the SYN is out
    result = await probe
    assert result.success, result
    assert result.duration >= 0.3
    assert result.phases[Phase.CONNECT] < 0.05
    # The relay waits 0.1 s; the reply's kernel stamp is converted from the wall clock to the
    # probe's clock, which can land it up to a few milliseconds early on a busy machine.
    assert 0.095 <= result.phases[Phase.GREETING] < 0.2
    assert result.phases[Phase.EHLO] < 0.05


async def test_tls_verify_false_accepts_self_signed_and_says_so(
    server_loop: ServerLoop, self_signed_ctx: ssl.SSLContext,
) -> None:
    """With tls_verify: false a self-signed relay passes, reported as not verified, with expiry."""
    relay = start_relay(server_loop, ctx=self_signed_ctx, implicit=True)
    result = await probe_relay(make_relay(port=relay.port, tls="implicit", tls_verify=False))
    assert result.success, result
    assert result.tls is not None and result.tls.verified is False
    assert result.tls.not_after is not None and result.tls.not_after > time.time()


async def test_credentials_never_cross_an_unencrypted_connection(
    server_loop: ServerLoop,
) -> None:
    """A tls: none relay that offers AUTH in the clear gets no credentials: the negative check
    expecting auth_unsupported fails, and the server saw no AUTH command."""
    relay = start_relay(server_loop, ctx=None, starttls=False, auth_require_tls=False)
    result = await probe_relay(make_relay(
        port=relay.port, tls="none", expect="auth_unsupported", auth=auth("plain"),
    ))
    assert relay.recorder.seen_auth == []
    assert not result.success
    assert result.reason is not None and result.reason.value == "expectation_failed"
    assert any("credentials withheld" in t.text for t in result.transcript)
    assert PASSWORD not in str(result)


async def test_plaintext_auth_only_with_tls_none_and_the_opt_in(
    server_loop: ServerLoop,
) -> None:
    """tls: none with allow_plaintext_auth: true logs in over plain text (redacted in the
    transcript); the same relay without the opt-in is refused by the config loader."""
    from exporter.config import ConfigError

    relay = start_relay(server_loop, ctx=None, starttls=False, auth_require_tls=False)
    result = await probe_relay(make_relay(
        port=relay.port, tls="none", allow_plaintext_auth=True, auth=auth("plain"),
    ))
    assert result.success, result
    assert result.tls is None
    assert relay.recorder.seen_auth == ["PLAIN"]
    assert any(t.text == "AUTH PLAIN ***" for t in result.transcript)
    assert PASSWORD not in str(result)
    with pytest.raises(ConfigError, match="allow_plaintext_auth: true"):
        make_relay(port=relay.port, tls="none", auth=auth("plain"))


async def test_auth_only_after_starttls_satisfies_the_negative_check(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext,
) -> None:
    """A relay that offers AUTH only after STARTTLS passes the check `expect: auth_unsupported`
    made over plain text."""
    relay = start_relay(server_loop, ctx=server_ctx)
    result = await probe_relay(make_relay(
        port=relay.port, tls="none", expect="auth_unsupported", auth=auth("plain"),
    ))
    assert result.success, result
    assert result.observed is not None and result.observed.value == "auth_unsupported"
    assert relay.recorder.seen_auth == []


async def test_resolve_through_configured_nameserver(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
) -> None:
    """A host name resolved by a real DNS server on loopback, with the resolve phase timed."""
    from tests.servers.dns import DNSServer

    dns_server = DNSServer(server_loop, {"relay.test": [("A", "127.0.0.1")]}, set())
    relay = start_relay(server_loop, ctx=server_ctx)
    config = make_relay(host="relay.test", port=relay.port, tls="starttls", ca_file=ca_file)
    result = await probe_relay(config, nameservers=(("127.0.0.1", dns_server.port),))
    assert result.success, result
    assert result.phases[Phase.RESOLVE] > 0
    assert "relay.test A" in dns_server.protocol.queries
