"""A relay's text reaches a result only cleaned: valid Unicode, controls made visible, bounded,
secrets redacted before any cap, and hints in the exporter's own words."""

from __future__ import annotations

import json
import re
import ssl

import pytest
import trustme

from exporter.model import Reason
from exporter.relay.probe import probe_relay
from exporter.relay.report import format_table, result_to_dict
from exporter.relay.result import RelayResult
from tests.conftest import auth, make_config, make_relay
from tests.relay.hostile import (
    ECHO_PASSWORD,
    REJECTING_GREETING,
    STARTTLS_REFUSAL,
    echo_variants,
    echoing,
    hostile,
    password_windows,
)
from tests.servers.loop import ServerLoop
from tests.servers.scripted import start_scripted

# Any control character or lone surrogate: none may be in a single field of a result.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
SASL_NAME = re.compile("[a-z0-9_-]{1,20}")


def texts(result: RelayResult) -> list[str]:
    """Every text of a result that may hold what the server sent."""
    tls = result.tls
    return [t for t in (result.detail, result.reply, result.hint, *result.auth_mechanisms,
                        *(line.text for line in result.transcript),
                        tls.subject if tls else None, tls.issuer if tls else None) if t]


@pytest.fixture(scope="module")
def odd_cert_ctx(ca: trustme.CA) -> ssl.SSLContext:
    """A valid certificate whose subject holds a window-title escape and the 8-bit CSI."""
    cert = ca.issue_cert("127.0.0.1", organization_unit_name="\x1b]0;cert-title\x07 \x9b31m")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


@pytest.mark.parametrize(("spoken", "hint"), [
    (True, "set auth.mechanism to one of: login"),
    (False, "the server offers only AUTH gssapi, ntlm, x-00000, …, which this exporter does "
            "not speak: use a port or account that offers plain, login, cram-md5, xoauth2"),
])
async def test_a_32kb_auth_list_gives_a_short_hint_in_the_exporters_words(
    server_loop: ServerLoop, spoken: bool, hint: str,
) -> None:
    """An AUTH list of 31 KB with invalid UTF-8 and escapes: the hint names only valid
    mechanism names, the ones the exporter speaks if any, and stays short."""
    port = start_scripted(server_loop, hostile(spoken=spoken))
    result = await probe_relay(make_relay(port=port, tls="none", allow_plaintext_auth=True,
                                          auth=auth("cram-md5")))
    assert result.reason is Reason.AUTH_UNSUPPORTED
    assert result.hint == hint
    assert len(result.auth_mechanisms) <= 32
    assert all(SASL_NAME.fullmatch(m) for m in result.auth_mechanisms)
    assert result.detail is not None and len(result.detail) <= 500


async def test_every_text_of_a_hostile_session_is_clean(
    server_loop: ServerLoop, odd_cert_ctx: ssl.SSLContext, ca_file: str,
) -> None:
    """Escapes and invalid UTF-8 in the greeting, a certificate subject and a 31 KB EHLO after
    STARTTLS: every text of the result is valid, printable and at most 500 characters, the
    escapes shown as \\x1b."""
    port = start_scripted(server_loop, hostile(tls=odd_cert_ctx))
    result = await probe_relay(make_relay(port=port, tls="starttls", ca_file=ca_file,
                                          auth=auth("cram-md5")))
    assert result.reason is Reason.AUTH_UNSUPPORTED
    assert result.tls is not None and result.tls.subject is not None
    assert "\\x1b]0\\;cert-title\\x07" in result.tls.subject  # RFC 4514 escapes ";"
    for text in texts(result):
        assert not UNSAFE.search(text), repr(text)
        assert len(text) <= 500
    assert any("\\x1b]0;pwned-title\\x07" in line.text and "\ufffd" in line.text
               for line in result.transcript)


async def test_a_starttls_refusal_in_invalid_utf8_is_named_and_clean(
    server_loop: ServerLoop, ca_file: str,
) -> None:
    """A 454 to STARTTLS with invalid UTF-8 and escapes: rejected_temporary, its reply and
    transcript line valid and printable."""
    port = start_scripted(server_loop, hostile(starttls_refusal=STARTTLS_REFUSAL))
    result = await probe_relay(make_relay(port=port, tls="starttls", ca_file=ca_file))
    assert result.reason is Reason.REJECTED_TEMPORARY
    assert result.reply is not None and result.reply.startswith("454 4.7.0 TLS \ufffd")
    assert "\\x1b[2J" in result.reply
    for text in texts(result):
        assert not UNSAFE.search(text), repr(text)
    json.dumps(result_to_dict(result), ensure_ascii=False).encode("utf-8")


async def test_a_rejecting_greeting_prints_its_escapes_escaped(server_loop: ServerLoop) -> None:
    """A 554 greeting with terminal escapes: the probe table shows them as \\x1b, never raw."""
    port = start_scripted(server_loop, hostile(greeting=REJECTING_GREETING))
    result = await probe_relay(make_relay(port=port, tls="none"))
    assert result.reason is Reason.REJECTED_PERMANENT
    table = format_table([result], transcript=True)
    assert not UNSAFE.search(table.replace("\n", ""))
    assert "\\x1b]0;pwned-title\\x07" in table and "\\xc2" not in table
    assert "\\x9b31m" in table


async def test_an_echoed_password_leaves_no_prefix_at_any_cut(server_loop: ServerLoop) -> None:
    """A server echoing the AUTH password, raw or base64, at every position around the 500
    character cap, or split over two reply lines: no 4 characters of it in the result."""
    port = start_scripted(server_loop, echoing())
    for variant in echo_variants():
        relay = make_config({"name": "r", "port": port, "tls": "none",
                             "allow_plaintext_auth": True,
                             "auth": {"mechanism": "plain", "username": variant,
                                      "password_env": "ECHO_PASSWORD"}},
                            environ={"ECHO_PASSWORD": ECHO_PASSWORD}).relays[0]
        result = await probe_relay(relay)
        assert result.reason is Reason.AUTH_FAILED, (variant, result)
        shown = json.dumps(result_to_dict(result), ensure_ascii=False) + format_table([result])
        assert password_windows(shown) == [], (variant, shown)
