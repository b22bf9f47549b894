"""SMTP AUTH (RFC 4954): PLAIN, LOGIN, CRAM-MD5 and XOAUTH2, with redacted transcripts."""

from __future__ import annotations

import base64
import contextlib
import hmac
import time

from exporter.config import AuthConfig, AuthMechanism
from exporter.model import Phase, Reason
from exporter.smtp.oauth2 import (
    RefreshingTokenSource,
    StaticTokenSource,
    TokenError,
    TokenSource,
    xoauth2_string,
)
from exporter.smtp.session import SMTPSession

__all__ = ["authenticate", "token_source_for"]

REDACTED = "***"
# Share of the probe's remaining time a token request may take: a token endpoint that does
# not answer fails the probe in phase auth as auth_failed, before the probe's own timeout.
TOKEN_SHARE = 0.5
_REFUSED = "the token endpoint refused the refresh: check client id, secret and refresh token"
_NO_ANSWER = (
    "the token endpoint gave no usable answer: check token_url, and that the exporter can "
    "reach it"
)

# The mechanisms this exporter speaks, in the words of its configuration.
SPOKEN = tuple(m.value for m in AuthMechanism if m is not AuthMechanism.NONE)
# How many of a server's other mechanisms an auth_unsupported hint names.
HINT_NAMES = 3


def _b64(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(raw)


async def authenticate(
    session: SMTPSession, auth: AuthConfig, *, token_source: TokenSource | None = None
) -> None:
    """Log in with the configured mechanism; credentials never cross an unencrypted link
    unless the relay allows it, and never reach the transcript."""
    session.phase = Phase.AUTH
    mech = auth.mechanism
    name = mech.value.upper()
    offered = [m.upper() for m in session.auth_mechanisms]
    if not session.encrypted and not session.relay.allow_plaintext_auth:
        if offered:
            session.note(
                "*", f"AUTH {' '.join(offered)} offered without TLS: credentials withheld"
            )
            return
        raise session.fail(
            Reason.AUTH_UNSUPPORTED, "no AUTH offered on the unencrypted connection"
        )
    if name not in offered:
        what = f"offers AUTH {' '.join(offered)}" if offered else "offers no AUTH at all"
        raise session.fail(
            Reason.AUTH_UNSUPPORTED,
            f"the server {what}; configured {mech.value}",
            hint=_unsupported_hint(session.auth_mechanisms),
        )
    token = ""
    if mech is AuthMechanism.XOAUTH2:
        if token_source is None:
            raise session.fail(Reason.AUTH_FAILED, "no OAuth2 token source configured")
        try:
            budget = session.remaining() * TOKEN_SHARE
            token = (await token_source.token(timeout=budget)).value.reveal()
        except TokenError as exc:
            failure = session.fail(
                Reason.AUTH_FAILED,
                f"OAuth2 token refresh failed: {exc}",
                hint=_NO_ANSWER if exc.status is None else _REFUSED,
            )
            # The relay's last reply (EHLO's 250) says nothing here: the token endpoint's
            # error is the reply that failed the probe, or there is none.
            failure.reply = session.clean(exc.reply) if exc.reply else ""
            raise failure from None
    await _exchange(session, auth, token, start=time.perf_counter())


async def _exchange(session: SMTPSession, auth: AuthConfig, token: str, *, start: float) -> None:
    mech = auth.mechanism
    user = auth.username or ""
    password = auth.password.reveal() if auth.password is not None else ""
    session.conceal(
        password, _b64(password).decode(), _b64(f"\0{user}\0{password}").decode(), token,
        xoauth2_string(user, token) if token else "",
    )
    if mech is AuthMechanism.PLAIN:
        resp, at = await session.command(
            b"AUTH", b"PLAIN", _b64(f"\0{user}\0{password}"), shown=f"AUTH PLAIN {REDACTED}"
        )
    elif mech is AuthMechanism.LOGIN:
        resp, at = await session.command(b"AUTH", b"LOGIN")
        if resp.code == 334:
            resp, at = await session.command(_b64(user), shown=REDACTED)
        if resp.code == 334:
            resp, at = await session.command(_b64(password), shown=REDACTED)
    elif mech is AuthMechanism.CRAM_MD5:
        resp, at = await session.command(b"AUTH", b"CRAM-MD5")
        if resp.code == 334:
            try:
                challenge = base64.b64decode(resp.message.strip(), validate=True)
            except ValueError:
                raise session.fail(
                    Reason.PROTOCOL_ERROR, "CRAM-MD5 challenge is not base64"
                ) from None
            digest = hmac.new(password.encode("utf-8"), challenge, "md5").hexdigest()
            resp, at = await session.command(_b64(f"{user} {digest}"), shown=REDACTED)
    else:
        resp, at = await session.command(
            b"AUTH", b"XOAUTH2", xoauth2_string(user, token).encode("ascii"),
            shown=f"AUTH XOAUTH2 {REDACTED}",
        )
        if resp.code == 334:
            # The server explains the failure in a base64 JSON challenge; an empty line ends it.
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                session.note("*", "XOAUTH2 error: " + base64.b64decode(resp.message).decode())
            resp, at = await session.command(b"", shown="")
    session.phases[Phase.AUTH] = at - start  # a refusal is timed too: tarpits show here
    if resp.code == 235:
        return
    if resp.code == 504:
        raise session.fail(
            Reason.AUTH_UNSUPPORTED, f"AUTH {mech.value} answered {session.last_reply}"
        )
    if 400 <= resp.code < 500:
        raise session.fail(Reason.REJECTED_TEMPORARY, f"AUTH answered {session.last_reply}")
    if 500 <= resp.code < 600:
        raise session.fail(Reason.AUTH_FAILED, f"AUTH answered {session.last_reply}")
    raise session.fail(Reason.PROTOCOL_ERROR, f"unexpected reply to AUTH: {session.last_reply}")


def _unsupported_hint(offered: list[str]) -> str:
    """What to configure instead: the offered mechanisms this exporter speaks, else a few of
    the others by name; bounded, whatever the server listed (EHLO keeps only SASL names)."""
    usable = [m for m in offered if m in SPOKEN]
    if usable:
        return f"set auth.mechanism to one of: {', '.join(usable)}"
    if not offered:
        return "the server offers no AUTH here: check port and TLS mode"
    names = ", ".join(offered[:HINT_NAMES]) + (", …" if len(offered) > HINT_NAMES else "")
    return (f"the server offers only AUTH {names}, which this exporter does not speak: "
            f"use a port or account that offers {', '.join(SPOKEN)}")


def token_source_for(auth: AuthConfig, *, ca_file: str | None = None) -> TokenSource | None:
    """The token source an XOAUTH2 relay or mailbox uses, or None for other mechanisms.

    The token endpoint is verified against the system's CAs unless ``ca_file`` is given: a
    relay's private ``ca_file`` is about the relay, not about its OAuth2 provider."""
    if auth.mechanism is not AuthMechanism.XOAUTH2:
        return None
    if auth.token is not None:
        return StaticTokenSource(auth.token)
    if auth.oauth2 is None:
        return None
    o = auth.oauth2
    return RefreshingTokenSource(
        token_url=o.token_url,
        client_id=o.client_id,
        client_secret=o.client_secret,
        refresh_token=o.refresh_token,
        scope=o.scope,
        grant_type=o.grant_type,
        ca_file=ca_file,
    )
