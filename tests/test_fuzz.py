"""Property tests for every pure parser: any input gives a value or the documented error, and
long input costs linear time (the time for 10n compared with n, as a ratio, never a clock
limit)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from aiosmtplib.errors import SMTPResponseException
from aiosmtplib.esmtp import parse_esmtp_extensions
from aiosmtplib.protocol import SMTPProtocol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.canary.judge import judge
from exporter.config import ConfigError, parse_config
from exporter.config.webconfig import load_web_config
from exporter.dns.records import (
    parse_dkim_key,
    parse_dmarc,
    parse_mta_sts,
    parse_spf,
    parse_tag_list,
    parse_tls_rpt,
)
from exporter.headers.authresults import parse_authentication_results
from exporter.headers.spam import is_spam_flagged, spam_scores
from exporter.model import Phase, Reason
from exporter.smtp.errors import ProbeError
from exporter.smtp.protocol import TimedProtocol

# -- SMTP replies ----------------------------------------------------------------------------

_REPLY_LINE = st.one_of(
    st.builds(lambda code, sep, text: f"{code}{sep}{text}\r\n".encode(),
              st.integers(0, 999).map(lambda n: f"{n:03d}"), st.sampled_from(["-", " ", ""]),
              st.text(max_size=30)),
    st.builds(lambda head, text: head + b"-" + text + b"\r\n",  # looks continued, is not SMTP
              st.binary(min_size=3, max_size=3), st.binary(max_size=10)),
    st.binary(max_size=40),
)


def _feed(chunks: list[bytes], protocol: type[SMTPProtocol] = TimedProtocol
          ) -> tuple[Any, float]:
    """Feed ``chunks`` to the probe's SMTP protocol on a real socket pair, as replies arrive
    from a server; return the waiter's outcome (reply, exception or None) and the CPU time."""

    async def run() -> tuple[Any, float]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        proto = protocol(loop=loop)
        await loop.create_connection(lambda: proto, sock=a)
        try:
            reader = asyncio.ensure_future(proto.read_response(timeout=5))
            await asyncio.sleep(0)
            start = time.process_time()
            for chunk in chunks:
                proto.data_received(chunk)
            spent = time.process_time() - start
            for _ in range(3):
                await asyncio.sleep(0)
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                return None, spent
            exc = reader.exception()
            return (exc if exc is not None else reader.result()), spent
        finally:
            assert proto.transport is not None
            proto.transport.close()
            b.close()

    return asyncio.run(run())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_REPLY_LINE, max_size=12), st.integers(1, 7))
def test_smtp_reply_parsing_gives_a_reply_or_the_documented_error(
    lines: list[bytes], chunk: int
) -> None:
    """Any bytes, in any chunking, give a reply, an SMTPResponseException, or nothing yet,
    exactly as aiosmtplib's own parser decides; a ProbeError built from it is one line."""
    data = b"".join(lines)
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    outcome, _ = _feed(chunks)
    reference, _ = _feed(chunks, SMTPProtocol)
    assert _shown(outcome) == _shown(reference)
    assert outcome is None or isinstance(outcome, SMTPResponseException) or hasattr(
        outcome, "code")
    if isinstance(outcome, SMTPResponseException):
        err = ProbeError(Phase.GREETING, Reason.PROTOCOL_ERROR, f"bad greeting: {outcome.message}")
        assert "\n" not in err.detail and "\r" not in err.detail
    elif outcome is not None:
        extensions, mechanisms = parse_esmtp_extensions(outcome.message)
        assert isinstance(extensions, dict) and isinstance(mechanisms, list)


def _shown(outcome: Any) -> tuple[object, ...]:
    if outcome is None:
        return (None,)
    if isinstance(outcome, SMTPResponseException):
        return ("error", outcome.code, outcome.message)
    return ("reply", outcome.code, outcome.message)


@pytest.mark.parametrize("chunked", [True, False], ids=["line-by-line", "one-chunk"])
def test_long_multiline_reply_parses_in_linear_time(chunked: bool) -> None:
    """A multi-line reply of 1,500 lines costs about 10 times one of 150, whether it arrives in
    one chunk or a line at a time (aiosmtplib alone re-parses the buffer per line)."""

    def reply(n: int) -> list[bytes]:
        lines = [b"250-EXTENSION-%05d\r\n" % i for i in range(n)] + [b"250 LAST\r\n"]
        return lines if chunked else [b"".join(lines)]

    def cost(n: int) -> float:
        outcome, spent = _feed(reply(n))
        assert outcome is not None and outcome.code == 250
        assert outcome.message.count("\n") == n
        return spent

    assert_linear(cost, 150, repeats=5)


# -- the linear-time check -------------------------------------------------------------------

def assert_linear(cost: Callable[[int], float], n: int, *, repeats: int = 5,
                  limit: float = 35.0) -> None:
    """``cost(10 n) / cost(n)`` is about 10 for linear work and 100 for quadratic; the best
    of ``repeats`` interleaved runs of each is compared, with a generous limit."""
    small = large = float("inf")
    for _ in range(repeats):
        small = min(small, max(cost(n), 1e-6))
        large = min(large, cost(10 * n))
    assert large / small < limit, f"10x input cost {large / small:.1f}x ({small=:.4f}s)"


def _timed(fn: Callable[[Any], object], make: Callable[[int], Any]) -> Callable[[int], float]:
    def cost(n: int) -> float:
        arg = make(n)
        start = time.process_time()
        fn(arg)
        return time.process_time() - start

    return cost


LONG_INPUTS: dict[str, tuple[Callable[[Any], object], Callable[[int], Any], int]] = {
    "authresults-many-results": (
        parse_authentication_results,
        lambda n: "mx.example; " + "; ".join(
            f'spf=pass (sender {i} "quoted\\" x") smtp.mailfrom=a{i}@b.example' for i in range(n)),
        200),
    "authresults-nested-comment": (
        parse_authentication_results, lambda n: "mx.example; (" * n + ")" * n, 2000),
    "authresults-escapes": (
        parse_authentication_results,
        lambda n: 'mx.example; dkim=pass reason="' + "\\\"" * n + '"', 2000),
    "authresults-garbage": (parse_authentication_results, lambda n: "=;(\"\\" * n, 2000),
    "authresults-folded-lines": (
        parse_authentication_results,
        lambda n: "mx.example;" + "\r\n\tdkim=pass header.d=a.example;" * n, 1000),
    "authresults-bare-lf-lines": (
        parse_authentication_results,
        lambda n: "mx.example;" + "\nx-ptr=fail x-ptr-lookup=abcdefghij;" * n, 1000),
    "authresults-long-line-after-break": (
        parse_authentication_results, lambda n: "mx.example; dkim=pass\n" + "a" * n, 20000),
    "authresults-late-forbidden-char": (
        parse_authentication_results,
        lambda n: "mx.example; " + "dkim=pass header.d=a.example; " * n + "\xa0", 1000),
    "authresults-late-second-field": (
        parse_authentication_results,
        lambda n: "mx.example;" + "\r\n dkim=pass header.d=a.example;" * n + "\r\nX-A: b",
        1000),
    "authresults-microsoft-tokens": (
        parse_authentication_results,
        lambda n: "spf=pass smtp.mailfrom=a.example; " + "contoso.com; " * n, 2000),
    "authresults-whitespace-lines": (
        parse_authentication_results,
        lambda n: "mx.example; spf=pass" + "\r\n " * n + "\r\n" * n, 5000),
    "spf-terms": (parse_spf, lambda n: "v=spf1 " + "include:_spf%{d}.example.com " * n + "-all",
                  300),
    "spf-one-long-word": (parse_spf, lambda n: "v=spf1 ip4:" + "1." * n, 3000),
    "dmarc-uris": (parse_dmarc, lambda n: "v=DMARC1; p=reject; rua=" +
                   ",".join(f"mailto:r{i}@example.com" for i in range(n)), 300),
    "dkim-long-key": (parse_dkim_key, lambda n: "v=DKIM1; k=rsa; p=" + "MIIB" * n, 2000),
    "tag-list": (parse_tag_list, lambda n: "a=b; " * n, 1000),
    "mta-sts": (parse_mta_sts, lambda n: "v=STSv1; id=" + "a1" * n, 3000),
    "tls-rpt": (parse_tls_rpt, lambda n: "v=TLSRPTv1; rua=" +
                ",".join(f"mailto:t{i}@example.com" for i in range(n)), 300),
    "spam-headers": (
        lambda h: (spam_scores(h), is_spam_flagged(h)),
        lambda n: [("X-Spam-Status", "Yes, score=7.3 required=5.0 tests=" + "BAYES_99," * n),
                   ("X-Spamd-Result", "default: True [12.5 / 15.0]; " + "SYM(1.0)[x]; " * n)]
        + [("X-MS-Exchange-Organization-SCL", "5")] * n, 300),
    "config-many-relays": (
        lambda text: _config_or_error(text),
        lambda n: yaml.safe_dump({"relays": [
            {"name": f"r{i}", "host": f"smtp{i}.example.com", "port": 587} for i in range(n)]}),
        40),
    "web-config-users": (
        lambda path: _web_config_or_error(path),
        lambda n: {"basic_auth_users": {f"user{i}": "$2b$04$" + "a" * 53 for i in range(n)}},
        100),
}


def _config_or_error(text: str) -> object:
    try:
        return parse_config(text, environ={})
    except ConfigError as exc:
        return exc


def _web_config_or_error(doc: dict[str, Any]) -> object:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "web.yml"
        path.write_text(yaml.safe_dump(doc))
        try:
            return load_web_config(str(path))
        except ConfigError as exc:
            return exc


@pytest.mark.parametrize("case", list(LONG_INPUTS))
def test_parsers_take_linear_time_on_long_input(case: str) -> None:
    """Each parser's cost on an adversarial input grows about tenfold for ten times the input."""
    fn, make, n = LONG_INPUTS[case]
    assert_linear(_timed(fn, make), n)


# -- a header that does not parse gives no pass ----------------------------------------------

_AR_RESINFO = st.sampled_from([
    "dkim=pass header.d=example.com header.s=s1",
    "dkim=pass (good signature) header.i=@example.com",
    'spf=pass (google.com: domain of b@example.com) smtp.mailfrom="b=1@example.com"',
    "dmarc=pass (p=REJECT) header.from=example.com", "arc=pass (i=1)", "compauth=pass reason=100",
    "SPF = Pass SMTP.MailFrom=example.com", "contoso.com", "none",
])
_AR_HEAD = st.sampled_from([
    "mx.google.com; ", "", "i=1; mx.microsoft.com 1; ", "Authentication-Results: example.org 1;",
    '"mx.example.com";\r\n\t', "ARC-Authentication-Results: i=2; mx.google.com;\n ",
])
_AR_DAMAGE = st.one_of(st.sampled_from([
    "\x00", "\xa0", "\u2003", "\ufeff", "none", " none ", "=", " = = ", "/", "/x", "(", ")", '"',
    "example/net", ";none;", " stray ", "\r\nAuthentication-Results: mx.google.com; dkim=pass",
    "\nX-Forged: ", "\r\n\r\n", ".", "@", ":",
]), st.characters())


@st.composite
def _damaged_headers(draw: st.DrawFn) -> str:
    """A real-looking header (any of several shapes, all passing) with one or two defects."""
    text = draw(_AR_HEAD) + "; ".join(draw(st.lists(_AR_RESINFO, min_size=1, max_size=5)))
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(_AR_DAMAGE) + text[at:]
    return text


@settings(max_examples=500, deadline=None)
@given(st.one_of(_damaged_headers(), st.text(max_size=120)))
def test_header_that_fails_to_parse_gives_no_pass(text: str) -> None:
    """judge() gives no pass for any method, nor alignment, from a header that does not parse,
    even when its (partial) authserv-id and the empty id are both trusted."""
    parsed = parse_authentication_results(text)
    if parsed.error is None:
        return
    verdicts = judge([text], trusted_authserv_ids=(parsed.authserv_id, "", "mx.google.com"),
                     from_domain="example.com")
    assert "pass" not in (verdicts.spf, verdicts.dkim, verdicts.dmarc, verdicts.arc)
    assert (verdicts.dmarc_aligned, verdicts.dkim_domains, verdicts.spf_domain) == (
        False, (), None)


# -- configuration from arbitrary YAML --------------------------------------------------------

_KEYS = st.sampled_from([
    "relays", "defaults", "name", "host", "port", "tls", "tls_verify", "ca_file", "auth",
    "mechanism", "username", "password_env", "password_file", "interval", "timeout", "preset",
    "expect", "canary", "mailboxes", "folders", "to", "address", "mailbox", "dns",
    "nameservers", "domains", "blocklists", "instance", "state_dir", "oauth2", "token_url",
    "max_concurrent_probes", "tls_min_version", "allow_plaintext_auth", "rcpt_check",
]) | st.text(max_size=8)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["587", "5m", "starttls", "none", "1.0", "-1s",
                                           "smtp.example.com", "gmail", "plain", "xoauth2"]),
)
_YAML_DATA = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    _YAML_DATA.map(lambda d: yaml.safe_dump(d)),
    st.dictionaries(_KEYS, _YAML_DATA, max_size=4).map(
        lambda d: yaml.safe_dump({"relays": [{"name": "r", "host": "h", **d}]})),
    st.text(max_size=200),
    st.text(alphabet="{}[]:-&*!|>'\"#%@` \n\tab1", max_size=120),
))
def test_config_loading_raises_only_config_error(text: str) -> None:
    """Any YAML (or not YAML) gives a Config or a ConfigError whose every line names a path."""
    problems: tuple[Any, ...] = ()
    try:
        parse_config(text, environ={"X": "secret"})
    except ConfigError as exc:
        problems = exc.problems or (None,)
    for problem in problems:
        assert problem is not None
        assert problem.path and problem.message and "\n" not in problem.message


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(
    _YAML_DATA,
    st.dictionaries(st.sampled_from(["tls_server_config", "basic_auth_users",
                                     "http_server_config", "rate_limit"]), _YAML_DATA,
                    max_size=4),
))
def test_web_config_loading_raises_only_config_error(tmp_path: Any, data: object) -> None:
    """Any web config file gives a WebConfig or a ConfigError naming the file and a field."""
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(data))
    problems: tuple[Any, ...] = ()
    try:
        load_web_config(str(path))
    except ConfigError as exc:
        problems = exc.problems or (None,)
    assert all(p is not None and str(p).startswith(str(path)) for p in problems)
