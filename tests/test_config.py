"""Tests for loading and validating the YAML config and the provider presets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.config import (
    AuthConfig,
    AuthMechanism,
    Config,
    ConfigError,
    DNSConfig,
    OAuth2Config,
    Problem,
    RelayConfig,
    TLSMode,
    load_config,
    parse_config,
    parse_duration,
)
from exporter.providers import PRESETS, lookup_preset
from exporter.results import Reason
from exporter.secrets import Secret

CONFIGS = Path(__file__).parent / "data" / "configs"
EXAMPLE = Path(__file__).parent.parent / "config.example.yaml"
ENV = {"SMTP_PASSWORD": "pw", "SMTP_TOKEN": "tok", "CLIENT_SECRET": "cs", "REFRESH_TOKEN": "rt"}
DURATION_HELP = "use a number with s, m or h, e.g. 30s or 5m"
ADDRESS_HELP = "write it as user@example.com without <>"
NAMESERVER_HELP = "write e.g. 127.0.0.1:5300, ::1 or [::1]:53"
REASONS = (
    "dns_error, connect_refused, connect_timeout, greeting_timeout, tls_mode_mismatch, "
    "tls_handshake_failed, tls_cert_invalid, starttls_unsupported, auth_unsupported, "
    "auth_failed, rejected_temporary, rejected_permanent, protocol_error or timeout"
)

# One file per rule; "{file}" stands for the file's own path, "{dir}" for its directory.
INVALID: dict[str, list[str]] = {
    "yaml-syntax": [
        "{file}: invalid YAML at line 4: expected <block end>, but found "
        "'<block mapping start>'; fix the syntax on that line"
    ],
    "top-level": ["{file}: expected a mapping with a relays: list, got a list"],
    "relays-missing": ["relays: missing; add at least one relay"],
    "relays-empty": ["relays: empty; add at least one relay"],
    "relay-not-mapping": ["relays[0]: expected a mapping of relay settings, got a string"],
    "unknown-key": [
        "relays[0].hots: unknown key; did you mean host?",
        "relays[0].host: missing; set host or a preset",
    ],
    "unknown-key-no-match": ["dns.zzz: unknown key; valid keys are nameservers, timeout"],
    "defaults-key": [
        "defaults.host: cannot be set in defaults; set it on each relay",
        "defaults.intreval: unknown key; did you mean interval?",
    ],
    "wrong-type": [
        "relays[0].tls_verify: expected true or false, got 'yes'",
        "relays[0].port: expected an integer, got 'abc'",
    ],
    "name-missing": ["relays[0].name: missing; give the relay a unique name"],
    "name-format": [
        'relays[0].name: "my relay" is not a valid name; use letters, digits, "_", "." and "-", '
        "starting with a letter or digit"
    ],
    "name-duplicate": [
        'relays[1].name: duplicate name "sendgrid" (also relays[0]); relay names must be unique'
    ],
    "host-missing": ["relays[0].host: missing; set host or a preset"],
    "preset-unknown": [
        'relays[0].preset: unknown preset "sendgird"; did you mean sendgrid?',
        'relays[1].preset: unknown preset "ses-useast1"; '
        "Amazon SES presets look like ses-us-east-1",
    ],
    "port-range": ["relays[0].port: 70000 is out of range; use a port from 1 to 65535"],
    "tls-mode": ['relays[0].tls: "ssl" is not a TLS mode; use starttls, implicit or none'],
    "starttls-on-465": ["relays[0].tls: 465 speaks implicit TLS; set tls: implicit"],
    "implicit-on-587": ["relays[0].tls: 587 speaks STARTTLS; set tls: starttls"],
    "ca-file-missing": [
        "relays[0].ca_file: file /nonexistent/private-ca.pem does not exist; "
        "point ca_file at a PEM file of CAs"
    ],
    "ca-file-no-verify": [
        "relays[0].ca_file: ca_file is set but tls_verify is false; "
        "remove ca_file or set tls_verify: true"
    ],
    "tls-min-version": [
        'relays[0].tls_min_version: "1.4" is not a TLS version; use 1.0, 1.1, 1.2 or 1.3'
    ],
    "duration": [f'relays[0].interval: "5x" is not a duration; {DURATION_HELP}'],
    "interval-short": ["relays[0].interval: interval 0.5s is too short; use at least 1s"],
    "timeout-zero": ["relays[0].timeout: timeout 0s must be more than 0s; use e.g. 15s"],
    "timeout-interval": [
        "relays[0].timeout: timeout 60s must be shorter than interval 60s; "
        "raise interval or lower timeout"
    ],
    "auth-mechanism": [
        'relays[0].auth.mechanism: "ntlm" is not supported; '
        "use plain, login, cram-md5, xoauth2 or none"
    ],
    "auth-no-username": ["relays[0].auth.username: missing; login authentication needs a username"],
    "auth-no-password": [
        "relays[0].auth: plain authentication needs a password; set password_env or password_file"
    ],
    "auth-two-passwords": ["relays[0].auth: set only one of password_env and password_file"],
    "auth-inline-password": [
        "relays[0].auth.password: inline secrets are not allowed; use password_env or password_file"
    ],
    "auth-wrong-mechanism-keys": [
        "relays[0].auth.token_env: not used with mechanism plain; remove it"
    ],
    "auth-none-credentials": [
        "relays[0].auth.mechanism: none takes no credentials, but username, password_env are "
        "set; remove them or choose a mechanism"
    ],
    "xoauth2-no-token": [
        "relays[0].auth: xoauth2 needs a token; set token_env, token_file or oauth2"
    ],
    "xoauth2-two-tokens": ["relays[0].auth: set only one of token_env, token_file and oauth2"],
    "oauth2-incomplete": [
        "relays[0].auth.oauth2.token_url: missing; set the provider's token endpoint",
        "relays[0].auth.oauth2.client_id: missing; set the OAuth2 client id",
        "relays[0].auth.oauth2: grant refresh_token needs refresh_token_env or refresh_token_file",
    ],
    "oauth2-token-url": [
        'relays[0].auth.oauth2.token_url: "login.microsoftonline.com/tenant/oauth2/v2.0/token" '
        "is not an http or https URL; use the token endpoint, "
        "e.g. https://oauth2.googleapis.com/token"
    ],
    "oauth2-inline-secret": [
        "relays[0].auth.oauth2.client_secret: inline secrets are not allowed; "
        "use client_secret_env or client_secret_file"
    ],
    "plaintext-auth": [
        "relays[0].auth: credentials would cross the network unencrypted; "
        "use tls: starttls or implicit, or set allow_plaintext_auth: true"
    ],
    "expect": [f'relays[0].expect: "login_failed" is not a failure reason; use {REASONS}'],
    "rcpt-check": [
        f'relays[0].mail_from: "probe" is not an address; {ADDRESS_HELP} ("" for the null sender)',
        f'relays[0].rcpt_check: "<someone@example.com>" is not an address; {ADDRESS_HELP}',
    ],
    "ehlo-name": [
        'relays[0].ehlo_name: "probe host" is not a hostname; use a name like probe.example.com '
        "or an address literal like [192.0.2.1]"
    ],
    "nameserver": [
        f'dns.nameservers[1]: "dns.google" is not an IP address with an optional port; '
        f"{NAMESERVER_HELP}",
        f'dns.nameservers[2]: "[::1]:99999" is not an IP address with an optional port; '
        f"{NAMESERVER_HELP}",
        f'dns.timeout: "soon" is not a duration; {DURATION_HELP}',
    ],
    "max-concurrent-probes": ["max_concurrent_probes: 0 is too small; use 1 or more"],
    "secret-env-missing": [
        "relays[0].auth.password_env: environment variable NOT_SET_ANYWHERE is not set; "
        "export it before starting"
    ],
    "secret-file-missing": [
        "relays[0].auth.password_file: file /nonexistent/secret does not exist; "
        "mount the secret there"
    ],
    "duplicate-key": ["relays[0].port: duplicate key; remove one of the two"],
    "relative-file-missing": [
        "relays[0].auth.password_file: file {dir}/secrets/missing-password does not exist; "
        "mount the secret there",
        "relays[0].ca_file: file {dir}/certs/missing-ca.pem does not exist; "
        "point ca_file at a PEM file of CAs",
    ],
}


def _problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ=ENV if environ is None else environ)
    return [str(problem) for problem in caught.value.problems]


def _relay(text: str, environ: dict[str, str] | None = None) -> RelayConfig:
    config = parse_config(text, environ=ENV if environ is None else environ)
    assert len(config.relays) == 1
    return config.relays[0]


def _warnings(text: str, environ: dict[str, str] | None = None) -> list[str]:
    config = parse_config(text, environ=ENV if environ is None else environ)
    assert all(problem.severity == "warning" for problem in config.warnings)
    return [str(problem) for problem in config.warnings]


@pytest.mark.parametrize(("rule", "expected"), INVALID.items(), ids=list(INVALID))
def test_invalid_config_reports_exact_problems(rule: str, expected: list[str]) -> None:
    """Each invalid-<rule>.yaml fails to load with exactly the listed problems, in order."""
    path = CONFIGS / f"invalid-{rule}.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert [str(problem) for problem in caught.value.problems] == [
        line.format(file=path, dir=path.parent) for line in expected
    ]
    assert all(problem.severity == "error" for problem in caught.value.problems)


def test_every_invalid_file_has_a_table_row() -> None:
    """No invalid-<rule>.yaml file is left out of the table, and no row lacks its file."""
    files = {path.name.removeprefix("invalid-").removesuffix(".yaml") for path in CONFIGS.iterdir()}
    assert files == set(INVALID)


def test_config_error_message_joins_problems() -> None:
    """str(ConfigError) is every problem on its own line."""
    error = ConfigError([Problem("a", "one"), Problem("b", "two")])
    assert str(error) == "a: one\nb: two"
    assert isinstance(error, ValueError)


def test_full_config_round_trip(tmp_path: Path) -> None:
    """A config using every key loads into exactly the values written."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not checked here\n")
    secret_file = tmp_path / "refresh"
    secret_file.write_text("refresh-token\n")
    text = f"""
max_concurrent_probes: 8
dns:
  nameservers: ["127.0.0.1:5300", "::1", "[::1]:5353", "192.0.2.53"]
  timeout: 2s
defaults:
  interval: 2m
  ehlo_name: probe.example.com
relays:
  - name: sendgrid
    preset: sendgrid
    host: smtp.sendgrid.net
    port: 2525
    tls: starttls
    tls_verify: true
    ca_file: {ca_file}
    tls_server_name: smtp.sendgrid.net
    tls_min_version: "1.3"
    ehlo_name: "[192.0.2.1]"
    interval: 30s
    timeout: 10s
    rcpt_check: someone@example.com
    mail_from: probe@example.com
    expect: auth_failed
    allow_plaintext_auth: false
    auth:
      mechanism: login
      username: apikey
      password_env: SMTP_PASSWORD
  - name: gmail.oauth
    host: smtp.gmail.com
    tls: implicit
    auth:
      mechanism: xoauth2
      username: probe@example.com
      oauth2:
        token_url: https://oauth2.googleapis.com/token
        client_id: abc
        client_secret_env: CLIENT_SECRET
        refresh_token_file: {secret_file}
        scope: https://mail.google.com/
        grant_type: refresh_token
  - name: plain-lab
    host: 192.0.2.25
    port: 25
    tls: none
    auth:
      mechanism: cram-md5
      username: lab
      password_env: SMTP_PASSWORD
    allow_plaintext_auth: true
    mail_from: ""
  - name: token
    host: smtp.example.com
    auth:
      username: probe@example.com
      token_env: SMTP_TOKEN
"""
    config = parse_config(text, source="test.yaml", environ=ENV)
    sendgrid = RelayConfig(
        name="sendgrid",
        host="smtp.sendgrid.net",
        port=2525,
        tls=TLSMode.STARTTLS,
        tls_verify=True,
        ca_file=str(ca_file),
        tls_server_name="smtp.sendgrid.net",
        tls_min_version="1.3",
        ehlo_name="[192.0.2.1]",
        interval=30.0,
        timeout=10.0,
        auth=AuthConfig(AuthMechanism.LOGIN, "apikey", password=Secret("pw")),
        rcpt_check="someone@example.com",
        mail_from="probe@example.com",
        expect=Reason.AUTH_FAILED,
        allow_plaintext_auth=False,
        preset="sendgrid",
    )
    oauth2 = OAuth2Config(
        token_url="https://oauth2.googleapis.com/token",
        client_id="abc",
        client_secret=Secret("cs"),
        refresh_token=Secret("refresh-token"),
        scope="https://mail.google.com/",
        grant_type="refresh_token",
    )
    gmail = RelayConfig(
        name="gmail.oauth",
        host="smtp.gmail.com",
        port=465,
        tls=TLSMode.IMPLICIT,
        ehlo_name="probe.example.com",
        interval=120.0,
        auth=AuthConfig(AuthMechanism.XOAUTH2, "probe@example.com", oauth2=oauth2),
    )
    lab = RelayConfig(
        name="plain-lab",
        host="192.0.2.25",
        port=25,
        tls=TLSMode.NONE,
        ehlo_name="probe.example.com",
        interval=120.0,
        auth=AuthConfig(AuthMechanism.CRAM_MD5, "lab", password=Secret("pw")),
        allow_plaintext_auth=True,
    )
    token = RelayConfig(
        name="token",
        host="smtp.example.com",
        port=587,
        tls=TLSMode.STARTTLS,
        ehlo_name="probe.example.com",
        interval=120.0,
        auth=AuthConfig(AuthMechanism.XOAUTH2, "probe@example.com", token=Secret("tok")),
    )
    dns = DNSConfig(
        nameservers=(("127.0.0.1", 5300), ("::1", 53), ("::1", 5353), ("192.0.2.53", 53)),
        timeout=2.0,
    )
    warnings = (
        Problem(
            "relays[2].port",
            "port 25 with authentication: most clouds block outbound 25; use 587",
            "warning",
        ),
    )
    assert config == Config(
        relays=(sendgrid, gmail, lab, token),
        dns=dns,
        max_concurrent_probes=8,
        warnings=warnings,
        source="test.yaml",
    )


def test_minimal_relay_gets_built_in_defaults() -> None:
    """A relay with only name and host gets 587 STARTTLS, verification and the default timings."""
    config = parse_config("relays: [{name: r, host: smtp.example.com}]", environ={})
    relay = config.relays[0]
    assert (relay.port, relay.tls, relay.tls_verify) == (587, TLSMode.STARTTLS, True)
    assert (relay.interval, relay.timeout, relay.tls_min_version) == (60.0, 15.0, "1.2")
    assert (relay.auth, relay.rcpt_check, relay.mail_from, relay.expect) == (
        AuthConfig(AuthMechanism.NONE),
        None,
        "",
        None,
    )
    assert relay.ehlo_name
    assert (config.dns, config.max_concurrent_probes, config.warnings) == (DNSConfig(), 64, ())


@pytest.mark.parametrize(
    ("keys", "port", "tls"),
    [
        ("", 587, TLSMode.STARTTLS),
        ("tls: implicit", 465, TLSMode.IMPLICIT),
        ("port: 465", 465, TLSMode.IMPLICIT),
        ("port: 2525", 2525, TLSMode.STARTTLS),
        ("port: 25", 25, TLSMode.STARTTLS),
        ("port: 465\n    tls: implicit", 465, TLSMode.IMPLICIT),
    ],
)
def test_preset_fills_port_and_tls(keys: str, port: int, tls: TLSMode) -> None:
    """A preset supplies host, port and TLS; an explicit port gets the preset's mode for it."""
    relay = _relay(f"relays:\n  - name: r\n    preset: sendgrid\n    {keys}\n")
    assert (relay.host, relay.port, relay.tls, relay.preset) == (
        "smtp.sendgrid.net",
        port,
        tls,
        "sendgrid",
    )


@pytest.mark.parametrize(
    ("keys", "port", "tls"),
    [
        ("", 587, TLSMode.STARTTLS),
        ("tls: implicit", 465, TLSMode.IMPLICIT),
        ("tls: none", 25, TLSMode.NONE),
        ("port: 2465", 2465, TLSMode.IMPLICIT),
        ("port: 2525", 2525, TLSMode.STARTTLS),
    ],
)
def test_port_and_tls_inferred_without_preset(keys: str, port: int, tls: TLSMode) -> None:
    """Without a preset, the port follows the TLS mode and the TLS mode follows the port."""
    relay = _relay(f"relays:\n  - name: r\n    host: smtp.example.com\n    {keys}\n")
    assert (relay.port, relay.tls) == (port, tls)


def test_precedence_relay_over_defaults_over_preset() -> None:
    """A relay key beats the defaults block, which beats the preset, which beats built-ins."""
    text = """
defaults:
  tls: implicit
  interval: 90s
  timeout: 20s
relays:
  - name: relay-wins
    preset: resend
    host: smtp.eu.resend.example
    tls: starttls
    interval: 30s
  - name: defaults-win
    preset: resend
"""
    first, second = parse_config(text, environ={}).relays
    assert (first.host, first.port, first.tls) == ("smtp.eu.resend.example", 587, TLSMode.STARTTLS)
    assert (first.interval, first.timeout) == (30.0, 20.0)
    assert (second.host, second.port, second.tls) == ("smtp.resend.com", 465, TLSMode.IMPLICIT)
    assert (second.interval, second.timeout) == (90.0, 20.0)


def test_defaults_block_applies_to_every_relay(tmp_path: Path) -> None:
    """Keys in defaults reach every relay, including auth and ca_file, unless a relay sets null."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("pem\n")
    text = f"""
defaults:
  ehlo_name: probe.example.com
  ca_file: {ca_file}
  tls_min_version: 1.3
  mail_from: probe@example.com
  auth:
    username: probe
    password_env: SMTP_PASSWORD
relays:
  - name: a
    host: a.example.com
  - name: b
    host: b.example.com
    ca_file: null
    auth: null
"""
    first, second = parse_config(text, environ=ENV).relays
    assert (first.ehlo_name, first.ca_file, first.tls_min_version) == (
        "probe.example.com",
        str(ca_file),
        "1.3",
    )
    assert first.auth == AuthConfig(AuthMechanism.PLAIN, "probe", password=Secret("pw"))
    assert first.mail_from == second.mail_from == "probe@example.com"
    assert (second.ca_file, second.auth) == (None, AuthConfig(AuthMechanism.NONE))


def test_bad_default_is_reported_once() -> None:
    """A bad value in defaults is reported at its defaults path once, not once per relay."""
    text = """
defaults:
  interval: 5x
relays:
  - {name: a, host: a.example.com}
  - {name: b, host: b.example.com}
"""
    assert _problems(text) == [f'defaults.interval: "5x" is not a duration; {DURATION_HELP}']


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        (" 10s ", 10.0),
        ("45", 45.0),
        (30, 30.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    """Durations with h, m, s and ms units, in that order, and bare numbers become seconds."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("5x", '"5x"'),
        ("", '""'),
        ("s", '"s"'),
        ("-5s", '"-5s"'),
        ("30s5m", '"30s5m"'),
        ("5 m", '"5 m"'),
        (True, "True"),
        (None, "None"),
        ([30], "a list"),
        (float("inf"), "inf"),
    ],
)
def test_parse_duration_rejects(value: object, shown: str) -> None:
    """Anything else raises ValueError naming the value and the accepted format."""
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == f"{shown} is not a duration; {DURATION_HELP}"


def test_tls_verify_false_is_warned() -> None:
    """Turning certificate verification off loads, with a warning at the relay."""
    text = "relays: [{name: r, host: smtp.example.com, tls_verify: false}]"
    assert _warnings(text) == [
        "relays[0].tls_verify: certificate verification is off for this relay; "
        "anyone on the path can read the credentials"
    ]
    assert _relay(text).tls_verify is False


@pytest.mark.parametrize(
    ("value", "where"),
    [("key ", "ends"), ("\tkey", "starts"), (" key\n", "starts and ends")],
)
def test_secret_with_whitespace_is_warned(value: str, where: str) -> None:
    """A secret with leading or trailing whitespace loads as is, warned with its source."""
    text = """
relays:
  - name: r
    host: smtp.example.com
    auth: {username: u, password_env: PASTED}
"""
    assert _warnings(text, {"PASTED": value}) == [
        f"relays[0].auth.password_env: the secret from env PASTED {where} with whitespace; "
        "pasted secrets often do \N{EM DASH} remove it"
    ]
    password = _relay(text, {"PASTED": value}).auth.password
    assert password is not None
    assert password.reveal() == value


def test_port_25_with_auth_is_warned() -> None:
    """Authenticating on port 25 loads, with a warning that clouds block it."""
    text = """
relays:
  - name: r
    host: smtp.example.com
    port: 25
    auth: {username: u, password_env: SMTP_PASSWORD}
"""
    assert _warnings(text) == [
        "relays[0].port: port 25 with authentication: most clouds block outbound 25; use 587"
    ]


def test_odd_tls_none_settings_are_warned() -> None:
    """tls: none on a submission port, and TLS keys that tls: none ignores, are warnings."""
    text = """
relays:
  - name: r
    host: smtp.example.com
    port: 587
    tls: none
    tls_min_version: "1.3"
"""
    assert _warnings(text) == [
        "relays[0].tls: tls: none on port 587, which normally speaks STARTTLS; "
        "set tls: starttls unless this server has no TLS",
        "relays[0].tls_min_version: ignored with tls: none; remove it",
    ]


def test_plain_http_token_url_is_warned_unless_loopback() -> None:
    """An http token_url to a remote host is a warning; to localhost it is fine."""
    text = """
relays:
  - name: r
    host: smtp.example.com
    auth:
      username: u
      oauth2:
        token_url: {url}
        client_id: abc
        client_secret_env: CLIENT_SECRET
"""
    assert _warnings(text.format(url="http://127.0.0.1:8080/token")) == []
    assert _warnings(text.format(url="http://idp.example.com/token")) == [
        "relays[0].auth.oauth2.token_url: plain http to a remote host exposes the client secret "
        "and tokens; use https"
    ]


def test_plaintext_credentials_allowed_for_negative_check() -> None:
    """Credentials with tls: none load when expect is set, since the probe never sends them."""
    text = """
relays:
  - name: r
    host: smtp.example.com
    port: 2525
    tls: none
    expect: starttls_unsupported
    auth: {username: u, password_env: SMTP_PASSWORD}
"""
    assert _relay(text).expect == Reason.STARTTLS_UNSUPPORTED


def test_secret_read_from_env() -> None:
    """password_env reads the variable from the environ passed in, and records the source."""
    text = "relays: [{name: r, host: h.example.com, auth: {username: u, password_env: PW}}]"
    password = _relay(text, {"PW": "s3cret"}).auth.password
    assert password is not None
    assert (password.reveal(), password.source) == ("s3cret", "env:PW")


def test_secret_read_from_file(tmp_path: Path) -> None:
    """password_file reads the file, dropping one trailing newline."""
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    auth = f"{{username: u, password_file: {secret}}}"
    text = f"relays: [{{name: r, host: h.example.com, auth: {auth}}}]"
    password = _relay(text, {}).auth.password
    assert password is not None
    assert (password.reveal(), password.source) == ("s3cret", f"file:{secret}")


def test_missing_env_var_names_the_variable() -> None:
    """An unset variable is an error at the key's path that says to export it."""
    text = "relays: [{name: r, host: h.example.com, auth: {username: u, password_env: SMTP_PW}}]"
    assert _problems(text, {}) == [
        "relays[0].auth.password_env: environment variable SMTP_PW is not set; "
        "export it before starting"
    ]


def test_secrets_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    """repr() and str() of the config, and warnings about a secret, never show its value."""
    secret = tmp_path / "refresh"
    secret.write_text("refresh-VALUE-42\n")
    text = f"""
relays:
  - name: a
    host: a.example.com
    auth: {{username: u, password_env: PW}}
  - name: b
    host: b.example.com
    auth:
      username: u
      oauth2:
        token_url: https://idp.example.com/token
        client_id: abc
        client_secret_env: CS
        refresh_token_file: {secret}
"""
    config = parse_config(text, environ={"PW": "password-VALUE-17 ", "CS": "client-VALUE-99"})
    assert config.warnings
    shown = repr(config) + str(config) + "".join(str(problem) for problem in config.warnings)
    for value in ("password-VALUE-17", "client-VALUE-99", "refresh-VALUE-42"):
        assert value not in shown


def test_tls_off_read_as_false_by_yaml_is_explained() -> None:
    """tls: off, which YAML reads as false, gets a message that names the YAML gotcha."""
    assert _problems("relays: [{name: r, host: h.example.com, tls: off}]") == [
        "relays[0].tls: YAML reads off, no and false as false; use starttls, implicit or none"
    ]


def test_secret_pasted_as_env_name_is_not_echoed() -> None:
    """A secret written where the variable name belongs is rejected without showing it."""
    text = "relays: [{name: r, host: h.example.com, auth: {username: u, password_env: SG.x-1}}]"
    assert _problems(text) == [
        "relays[0].auth.password_env: not an environment variable name; give the variable's "
        "name (letters, digits and _), not the secret"
    ]


def test_inline_secret_is_not_echoed() -> None:
    """An inline password is rejected without repeating the value in the message."""
    text = "relays: [{name: r, host: h.example.com, auth: {username: u, password: hunter2}}]"
    problems = _problems(text)
    assert problems
    assert not any("hunter2" in line for line in problems)


@pytest.mark.parametrize("name", [*sorted(PRESETS), "ses-eu-west-1", "ses-us-east-1"])
def test_every_preset_resolves_to_a_valid_relay(name: str) -> None:
    """Each preset alone yields a relay with its host, port and TLS mode, and no warning."""
    preset = lookup_preset(name)
    assert preset is not None
    assert (preset.port, preset.tls) in preset.ports
    text = f"relays: [{{name: r, preset: {name}}}]"
    config = parse_config(text, environ={})
    relay = config.relays[0]
    assert (relay.host, relay.port, relay.tls, relay.preset) == (
        preset.host,
        preset.port,
        preset.tls,
        name,
    )
    assert config.warnings == ()


def test_ses_preset_builds_the_regional_host() -> None:
    """ses-<region> gives the regional SES endpoint with its STARTTLS and implicit ports."""
    preset = lookup_preset("ses-eu-west-1")
    assert preset is not None
    assert preset.host == "email-smtp.eu-west-1.amazonaws.com"
    assert preset.tls_for(2465) == TLSMode.IMPLICIT
    assert preset.tls_for(2587) == TLSMode.STARTTLS
    assert lookup_preset("ses-eu-west") is None
    assert lookup_preset("ses-eu-west-1\n") is None
    assert lookup_preset("nope") is None


def test_several_problems_are_reported_together() -> None:
    """One load reports every error across relays, dns and top-level keys, not just the first."""
    text = """
max_concurrent_probes: many
dns:
  nameservers: ["localhost"]
relays:
  - name: a
    host: smtp.example.com
    port: 465
    tls: starttls
    interval: 10s
    timeout: 30s
  - name: a
    preset: nope-mail
    expect: maybe
"""
    assert _problems(text) == [
        "relays[0].tls: 465 speaks implicit TLS; set tls: implicit",
        "relays[0].timeout: timeout 30s must be shorter than interval 10s; "
        "raise interval or lower timeout",
        'relays[1].name: duplicate name "a" (also relays[0]); relay names must be unique',
        'relays[1].preset: unknown preset "nope-mail"; valid presets are '
        + ", ".join([*sorted(PRESETS), "ses-<region>"]),
        f'relays[1].expect: "maybe" is not a failure reason; use {REASONS}',
        f'dns.nameservers[0]: "localhost" is not an IP address with an optional port; '
        f"{NAMESERVER_HELP}",
        "max_concurrent_probes: expected an integer, got 'many'",
    ]


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    """A config path that does not exist is one problem at that path."""
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{path}: file not found; pass --config.file with an existing file"
    ]


def test_load_config_records_the_source(tmp_path: Path) -> None:
    """load_config stores the file path as the config's source."""
    path = tmp_path / "config.yaml"
    path.write_text("relays: [{name: r, host: smtp.example.com}]\n")
    assert load_config(path, environ={}).source == str(path)


def test_duplicate_keys_are_reported_at_their_paths() -> None:
    """A key given twice in any mapping is an error at its path, in file order, with the rest."""
    text = """
dns:
  timeout: 2s
  timeout: 3s
relays:
  - name: a
    host: a.example.com
    auth:
      username: u
      "username": v
      password_env: SMTP_PASSWORD
    port: 465
    tls: starttls
max_concurrent_probes: 2
max_concurrent_probes: 3
"""
    assert _problems(text) == [
        "dns.timeout: duplicate key; remove one of the two",
        "relays[0].auth.username: duplicate key; remove one of the two",
        "max_concurrent_probes: duplicate key; remove one of the two",
        "relays[0].tls: 465 speaks implicit TLS; set tls: implicit",
    ]


def test_duplicate_key_behind_an_alias_is_reported_once_at_its_anchor() -> None:
    """A mapping used again through an alias reports its duplicate once, where it is written."""
    text = """
defaults:
  auth: &auth {username: u, username: v, password_env: SMTP_PASSWORD}
relays:
  - {name: a, host: a.example.com, auth: *auth}
  - {name: b, host: b.example.com, auth: *auth}
"""
    assert _problems(text) == ["defaults.auth.username: duplicate key; remove one of the two"]


def test_merge_keys_may_be_overridden() -> None:
    """A key that overrides one brought in by a << merge is not a duplicate."""
    text = """
relays:
  - &first
    name: a
    host: a.example.com
    port: 2525
  - <<: *first
    name: b
    port: 2526
"""
    first, second = parse_config(text, environ={}).relays
    assert (first.name, first.host, first.port) == ("a", "a.example.com", 2525)
    assert (second.name, second.host, second.port) == ("b", "a.example.com", 2526)


def test_load_config_resolves_relative_paths_from_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ca_file and every *_file secret in a loaded file start from the file's directory."""
    etc = tmp_path / "etc"
    (etc / "certs").mkdir(parents=True)
    (etc / "secrets").mkdir()
    (etc / "certs" / "ca.pem").write_text("pem\n")
    for name in ("password", "token", "client-secret", "refresh-token"):
        (etc / "secrets" / name).write_text(f"{name}-value\n")
    (etc / "config.yaml").write_text(
        """
relays:
  - name: password
    host: a.example.com
    ca_file: certs/ca.pem
    auth: {username: u, password_file: secrets/password}
  - name: token
    host: b.example.com
    auth: {username: u, token_file: secrets/token}
  - name: oauth2
    host: c.example.com
    auth:
      username: u
      oauth2:
        token_url: https://idp.example.com/token
        client_id: abc
        client_secret_file: secrets/client-secret
        refresh_token_file: secrets/refresh-token
"""
    )
    monkeypatch.chdir(tmp_path)
    password, token, oauth2 = load_config(etc / "config.yaml", environ={}).relays
    assert password.ca_file == str(etc / "certs" / "ca.pem")
    assert oauth2.auth.oauth2 is not None
    secrets = [
        password.auth.password,
        token.auth.token,
        oauth2.auth.oauth2.client_secret,
        oauth2.auth.oauth2.refresh_token,
    ]
    names = ["password", "token", "client-secret", "refresh-token"]
    assert [(s.reveal(), s.source) if s else None for s in secrets] == [
        (f"{name}-value", f"file:{etc / 'secrets' / name}") for name in names
    ]
    relative = load_config(Path("etc") / "config.yaml", environ={}).relays[0]
    assert relative.ca_file == str(Path("etc") / "certs" / "ca.pem")


def test_parse_config_resolves_relative_paths_from_working_or_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """parse_config starts relative paths from the working directory, or from base_dir if given."""
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "ca.pem").write_text("pem\n")
    (other / "ca.pem").write_text("pem\n")
    monkeypatch.chdir(tmp_path)
    text = "relays: [{name: r, host: h.example.com, ca_file: ca.pem}]"
    assert _relay(text).ca_file == "ca.pem"
    assert parse_config(text, environ={}, base_dir=str(other)).relays[0].ca_file == str(
        other / "ca.pem"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={}, base_dir=str(tmp_path / "absent"))
    assert [str(problem) for problem in caught.value.problems] == [
        f"relays[0].ca_file: file {tmp_path / 'absent' / 'ca.pem'} does not exist; "
        "point ca_file at a PEM file of CAs"
    ]


def test_example_config_loads(tmp_path: Path) -> None:
    """config.example.yaml loads without errors or warnings once its env vars and files exist."""
    text = EXAMPLE.read_text()
    for index, path in enumerate(sorted(set(re.findall(r"_file: (/\S+)", text)))):
        local = tmp_path / f"file-{index}"
        local.write_text("placeholder-secret\n")
        text = text.replace(path, str(local))
    environ = {
        "SENDGRID_API_KEY": "SG.key",
        "O365_CLIENT_SECRET": "o365-secret",
        "GMAIL_CLIENT_SECRET": "gmail-secret",
        "GMAIL_REFRESH_TOKEN": "gmail-refresh",
    }
    config = parse_config(text, source=str(EXAMPLE), environ=environ)
    assert config.warnings == ()
    assert config.max_concurrent_probes == 16
    by_name = {relay.name: relay for relay in config.relays}
    assert set(by_name) == {"sendgrid", "office365", "gmail", "postfix", "sendgrid-rejects-bad-key"}
    office365 = by_name["office365"].auth.oauth2
    assert office365 is not None
    assert office365.grant_type == "client_credentials"
    assert (by_name["postfix"].port, by_name["postfix"].tls) == (465, TLSMode.IMPLICIT)
    assert by_name["sendgrid-rejects-bad-key"].expect == Reason.AUTH_FAILED
