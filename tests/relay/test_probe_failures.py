"""Every failure reason, each produced by a real server on loopback, with its hint and reply."""

from __future__ import annotations

import ssl
import time
import warnings

import pytest
import trustme

from exporter.model import Phase, Reason
from exporter.relay.probe import probe_relay
from tests.conftest import auth, make_relay
from tests.servers.dns import DNSServer
from tests.servers.loop import ServerLoop
from tests.servers.scripted import (
    BlackHole,
    greeting_then,
    refused_port,
    silent,
    start_scripted,
)
from tests.servers.smtp import PASSWORD, Recorder, start_relay


async def test_dns_error_from_a_real_nameserver(server_loop: ServerLoop) -> None:
    """NXDOMAIN and SERVFAIL from a loopback DNS server are dns_error, saying which."""
    server = DNSServer(server_loop, {}, {"broken.test"})
    ns = (("127.0.0.1", server.port),)
    missing = await probe_relay(make_relay(host="missing.test", port=25, tls="none"),
                                nameservers=ns)
    assert missing.reason is Reason.DNS_ERROR
    assert missing.failed_phase is Phase.RESOLVE
    assert missing.detail == (f"missing.test: NXDOMAIN, the name does not exist (asked "
                              f"127.0.0.1:{server.port}); check the relay's host name")
    broken = await probe_relay(make_relay(host="broken.test", port=25, tls="none"),
                               nameservers=ns)
    assert broken.reason is Reason.DNS_ERROR
    assert broken.detail is not None and "SERVFAIL" in broken.detail


async def test_connect_refused() -> None:
    """A closed port is connect_refused with the hint to check host and port."""
    result = await probe_relay(make_relay(port=refused_port(), tls="none"))
    assert result.reason is Reason.CONNECT_REFUSED
    assert result.failed_phase is Phase.CONNECT
    assert result.hint is not None and "host, port" in result.hint
    assert result.detail is not None and "refused" in result.detail.lower()


async def test_connect_timeout_when_syns_are_dropped() -> None:
    """A port whose SYNs are dropped times out in connect within the probe timeout."""
    hole = BlackHole()
    try:
        start = time.monotonic()
        result = await probe_relay(make_relay(port=hole.port, tls="none", timeout="1s"))
        elapsed = time.monotonic() - start
    finally:
        hole.close()
    assert result.reason is Reason.CONNECT_TIMEOUT
    assert result.failed_phase is Phase.CONNECT
    assert 0.9 < elapsed < 2.0
    assert result.hint is not None and "firewall" in result.hint


async def test_greeting_timeout_on_a_silent_server(server_loop: ServerLoop) -> None:
    """A server that accepts and never greets (and speaks no TLS) is greeting_timeout."""
    port = start_scripted(server_loop, silent)
    result = await probe_relay(make_relay(port=port, tls="starttls", timeout="1s"))
    assert result.reason is Reason.GREETING_TIMEOUT
    assert result.failed_phase is Phase.GREETING
    assert Phase.CONNECT in result.phases


async def test_plain_client_on_implicit_tls_port_is_mode_mismatch(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """STARTTLS configured against an implicit-TLS port: no greeting, the port answers TLS."""
    relay = start_relay(server_loop, ctx=server_ctx, implicit=True)
    result = await probe_relay(make_relay(port=relay.port, tls="starttls", ca_file=ca_file,
                                          timeout="1s"))
    assert result.reason is Reason.TLS_MODE_MISMATCH
    assert result.hint == f"port {relay.port} speaks implicit TLS: set tls: implicit"


async def test_tls_client_on_plain_port_is_mode_mismatch(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """Implicit TLS configured against a plain-greeting port: the handshake meets a 220."""
    relay = start_relay(server_loop, ctx=server_ctx)
    result = await probe_relay(make_relay(port=relay.port, tls="implicit", ca_file=ca_file))
    assert result.reason is Reason.TLS_MODE_MISMATCH
    assert result.failed_phase is Phase.TLS
    assert result.hint == f"port {relay.port} speaks plain SMTP with STARTTLS: set tls: starttls"
    assert result.detail is not None and "220" in result.detail


def _old_tls_ctx(cert: trustme.LeafCert, newest: ssl.TLSVersion) -> ssl.SSLContext:
    """A server context that speaks TLS 1.0 up to ``newest`` only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL refuses TLS < 1.2 at its default level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = newest
    cert.configure_cert(ctx)
    return ctx


@pytest.mark.parametrize(
    ("newest", "minimum", "offered"),
    [
        (ssl.TLSVersion.TLSv1, None, "TLSv1"),
        (ssl.TLSVersion.TLSv1_1, None, "TLSv1.1"),
        (ssl.TLSVersion.TLSv1_2, "1.3", "TLSv1.2"),
    ],
    ids=["tls1.0-vs-default", "tls1.1-vs-default", "tls1.2-vs-1.3"],
)
@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
async def test_server_below_minimum_tls_version_is_tls_version_too_old(
    server_loop: ServerLoop, good_cert: trustme.LeafCert, ca_file: str,
    newest: ssl.TLSVersion, minimum: str | None, offered: str, implicit: bool,
) -> None:
    """A relay that offers only TLS older than tls_min_version (default 1.2) fails with
    tls_version_too_old, naming the version it offers; no credentials are sent."""
    relay = start_relay(server_loop, ctx=_old_tls_ctx(good_cert, newest), implicit=implicit)
    keys = {} if minimum is None else {"tls_min_version": minimum}
    result = await probe_relay(make_relay(
        port=relay.port, tls="implicit" if implicit else "starttls", ca_file=ca_file,
        auth=auth("plain"), **keys,
    ))
    assert result.reason is Reason.TLS_VERSION_TOO_OLD
    assert result.failed_phase is Phase.TLS
    assert result.detail == (
        f"the server offers {offered} at most; tls_min_version is {minimum or '1.2'}"
    )
    assert result.hint is not None and "tls_min_version" in result.hint
    assert relay.recorder.seen_auth == []


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
async def test_lowered_tls_min_version_accepts_an_old_server(
    server_loop: ServerLoop, good_cert: trustme.LeafCert, ca_file: str, implicit: bool,
) -> None:
    """tls_min_version: "1.1" on that relay lets the same TLS 1.1 server pass, reported as 1.1."""
    relay = start_relay(server_loop, ctx=_old_tls_ctx(good_cert, ssl.TLSVersion.TLSv1_1),
                        implicit=implicit)
    result = await probe_relay(make_relay(
        port=relay.port, tls="implicit" if implicit else "starttls", ca_file=ca_file,
        tls_min_version="1.1", auth=auth("plain"),
    ))
    assert result.success, result
    assert result.tls is not None and result.tls.version == "TLSv1.1"
    assert result.tls.verified is True


async def test_tls_handshake_failed_on_garbage(server_loop: ServerLoop) -> None:
    """A port that answers the ClientHello with bytes that are neither TLS nor SMTP."""

    async def garbage(reader: object, writer: object) -> None:
        import asyncio

        w: asyncio.StreamWriter = writer  # type: ignore[assignment]
        w.write(b"\x15\x03\x01\x00\x02\x02\x28garbage garbage\r\n")
        await w.drain()
        await asyncio.sleep(1)

    port = start_scripted(server_loop, garbage)
    result = await probe_relay(make_relay(port=port, tls="implicit", tls_verify=False))
    assert result.reason is Reason.TLS_HANDSHAKE_FAILED
    assert result.detail is not None and result.detail.startswith("TLS handshake failed")


@pytest.mark.parametrize(
    ("ctx_name", "message"),
    [
        ("expired_ctx", "certificate has expired"),
        ("self_signed_ctx", "unable to get local issuer certificate"),
        ("wrong_host_ctx", "IP address mismatch"),
    ],
)
@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
async def test_invalid_certificates(
    request: pytest.FixtureRequest, server_loop: ServerLoop, ca_file: str, ctx_name: str,
    message: str, implicit: bool,
) -> None:
    """Expired, unknown-CA and wrong-host certificates are tls_cert_invalid, saying which."""
    ctx: ssl.SSLContext = request.getfixturevalue(ctx_name)
    relay = start_relay(server_loop, ctx=ctx, implicit=implicit)
    result = await probe_relay(make_relay(
        port=relay.port, tls="implicit" if implicit else "starttls", ca_file=ca_file,
        auth=auth("plain"),
    ))
    assert result.reason is Reason.TLS_CERT_INVALID
    assert result.detail is not None and message in result.detail
    assert relay.recorder.seen_auth == []


async def test_starttls_unsupported(server_loop: ServerLoop, ca_file: str) -> None:
    """A relay that does not offer STARTTLS fails before any credentials are sent."""
    relay = start_relay(server_loop, ctx=None, starttls=False)
    result = await probe_relay(make_relay(port=relay.port, tls="starttls", ca_file=ca_file,
                                          auth=auth("plain")))
    assert result.reason is Reason.STARTTLS_UNSUPPORTED
    assert result.failed_phase is Phase.TLS
    assert relay.recorder.seen_auth == []


async def test_auth_unsupported_names_what_is_offered(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """CRAM-MD5 configured where only LOGIN and PLAIN are offered: auth_unsupported, with them."""
    relay = start_relay(server_loop, ctx=server_ctx, exclude=("CRAM-MD5", "XOAUTH2"))
    result = await probe_relay(make_relay(port=relay.port, tls="starttls", ca_file=ca_file,
                                          auth=auth("cram-md5")))
    assert result.reason is Reason.AUTH_UNSUPPORTED
    assert result.hint == "set auth.mechanism to one of: login, plain"


async def test_auth_failed_keeps_the_535_reply(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """A wrong password is auth_failed with the server's 535 text; earlier phases stay timed."""
    relay = start_relay(server_loop, ctx=server_ctx, recorder=Recorder(password="other"))
    result = await probe_relay(make_relay(port=relay.port, tls="starttls", ca_file=ca_file,
                                          auth=auth("plain")))
    assert result.reason is Reason.AUTH_FAILED
    assert result.failed_phase is Phase.AUTH
    assert result.reply == "535 5.7.8 Authentication credentials invalid"
    assert {Phase.GREETING, Phase.EHLO, Phase.TLS, Phase.AUTH} <= set(result.phases)
    assert PASSWORD not in repr(result)
    assert any(t.text == "AUTH PLAIN ***" for t in result.transcript)


async def test_negative_check_expecting_auth_failed(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """`expect: auth_failed` succeeds on a 535, and fails as expectation_failed on a login."""
    relay = start_relay(server_loop, ctx=server_ctx, recorder=Recorder(password="other"))
    cfg = {"port": relay.port, "tls": "starttls", "ca_file": ca_file, "expect": "auth_failed",
           "auth": auth("plain")}
    refused = await probe_relay(make_relay(**cfg))
    assert refused.success and refused.reason is None
    assert refused.observed is Reason.AUTH_FAILED
    assert refused.reply is not None and refused.reply.startswith("535")
    relay.recorder.password = PASSWORD
    accepted = await probe_relay(make_relay(**cfg))
    assert not accepted.success
    assert accepted.reason is Reason.EXPECTATION_FAILED
    assert accepted.detail == "expected auth_failed, but the probe succeeded"


async def test_greeting_421_is_rejected_temporary(server_loop: ServerLoop) -> None:
    """A 421 greeting (rate limited, overloaded) is rejected_temporary with its text."""
    port = start_scripted(server_loop, greeting_then(b"421 4.7.0 Too many connections\r\n"))
    result = await probe_relay(make_relay(port=port, tls="none"))
    assert result.reason is Reason.REJECTED_TEMPORARY
    assert result.failed_phase is Phase.GREETING
    assert result.reply == "421 4.7.0 Too many connections"


async def test_greeting_554_is_rejected_permanent(server_loop: ServerLoop) -> None:
    """A 554 greeting (blocked client) is rejected_permanent."""
    port = start_scripted(server_loop, greeting_then(b"554 5.7.1 Your IP is blocked\r\n"))
    result = await probe_relay(make_relay(port=port, tls="none"))
    assert result.reason is Reason.REJECTED_PERMANENT
    assert result.reply == "554 5.7.1 Your IP is blocked"


async def test_rcpt_rejected_is_rejected_permanent(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """rcpt_check for a refused recipient fails in phase rcpt with the 550 reply."""
    relay = start_relay(server_loop, ctx=server_ctx,
                        recorder=Recorder(reject_rcpt="nobody@example.test"))
    result = await probe_relay(make_relay(port=relay.port, tls="starttls", ca_file=ca_file,
                                          auth=auth("plain"), rcpt_check="nobody@example.test"))
    assert result.reason is Reason.REJECTED_PERMANENT
    assert result.failed_phase is Phase.RCPT
    assert result.reply is not None and result.reply.startswith("550 5.1.1")
    assert {Phase.MAIL, Phase.RCPT} <= set(result.phases)


async def test_rcpt_temporary_failure(server_loop: ServerLoop) -> None:
    """A 451 to RCPT TO is rejected_temporary."""
    port = start_scripted(server_loop, greeting_then(
        b"220 t.example.test\r\n",
        replies={b"MAIL": b"250 Ok\r\n", b"RCPT": b"451 4.3.0 Try again later\r\n"},
    ))
    result = await probe_relay(make_relay(port=port, tls="none", rcpt_check="a@example.test"))
    assert result.reason is Reason.REJECTED_TEMPORARY
    assert result.failed_phase is Phase.RCPT


async def test_garbage_greeting_is_protocol_error(server_loop: ServerLoop) -> None:
    """A greeting that is not SMTP is protocol_error."""
    port = start_scripted(server_loop, greeting_then(b"SSH-2.0-OpenSSH_9.2\r\n"))
    result = await probe_relay(make_relay(port=port, tls="none"))
    assert result.reason is Reason.PROTOCOL_ERROR
    assert result.failed_phase is Phase.GREETING


async def test_connection_closed_after_ehlo_is_protocol_error(server_loop: ServerLoop) -> None:
    """A server that hangs up when it sees EHLO is protocol_error in phase ehlo."""
    port = start_scripted(server_loop, greeting_then(b"220 t.example.test\r\n",
                                                     close_after=b"EHLO"))
    result = await probe_relay(make_relay(port=port, tls="none"))
    assert result.reason is Reason.PROTOCOL_ERROR
    assert result.failed_phase is Phase.EHLO
    assert result.detail == "the server closed the connection after EHLO"


async def test_one_byte_per_second_is_timeout(server_loop: ServerLoop) -> None:
    """An EHLO reply dribbled one byte a second ends in timeout at the probe deadline."""
    port = start_scripted(server_loop, greeting_then(b"220 t.example.test\r\n",
                                                     byte_delay={b"EHLO": 1.0}))
    start = time.monotonic()
    result = await probe_relay(make_relay(port=port, tls="none", timeout="1500ms"))
    assert result.reason is Reason.TIMEOUT
    assert result.failed_phase is Phase.EHLO
    assert time.monotonic() - start < 2.5
