"""Tests for loading and validating the YAML config and the provider presets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.config import (
    AuthConfig,
    AuthMechanism,
    CanaryConfig,
    CanaryTarget,
    Config,
    ConfigError,
    DNSConfig,
    MailboxConfig,
    OAuth2Config,
    Problem,
    RelayConfig,
    TLSMode,
    load_config,
    parse_config,
    parse_duration,
)
from exporter.config.presets import PRESETS, lookup_preset
from exporter.config.secret import Secret
from exporter.model import Reason

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
ENV = {"SMTP_PASSWORD": "pw", "SMTP_TOKEN": "tok", "CLIENT_SECRET": "cs", "REFRESH_TOKEN": "rt"}
DURATION_HELP = "use a number with s, m or h, e.g. 30s or 5m"
ADDRESS_HELP = "write it as user@example.com without <>"
NAMESERVER_HELP = "write e.g. 127.0.0.1:5300, ::1 or [::1]:53"
NAME_HELP = 'use letters, digits, "_", "." and "-", starting with a letter or digit'
INSTANCE_HELP = 'use up to 63 letters, digits, "_", "." and "-", starting with a letter or digit'
IMAP_MECHANISMS = "IMAP canary mailboxes need login, plain or xoauth2"
# Braces doubled: the table's lines go through str.format.
TO_HELP = "list at least one recipient as {{address: ..., mailbox: ...}}"
FOLDERS_HELP = "e.g. {{inbox: INBOX, spam: Junk}}"
NO_AUTHSERV_IDS = (
    "no Authentication-Results header will be trusted, so every verdict reads none; "
    "list the receiver's authserv-id, e.g. mx.google.com"
)
UNUSED_MAILBOX = "no relay sends canaries here; add it to a relay's canary.to or remove it"
REASONS = (
    "dns_error, connect_refused, connect_timeout, greeting_timeout, tls_mode_mismatch, "
    "tls_handshake_failed, tls_version_too_old, tls_cert_invalid, starttls_unsupported, "
    "auth_unsupported, "
    "auth_failed, rejected_temporary, rejected_permanent, protocol_error or timeout"
)

# One file per rule; "{file}" stands for the file's own path, "{dir}" for its directory.
INVALID: dict[str, list[str]] = {
    "yaml-syntax": [
        "{file}: invalid YAML at line 4: expected <block end>, but found "
        "'<block mapping start>'; fix the syntax on that line"
    ],
    "top-level": ["{file}: expected a mapping with a relays: list, got a list"],
    "metrics": [
        "defaults.metrics: cannot be set in defaults; set metrics: at the top level for every "
        "relay, or on a relay for that one",
        "metrics.phase_histograms[1]: 'tsl' is not a phase; use one of resolve, connect, "
        "greeting, ehlo, tls, auth, mail, rcpt, data, quit",
        "metrics.buckets[2]: 0.5 does not exceed 1.0 before it; list the bounds in increasing "
        "order, each once",
        "relays[0].metrics.bucket: unknown key; did you mean buckets?",
        "relays[0].metrics.buckets[0]: -0.1 is not above 0; bucket bounds are seconds, use a "
        "positive number",
        "relays[1].metrics.phase_histograms[1]: connect is listed twice; list it once",
        "relays[1].metrics.buckets: expected a list of upper bounds in seconds, e.g. "
        "[0.01, 0.1, 1], got an empty list",
    ],
    "relays-missing": ["relays: missing; add at least one relay"],
    "relays-empty": ["relays: empty; add at least one relay"],
    "relay-not-mapping": ["relays[0]: expected a mapping of relay settings, got a string"],
    "unknown-key": [
        "relays[0].hots: unknown key; did you mean host?",
        "relays[0].host: missing; set host or a preset",
    ],
    "unknown-key-no-match": ["dns.zzz: unknown key; valid keys are interval, nameservers, timeout"],
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
    "yaml-bad-tag": [
        "{file}: invalid YAML at line 4: 'abc' is not a valid !!int; "
        "fix the value or remove the tag"
    ],
    "instance": [f'instance: "eu west 1a" is not a valid instance name; {INSTANCE_HELP}'],
    "state-dir": ["state_dir: empty; give a directory, or leave state_dir out for the default"],
    "mailboxes-not-list": ["mailboxes: expected a list of mailboxes, got a mapping"],
    "mailbox-not-mapping": ["mailboxes[0]: expected a mapping of mailbox settings, got a string"],
    "mailbox-name": [
        "mailboxes[0].name: missing; give the mailbox a unique name",
        'mailboxes[2].name: duplicate name "gmail" (also mailboxes[1]); '
        "mailbox names must be unique",
        f'mailboxes[3].name: "my mailbox" is not a valid name; {NAME_HELP}',
    ],
    "mailbox-host-missing": [
        "mailboxes[0].host: missing; set the IMAP server, e.g. imap.gmail.com"
    ],
    "mailbox-unknown-key": [
        "mailboxes[0].tls_server_name: not supported for mailboxes; the certificate must name host",
        "mailboxes[0].foldres: unknown key; did you mean folders?",
    ],
    "mailbox-starttls-on-993": ["mailboxes[0].tls: 993 speaks implicit TLS; set tls: implicit"],
    "mailbox-implicit-on-143": ["mailboxes[0].tls: 143 speaks STARTTLS; set tls: starttls"],
    "mailbox-ca-file-no-verify": [
        "mailboxes[0].ca_file: ca_file is set but tls_verify is false; "
        "remove ca_file or set tls_verify: true"
    ],
    "mailbox-auth-mechanism": [
        f"mailboxes[0].auth.mechanism: {IMAP_MECHANISMS}",
        f"mailboxes[1].auth.mechanism: {IMAP_MECHANISMS}",
        'mailboxes[2].auth.mechanism: "ntlm" is not supported; use login, plain or xoauth2',
    ],
    "mailbox-auth-missing": [
        f"mailboxes[0].auth: missing; {IMAP_MECHANISMS}: set username and password_env, or a token"
    ],
    "mailbox-plaintext-auth": [
        "mailboxes[0].auth: credentials would cross the network unencrypted; "
        "use tls: implicit or starttls, or set allow_plaintext_auth: true"
    ],
    "mailbox-folders": [
        'mailboxes[0].folders.Spam: "Spam" is not a valid label; '
        'use lowercase letters, digits, "_" and "-", starting with a letter',
        "mailboxes[0].folders.junk: empty; give the IMAP folder's name, e.g. INBOX",
        'mailboxes[0].folders.primary: folder "inbox" is also labelled inbox; '
        "list each folder once",
        "mailboxes[1].folders: expected a mapping of label to folder name, "
        f"{FOLDERS_HELP}, got a list",
        f"mailboxes[2].folders: empty; list at least one folder, {FOLDERS_HELP}",
    ],
    "mailbox-authserv-ids": [
        "mailboxes[0].trusted_authserv_ids: expected a list of authserv-ids, "
        "e.g. [mx.google.com], got 'mx.google.com'",
        "mailboxes[1].trusted_authserv_ids[1]: expected a string, got 42",
    ],
    "mailbox-timings": [
        "mailboxes[0].idle: expected true or false, got 'sometimes'",
        "mailboxes[0].poll_interval: poll_interval 0.5s is too short; use at least 1s",
        "mailboxes[0].timeout: timeout 0s must be more than 0s; use e.g. 30s",
    ],
    "mailbox-move-to": [
        'mailboxes[0].move_to: "Inbox" is watched as folders.inbox, so a moved canary would '
        "be found again; move canaries to a folder not listed under folders",
        "mailboxes[1].move_to: empty; give the IMAP folder's name, e.g. INBOX",
    ],
    "canary-not-mapping": ["relays[0].canary: expected a mapping of canary settings, got a list"],
    "canary-in-defaults": ["defaults.canary: cannot be set in defaults; set it on each relay"],
    "canary-unknown-key": [
        "relays[0].canary.sender: unknown key; the sender address is set with from:",
        "relays[0].canary.intervall: unknown key; did you mean interval?",
        "relays[0].canary.to[0].adress: unknown key; did you mean address?",
    ],
    "canary-missing-keys": [
        "relays[0].canary.from: missing; set the address canaries are sent from",
        f"relays[0].canary.to: missing; {TO_HELP}",
        f"relays[1].canary.to: empty; {TO_HELP}",
    ],
    "canary-address": [
        f'relays[0].canary.from: "<canary@example.com>" is not an address; {ADDRESS_HELP}',
        f'relays[0].canary.to[0].address: "canary" is not an address; {ADDRESS_HELP}',
    ],
    "canary-to-shape": [
        "relays[0].canary.to: expected a list of recipients, got 'canary@gmail.example'; "
        + TO_HELP,
        "relays[1].canary.to[0]: expected a mapping with address and mailbox, got a string",
        "relays[1].canary.to[1].address: missing; set the address the canary is sent to",
        "relays[1].canary.to[2].mailbox: missing; name the mailbox under mailboxes: "
        "that receives it",
        'relays[1].canary.to[3].address: "canary@gmail.example" is listed twice '
        "(also relays[1].canary.to[2]); list each recipient once",
        "relays[1].canary.to[3].mailbox: gmail-canary already receives this canary "
        "(also relays[1].canary.to[1]); send to each mailbox through one address",
        'relays[1].canary.to[4].address: "Canary@Gmail.example" is listed twice '
        "(also relays[1].canary.to[2]); list each recipient once",
        "relays[1].canary.to[4].mailbox: gmail-canary already receives this canary "
        "(also relays[1].canary.to[1]); send to each mailbox through one address",
    ],
    "canary-mailbox-typo": [
        'relays[0].canary.to[1].mailbox: no mailbox named "gmail-canry"; did you mean gmail-canary?'
    ],
    "canary-mailbox-unknown": [
        'relays[0].canary.to[2].mailbox: no mailbox named "yahoo"; configured mailboxes: a, b'
    ],
    "canary-no-mailboxes": [
        'relays[0].canary.to[0].mailbox: no mailbox named "gmail-canary"; add it under mailboxes:'
    ],
    "canary-timings": [
        "relays[0].canary.interval: interval 5s is too short; use at least 10s",
        "relays[0].canary.max_per_day: 0 is too small; use 1 or more",
        "relays[0].canary.timeout: timeout 0s must be more than 0s; use e.g. 10m",
    ],
    "canary-max-per-day": [
        "relays[0].canary.interval: 5m sends 288 canaries a day, above max_per_day 200; "
        "raise interval to at least 7m12s"
    ],
    "dns-checks": [
        "dns.interval: interval 5s is too short; use at least 10s",
        'domains[0].name: "not a domain" is not a domain name; use e.g. example.com',
        'domains[1].dkim_selectors[1]: "s 2" is not a DKIM selector; use the label before '
        "._domainkey",
        "domains[1].expect_spf_includes[1]: sendgrid.net is listed twice; list it once",
        "domains[2].name: example.com is listed twice (also domains[1]); list each domain once",
        "domains[3].name: missing; set the sending domain, e.g. example.com",
        'blocklists[1]: "127.0.0.1" is not a domain name; use e.g. example.com',
    ],
    "egress-addresses": [
        "defaults.egress_addresses: cannot be set in defaults; set it on each relay",
        'relays[0].egress_addresses[1]: "mail.example.com" is not an IP address; use e.g. '
        "203.0.113.25 or 2001:db8::25",
        "relays[0].egress_addresses[3]: 203.0.113.25 is listed twice; list it once",
        "relays[1].egress_addresses: expected a list of IP addresses, got '203.0.113.26'",
    ],
    "canary-mailbox-twice": [
        "relays[0].canary.to[1].mailbox: box already receives this canary (also "
        "relays[0].canary.to[0]); send to each mailbox through one address"
    ],
    "canary-with-expect": [
        "relays[0].canary: a relay with expect must fail, so it cannot deliver canaries; "
        "move canary to a relay without expect"
    ],
    "modules-not-mapping": [
        "modules: expected a mapping of module names to relay settings, got a list"
    ],
    "module-name": [
        'modules.my module: "my module" is not a valid module name; use letters, digits, '
        '"_", "." and "-", starting with a letter or digit'
    ],
    "module-endpoint": [
        "modules.submission.name: a module is named by its key under modules:; remove name",
        "modules.submission.host: the host comes from /probe's target=HOST:PORT; remove it "
        "from the module",
        "modules.submission.port: the port comes from /probe's target=HOST:PORT; remove it "
        "from the module",
    ],
    "module-canary": [
        "modules.submission.canary: /probe sends no canaries; move canary to a relay under "
        "relays:"
    ],
    "module-secret-env-missing": [
        "modules.submission.auth.password_env: environment variable NOT_SET_ANYWHERE is not "
        "set; export it before starting"
    ],
    "module-plaintext-auth": [
        "modules.plain.auth: credentials would cross the network unencrypted; use tls: "
        "starttls or implicit, or set allow_plaintext_auth: true"
    ],
    "module-values": [
        'modules.submission.preset: unknown preset "sendgird"; did you mean sendgrid?',
        "modules.submission.auth.password: inline secrets are not allowed; use password_env "
        "or password_file",
        'modules.submission.tls: "startls" is not a TLS mode; use starttls, implicit or none',
        "modules.submission.timeout: timeout 0s must be more than 0s; use e.g. 15s",
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
instance: probe-1.eu_west
state_dir: /var/lib/probe
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
        instance="probe-1.eu_west",
        state_dir="/var/lib/probe",
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
        "GMAIL_APP_PASSWORD": "gmail-app-password",
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
    gmail_box, outlook_box = config.mailboxes
    assert (gmail_box.name, gmail_box.port, gmail_box.tls) == (
        "gmail-canary",
        993,
        TLSMode.IMPLICIT,
    )
    assert gmail_box.folders == (("inbox", "INBOX"), ("spam", "[Gmail]/Spam"))
    assert gmail_box.auth.mechanism == AuthMechanism.LOGIN
    assert outlook_box.auth.oauth2 is not None
    assert outlook_box.auth.oauth2.grant_type == "client_credentials"
    assert outlook_box.auth.oauth2.scope == "https://outlook.office365.com/.default"
    canary = by_name["sendgrid"].canary
    assert canary is not None
    assert [target.mailbox for target in canary.to] == ["gmail-canary", "outlook-canary"]


MAILBOX = """
mailboxes:
  - name: box
    host: imap.example.com
    auth: {{username: canary@example.com, password_env: SMTP_PASSWORD}}
    trusted_authserv_ids: [mx.example.com]
    {keys}
relays:
  - name: relay
    host: smtp.example.com
    canary:
      from: canary@example.com
      to: [{{address: canary@example.com, mailbox: box}}]
      {canary}
"""


def _mailbox_config(keys: str = "", canary: str = "") -> Config:
    """One mailbox (with ``keys`` added) that one relay's canary (with ``canary``) sends to."""
    return parse_config(MAILBOX.format(keys=keys, canary=canary), environ=ENV)


def test_full_canary_config_round_trip(tmp_path: Path) -> None:
    """Mailboxes and a relay's canary block using every key load into exactly the values written."""
    ca_file = tmp_path / "imap-ca.pem"
    ca_file.write_text("not checked here\n")
    text = f"""
instance: eu-west-1a
state_dir: /var/lib/smtp-canary-exporter
mailboxes:
  - name: gmail-canary
    host: imap.gmail.com
    port: 993
    tls: implicit
    tls_verify: true
    ca_file: {ca_file}
    tls_min_version: "1.3"
    auth:
      mechanism: plain
      username: canary@example.com
      password_env: SMTP_PASSWORD
    folders: {{inbox: INBOX, spam: "[Gmail]/Spam", all_mail: "[Gmail]/All Mail"}}
    trusted_authserv_ids: [mx.google.com, ""]
    idle: false
    poll_interval: 45s
    timeout: 20s
    move_to: Canaries/Read
    allow_plaintext_auth: false
  - name: outlook-canary
    host: outlook.office365.com
    auth:
      username: canary@example.org
      oauth2:
        token_url: https://login.microsoftonline.com/TENANT/oauth2/v2.0/token
        client_id: abc
        client_secret_env: CLIENT_SECRET
        scope: https://outlook.office365.com/.default
    trusted_authserv_ids: [""]
  - name: lab
    host: 192.0.2.143
    tls: none
    auth: {{username: lab, password_env: SMTP_PASSWORD}}
    trusted_authserv_ids: [lab.example.com]
    allow_plaintext_auth: true
relays:
  - name: sendgrid
    host: smtp.sendgrid.net
    canary:
      from: canary@example.com
      to:
        - {{address: canary@example.com, mailbox: gmail-canary}}
        - {{address: canary@example.org, mailbox: outlook-canary}}
      interval: 7m12s
      timeout: 15m
      max_per_day: 200
  - name: lab
    host: 192.0.2.25
    canary:
      from: canary@example.com
      to: [{{address: lab@lab.example.com, mailbox: lab}}]
"""
    config = parse_config(text, source="test.yaml", environ=ENV)
    gmail = MailboxConfig(
        name="gmail-canary",
        host="imap.gmail.com",
        port=993,
        tls=TLSMode.IMPLICIT,
        tls_verify=True,
        ca_file=str(ca_file),
        tls_min_version="1.3",
        auth=AuthConfig(AuthMechanism.PLAIN, "canary@example.com", password=Secret("pw")),
        folders=(("inbox", "INBOX"), ("spam", "[Gmail]/Spam"), ("all_mail", "[Gmail]/All Mail")),
        trusted_authserv_ids=("mx.google.com", ""),
        idle=False,
        poll_interval=45.0,
        timeout=20.0,
        move_to="Canaries/Read",
        allow_plaintext_auth=False,
    )
    oauth2 = OAuth2Config(
        token_url="https://login.microsoftonline.com/TENANT/oauth2/v2.0/token",
        client_id="abc",
        client_secret=Secret("cs"),
        refresh_token=None,
        scope="https://outlook.office365.com/.default",
        grant_type="client_credentials",
    )
    outlook = MailboxConfig(
        name="outlook-canary",
        host="outlook.office365.com",
        port=993,
        tls=TLSMode.IMPLICIT,
        auth=AuthConfig(AuthMechanism.XOAUTH2, "canary@example.org", oauth2=oauth2),
        trusted_authserv_ids=("",),
    )
    lab = MailboxConfig(
        name="lab",
        host="192.0.2.143",
        port=143,
        tls=TLSMode.NONE,
        auth=AuthConfig(AuthMechanism.LOGIN, "lab", password=Secret("pw")),
        trusted_authserv_ids=("lab.example.com",),
        allow_plaintext_auth=True,
    )
    assert config.mailboxes == (gmail, outlook, lab)
    assert (config.instance, config.state_dir) == ("eu-west-1a", "/var/lib/smtp-canary-exporter")
    sendgrid, lab_relay = config.relays
    assert sendgrid.canary == CanaryConfig(
        sender="canary@example.com",
        to=(
            CanaryTarget("canary@example.com", "gmail-canary"),
            CanaryTarget("canary@example.org", "outlook-canary"),
        ),
        interval=432.0,
        timeout=900.0,
        max_per_day=200,
    )
    assert lab_relay.canary == CanaryConfig(
        "canary@example.com", (CanaryTarget("lab@lab.example.com", "lab"),)
    )
    assert config.warnings == (
        Problem(
            "mailboxes[2].tls",
            "tls: none on port 143, which normally speaks STARTTLS; "
            "set tls: starttls unless this server has no TLS",
            "warning",
        ),
    )


def test_mailbox_and_canary_defaults() -> None:
    """A mailbox with name, host and auth gets 993 implicit TLS, INBOX, IDLE and 30s timings;
    a canary gets 5m, 10m and no daily limit; a relay without canary gets none."""
    config = _mailbox_config()
    (box,) = config.mailboxes
    assert box == MailboxConfig(
        name="box",
        host="imap.example.com",
        port=993,
        tls=TLSMode.IMPLICIT,
        auth=AuthConfig(AuthMechanism.LOGIN, "canary@example.com", password=Secret("pw")),
        trusted_authserv_ids=("mx.example.com",),
    )
    assert (box.folders, box.idle, box.poll_interval, box.timeout) == (
        (("inbox", "INBOX"),),
        True,
        30.0,
        30.0,
    )
    assert (box.move_to, box.allow_plaintext_auth, box.tls_verify) == (None, False, True)
    assert config.relays[0].canary == CanaryConfig(
        "canary@example.com", (CanaryTarget("canary@example.com", "box"),), 300.0, 600.0, None
    )
    assert config.warnings == ()
    plain = parse_config("relays: [{name: r, host: smtp.example.com}]", environ={})
    assert (plain.relays[0].canary, plain.mailboxes) == (None, ())


@pytest.mark.parametrize(
    ("keys", "port", "tls"),
    [
        ("", 993, TLSMode.IMPLICIT),
        ("tls: implicit", 993, TLSMode.IMPLICIT),
        ("tls: starttls", 143, TLSMode.STARTTLS),
        ("tls: none\n    allow_plaintext_auth: true", 143, TLSMode.NONE),
        ("port: 143", 143, TLSMode.STARTTLS),
        ("port: 10993", 10993, TLSMode.IMPLICIT),
        ("port: 10143\n    tls: starttls", 10143, TLSMode.STARTTLS),
    ],
)
def test_mailbox_port_and_tls_follow_each_other(keys: str, port: int, tls: TLSMode) -> None:
    """The IMAP port follows the TLS mode (993 implicit, 143 otherwise), and 143 means STARTTLS."""
    (box,) = _mailbox_config(keys).mailboxes
    assert (box.port, box.tls) == (port, tls)


def test_mailbox_auth_defaults_to_login_and_takes_xoauth2_tokens() -> None:
    """A password means login, a token means xoauth2; plain is allowed when asked for."""
    text = """
mailboxes:
  - {name: a, host: imap.example.com, auth: {username: u, password_env: SMTP_PASSWORD},
     trusted_authserv_ids: [x]}
  - {name: b, host: imap.example.com, auth: {username: u, token_env: SMTP_TOKEN},
     trusted_authserv_ids: [x]}
  - {name: c, host: imap.example.com,
     auth: {mechanism: plain, username: u, password_env: SMTP_PASSWORD},
     trusted_authserv_ids: [x]}
relays:
  - name: r
    host: smtp.example.com
    canary:
      from: c@example.com
      to: [{address: a@example.com, mailbox: a}, {address: b@example.com, mailbox: b},
           {address: c@example.com, mailbox: c}]
"""
    a, b, c = parse_config(text, environ=ENV).mailboxes
    assert a.auth == AuthConfig(AuthMechanism.LOGIN, "u", password=Secret("pw"))
    assert b.auth == AuthConfig(AuthMechanism.XOAUTH2, "u", token=Secret("tok"))
    assert c.auth == AuthConfig(AuthMechanism.PLAIN, "u", password=Secret("pw"))


def test_mailbox_warnings() -> None:
    """Verification off, no trusted authserv-id, tls: none on 993 and an unused mailbox warn."""
    text = """
mailboxes:
  - name: used
    host: imap.example.com
    tls_verify: false
    auth: {username: u, password_env: SMTP_PASSWORD}
  - name: spare
    host: imap.example.com
    port: 993
    tls: none
    allow_plaintext_auth: true
    tls_min_version: "1.3"
    auth: {username: u, password_env: SMTP_PASSWORD}
    trusted_authserv_ids: [mx.example.com]
relays:
  - name: r
    host: smtp.example.com
    canary: {from: c@example.com, to: [{address: a@example.com, mailbox: used}]}
"""
    assert _warnings(text) == [
        "mailboxes[0].tls_verify: certificate verification is off for this mailbox; "
        "anyone on the path can read the credentials",
        f"mailboxes[0].trusted_authserv_ids: {NO_AUTHSERV_IDS}",
        "mailboxes[1].tls: tls: none on port 993, which normally speaks implicit TLS; "
        "set tls: implicit unless this server has no TLS",
        "mailboxes[1].tls_min_version: ignored with tls: none; remove it",
        f"mailboxes[1]: {UNUSED_MAILBOX}",
    ]
    assert (
        _warnings(text.replace("[mx.example.com]", "[]")).count(
            f"mailboxes[1].trusted_authserv_ids: {NO_AUTHSERV_IDS}"
        )
        == 1
    )


@pytest.mark.parametrize(
    ("interval", "max_per_day", "problem"),
    [
        (
            "5m",
            200,
            "5m sends 288 canaries a day, above max_per_day 200; raise interval to at least 7m12s",
        ),
        ("7m12s", 200, None),
        (
            "7m11s",
            200,
            "7m11s sends 201 canaries a day, above max_per_day 200; "
            "raise interval to at least 7m12s",
        ),
        ("432", 200, None),
        ("1h", 24, None),
        (
            "1h",
            23,
            "1h sends 24 canaries a day, above max_per_day 23; raise interval to at least 1h2m37s",
        ),
        ("10s", 8640, None),
        (
            "10s",
            8639,
            "10s sends 8640 canaries a day, above max_per_day 8639; raise interval to at least 11s",
        ),
        ("90.5s", 955, None),
        (
            "90.5s",
            954,
            "1m30.5s sends 955 canaries a day, above max_per_day 954; "
            "raise interval to at least 1m31s",
        ),
    ],
)
def test_max_per_day_arithmetic(interval: str, max_per_day: int, problem: str | None) -> None:
    """A day holds ceil(86400 / interval) canaries; above max_per_day is an error that names
    the shortest interval within it, rounded up to whole seconds."""
    text = MAILBOX.format(keys="", canary=f"interval: {interval}\n      max_per_day: {max_per_day}")
    if problem is None:
        canary = parse_config(text, environ=ENV).relays[0].canary
        assert canary is not None
        assert canary.max_per_day == max_per_day
    else:
        assert _problems(text) == [f"relays[0].canary.interval: {problem}"]


def test_instance_from_config_environ_or_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    """instance: wins, then SMTP_CANARY_INSTANCE from the environ passed in, then the hostname;
    a hostname too long for an instance gives its first label."""
    monkeypatch.setattr("socket.gethostname", lambda: "exporter-7.example.com")
    text = "relays: [{name: r, host: smtp.example.com}]"
    env = {"SMTP_CANARY_INSTANCE": "eu-west-1a"}
    assert parse_config(text, environ={}).instance == "exporter-7.example.com"
    assert parse_config(text, environ=env).instance == "eu-west-1a"
    assert parse_config("instance: b\n" + text, environ=env).instance == "b"
    assert parse_config(text, environ={"SMTP_CANARY_INSTANCE": ""}).instance == (
        "exporter-7.example.com"
    )
    monkeypatch.setenv("SMTP_CANARY_INSTANCE", "from-os-environ")
    assert parse_config(text).instance == "from-os-environ"
    label = "pod-" + "x" * 59
    monkeypatch.setattr("socket.gethostname", lambda: label + ".cluster.local")
    assert parse_config(text, environ={}).instance == label


def test_bad_instance_from_environ_or_hostname_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unusable instance from the environment or the host is an error saying what to set."""
    text = "relays: [{name: r, host: smtp.example.com}]"
    assert _problems(text, {"SMTP_CANARY_INSTANCE": "eu west"}) == [
        f'instance: environment variable SMTP_CANARY_INSTANCE: "eu west" is not a valid '
        f"instance name; {INSTANCE_HELP}"
    ]
    monkeypatch.setattr("socket.gethostname", lambda: "_bad_")
    assert _problems(text, {}) == [
        'instance: this host\'s name "_bad_" cannot name the instance; set instance: or '
        f"SMTP_CANARY_INSTANCE to {INSTANCE_HELP.removeprefix('use ')}"
    ]


def test_state_dir_from_config_environ_or_home(tmp_path: Path) -> None:
    """state_dir: (relative to the config's directory), else STATE_DIRECTORY (its first path),
    else ~/.local/state/smtp-canary-exporter."""
    text = "relays: [{name: r, host: smtp.example.com}]"
    home = {"HOME": "/home/probe"}
    assert parse_config(text, environ=home).state_dir == (
        "/home/probe/.local/state/smtp-canary-exporter"
    )
    systemd = {**home, "STATE_DIRECTORY": "/var/lib/smtp-canary-exporter"}
    assert parse_config(text, environ=systemd).state_dir == "/var/lib/smtp-canary-exporter"
    several = {"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}
    assert parse_config(text, environ=several).state_dir == "/var/lib/a"
    configured = "state_dir: /srv/state\n" + text
    assert parse_config(configured, environ=systemd).state_dir == "/srv/state"
    assert parse_config("state_dir: ~/state\n" + text, environ=home).state_dir == (
        "/home/probe/state"
    )
    assert parse_config("state_dir: state\n" + text, environ={}).state_dir == "state"
    (tmp_path / "config.yaml").write_text("state_dir: state\n" + text)
    assert load_config(tmp_path / "config.yaml", environ={}).state_dir == str(tmp_path / "state")


def test_unknown_top_level_key_lists_the_new_keys() -> None:
    """The top-level keys include instance, mailboxes, modules and state_dir."""
    text = "statedir: /x\nrelays: [{name: r, host: smtp.example.com}]"
    assert _problems(text) == ["statedir: unknown key; did you mean state_dir?"]
    assert _problems("zzz: 1\nrelays: [{name: r, host: smtp.example.com}]") == [
        "zzz: unknown key; valid keys are blocklists, defaults, dns, domains, instance, "
        "mailboxes, max_concurrent_probes, metrics, modules, relays, "
        "state_dir"
    ]


def test_value_its_yaml_tag_cannot_read_is_a_problem() -> None:
    """A bad explicitly tagged value, or a plain one YAML reads as an impossible date, is a
    ConfigError with its line, never a bare ValueError."""
    cases = {
        "relays: [{name: r, host: h.example.com, tls_verify: !!bool maybe}]": (
            "line 1: 'maybe' is not a valid !!bool; fix the value or remove the tag"
        ),
        "relays:\n  - name: r\n    port: !!int ''\n": (
            "line 3: '' is not a valid !!int; fix the value or remove the tag"
        ),
        "relays:\n  - name: r\n    interval: !!float soon\n": (
            "line 3: 'soon' is not a valid !!float; fix the value or remove the tag"
        ),
        "relays:\n  - name: r\n    mail_from: 2024-13-01\n": (
            "line 3: '2024-13-01' is not a valid !!timestamp; quote it to keep it as text"
        ),
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError) as caught:
            parse_config(text, source="c.yaml", environ={})
        assert [str(problem) for problem in caught.value.problems] == [
            f"c.yaml: invalid YAML at {message}"
        ]


def test_mailbox_and_canary_secrets_never_appear_in_repr_or_str() -> None:
    """repr() and str() of a config with mailboxes and canaries never show a secret."""
    text = """
mailboxes:
  - name: a
    host: imap.example.com
    auth: {username: u, password_env: PW}
    trusted_authserv_ids: [x]
  - name: b
    host: imap.example.com
    auth:
      username: u
      oauth2:
        token_url: https://idp.example.com/token
        client_id: abc
        client_secret_env: CS
    trusted_authserv_ids: [x]
relays:
  - name: r
    host: smtp.example.com
    canary:
      from: c@example.com
      to: [{address: a@example.com, mailbox: a}, {address: b@example.com, mailbox: b}]
"""
    config = parse_config(text, environ={"PW": "imap-VALUE-17", "CS": "client-VALUE-99"})
    assert config.mailboxes[0].auth.password is not None
    shown = repr(config) + str(config) + repr(config.mailboxes) + str(config.relays[0].canary)
    for value in ("imap-VALUE-17", "client-VALUE-99"):
        assert value not in shown


def test_dns_check_domains_and_blocklists() -> None:
    """domains and blocklists load; canary From domains join the checked domains unasked."""
    from exporter.config import check_domains

    text = """
dns: {interval: 15m}
domains:
  - {name: Example.COM, dkim_selectors: [s1, google], expect_spf_includes: [sendgrid.net]}
blocklists: [zen.spamhaus.org, bl.spamcop.net]
mailboxes:
  - {name: box, host: imap.example.net, trusted_authserv_ids: [mx.example.net],
     auth: {username: u, password_env: SMTP_PASSWORD}}
relays:
  - name: r
    host: smtp.example.com
    canary: {from: canary@mail.example.org, to: [{address: a@example.net, mailbox: box}]}
  - name: s
    host: smtp.example.com
    canary: {from: canary@example.com, to: [{address: b@example.net, mailbox: box}]}
"""
    config = parse_config(text, environ=ENV)
    assert config.dns.interval == 900
    assert [d.name for d in config.domains] == ["example.com"]
    assert config.domains[0].dkim_selectors == ("s1", "google")
    assert config.domains[0].expect_spf_includes == ("sendgrid.net",)
    assert config.blocklists == ("zen.spamhaus.org", "bl.spamcop.net")
    checked = check_domains(config.domains, config.relays)
    assert [d.name for d in checked] == ["example.com", "mail.example.org"]
    assert checked[1].dkim_selectors == ()


def test_egress_addresses_are_normalised() -> None:
    """egress_addresses takes IPv4 and IPv6 (brackets allowed) and stores canonical text."""
    relay = _relay("""
relays:
  - name: r
    host: smtp.example.com
    egress_addresses: [203.0.113.25, "[2001:DB8:0::25]"]
""")
    assert relay.egress_addresses == ("203.0.113.25", "2001:db8::25")


def test_offline_turns_unreadable_secrets_and_files_into_notes(tmp_path: Path) -> None:
    """parse_config(offline=True) notes a missing variable, an empty one, a missing secret
    file and a missing ca_file (with a placeholder secret) but still refuses a bad field."""
    text = (
        "relays:\n"
        "  - {name: a, host: h.example.com, auth: {username: u, password_env: EMPTY}}\n"
        "  - {name: b, host: h.example.com, ca_file: ca.pem,\n"
        "     auth: {username: u, password_file: secrets/pw}}\n"
        "  - {name: c, host: h.example.com, auth: {username: u, password_env: UNSET}}\n"
    )
    config = parse_config(text, environ={"EMPTY": ""}, base_dir=str(tmp_path), offline=True)
    assert [str(note) for note in config.notes] == [
        "relays[0].auth.password_env: EMPTY is empty here; it must hold the secret where the "
        "exporter runs",
        f"relays[1].auth.password_file: {tmp_path}/secrets/pw does not exist here; it must "
        "exist where the exporter runs",
        f"relays[1].ca_file: {tmp_path}/ca.pem does not exist here; it must exist where the "
        "exporter runs",
        "relays[2].auth.password_env: UNSET is not set here; it must be set where the exporter "
        "runs",
    ]
    assert config.relays[1].ca_file == f"{tmp_path}/ca.pem"
    assert all(relay.auth.password is not None for relay in config.relays)
    with pytest.raises(ConfigError) as err:
        parse_config(text.replace("name: c,", "name: c, port: 0,"), environ={},
                     base_dir=str(tmp_path), offline=True)
    assert [str(p) for p in err.value.problems] == [
        "relays[2].port: 0 is out of range; use a port from 1 to 65535"]
