"""Distinctive secrets (an SMTP password, an API key, OAuth2 client secret, refresh and access
tokens, an IMAP password) go through every failure path at debug level; no log line, metric,
status page, status JSON, `probe` output or exception text shows them, in any encoding."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.demo.imap import DemoIMAPServer
from exporter.demo.mailstore import MailStore
from exporter.relay.probe import probe_relay
from tests.conftest import make_config
from tests.faults.proxy import Fault, FaultProxy
from tests.helpers import http, value, wait_for
from tests.servers.loop import ServerLoop
from tests.servers.smtp import USER, Recorder, start_relay
from tests.servers.tokens import error_reply, serve_tokens, token_reply
from tests.test_cli import Daemon, port_from_log, run_cli

SECRETS = {
    "SMTP_PASSWORD": "smtp-pw-Qx81-SECRET",
    "API_KEY": "SG.apikey-7Hd2-SECRET",
    "CLIENT_SECRET": "client-secret-K3v9-SECRET",
    "REFRESH_TOKEN": "refresh-tok-P0w2-SECRET",
    "STATIC_TOKEN": "static-tok-Lm55-SECRET",
    "IMAP_PASSWORD": "imap-pw-Zr71-SECRET",
}
ACCESS_TOKEN = "access-tok-Uu12-SECRET"  # handed out by the token endpoint, never configured
IMAP_USER = "canary@demo.test"


def forms(secret: str, user: str = USER) -> list[str]:
    """Every way a secret could leak: as is, base64 alone, in a PLAIN or XOAUTH2 payload."""
    b64 = base64.b64encode
    return [
        secret,
        b64(secret.encode()).decode(),
        b64(f"\0{user}\0{secret}".encode()).decode(),
        b64(f"user={user}\x01auth=Bearer {secret}\x01\x01".encode()).decode(),
        b64(f"\0{IMAP_USER}\0{secret}".encode()).decode(),
    ]


@pytest.fixture
def imap(server_loop: ServerLoop, server_ctx: ssl.SSLContext) -> Iterator[DemoIMAPServer]:
    server = DemoIMAPServer(MailStore(), users={IMAP_USER: "the-right-one"},
                            ssl_context=server_ctx)
    server_loop.run(server.start())
    yield server
    server_loop.run(server.stop())


def _relay(name: str, port: int, auth: dict[str, Any], *, tls: str = "starttls",
           ca_file: str | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "host": "127.0.0.1", "port": port, "tls": tls,
                           "interval": "1s", "timeout": "900ms", "auth": auth, **extra}
    if tls == "none":
        doc["allow_plaintext_auth"] = True
    elif ca_file:
        doc["ca_file"] = ca_file
    return doc


def test_secrets_appear_in_no_output(
    tmp_path: Path, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
    imap: DemoIMAPServer, daemons: list[Daemon],
) -> None:
    """Wrong passwords and keys (PLAIN, LOGIN, CRAM-MD5), refused and failing OAuth2, a reset,
    a hang and a server that echoes the AUTH payload back, a refused IMAP login: at debug
    level, in logfmt and JSON, none of the secrets shows anywhere."""
    refusing = start_relay(server_loop, ctx=server_ctx, auth_require_tls=False,
                           recorder=Recorder(password="the-right-one", token="the-right-one"))
    plain_user, b64 = USER, base64.b64encode
    echo = b"535 5.7.8 rejected: " + b64(f"\0{plain_user}\0{SECRETS['SMTP_PASSWORD']}".encode()
                                         ) + b" (" + SECRETS["SMTP_PASSWORD"].encode() + b")\r\n"
    proxies = [FaultProxy(server_loop, refusing.port, fault) for fault in (
        Fault("reset", trigger=b"AUTH"), Fault("hang", trigger=b"AUTH"),
        Fault("replace", trigger=b"AUTH", payload=echo),
        Fault("replace", trigger=b"AUTH", payload=b"535 " + b"y" * 100_000 + b"\r\n"))]
    password = {"username": USER, "password_env": "SMTP_PASSWORD"}
    with serve_tokens() as granting, serve_tokens() as refusing_tokens:
        granting.default = token_reply(ACCESS_TOKEN, expires_in=3600)
        refusing_tokens.default = error_reply(400, "invalid_grant", "Token has been revoked")
        oauth = {"token_url": granting.url, "client_id": "cid",
                 "client_secret_env": "CLIENT_SECRET", "refresh_token_env": "REFRESH_TOKEN"}
        relays = [
            _relay("plain", refusing.port, {"mechanism": "plain", **password}, ca_file=ca_file),
            _relay("apikey", refusing.port, {"mechanism": "login", "username": "apikey",
                                             "password_env": "API_KEY"}, ca_file=ca_file),
            _relay("cram", refusing.port, {"mechanism": "cram-md5", **password},
                   ca_file=ca_file),
            _relay("static-token", refusing.port, {"mechanism": "xoauth2", "username": USER,
                                                   "token_env": "STATIC_TOKEN"},
                   ca_file=ca_file),
            _relay("oauth-granted", refusing.port, {"mechanism": "xoauth2", "username": USER,
                                                    "oauth2": oauth}, ca_file=ca_file),
            _relay("oauth-revoked", refusing.port, {"mechanism": "xoauth2", "username": USER,
                                                    "oauth2": {**oauth,
                                                               "token_url": refusing_tokens.url}},
                   ca_file=ca_file),
            _relay("reset-in-auth", proxies[0].port, {"mechanism": "plain", **password},
                   tls="none"),
            _relay("hang-in-auth", proxies[1].port, {"mechanism": "login", **password},
                   tls="none"),
            _relay("echoes-auth", proxies[2].port, {"mechanism": "plain", **password},
                   tls="none"),
            _relay("huge-auth-reply", proxies[3].port, {"mechanism": "plain", **password},
                   tls="none"),
        ]
        doc: dict[str, Any] = {
            "state_dir": str(tmp_path / "state"),
            "mailboxes": [{"name": "box", "host": "127.0.0.1", "port": imap.imaps_port,
                           "tls": "implicit", "ca_file": ca_file, "poll_interval": "1s",
                           "trusted_authserv_ids": ["mx"],
                           "auth": {"mechanism": "plain", "username": IMAP_USER,
                                    "password_env": "IMAP_PASSWORD"}}],
            "relays": relays,
        }
        doc["relays"][0]["canary"] = {"from": "c@example.test", "interval": "10s",
                                      "timeout": "10m",
                                      "to": [{"address": "a@example.test", "mailbox": "box"}]}
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(doc))
        outputs: list[str] = []
        for fmt in ("logfmt", "json"):
            d = Daemon(["run", "--config.file", str(cfg), "--web.listen-address",
                        "127.0.0.1:0", "--log.level", "debug", "--log.format", fmt],
                       tmp_path / f"log-{fmt}", env=SECRETS)
            daemons.append(d)
            base = f"http://127.0.0.1:{port_from_log(d)}"

            def failed_everywhere(base: str = base) -> bool:
                text = http(base + "/metrics")[1]
                return all((value(text, "smtp_probes_total", relay=r["name"]) or 0) >= 1
                           for r in relays) and value(text, "smtp_mailbox_up",
                                                      mailbox="box") == 0

            wait_for(failed_everywhere, timeout=30)
            outputs += [http(base + p)[1] for p in ("/metrics", "/", "/status.json")]
            d.stop()
            outputs.append(d.text())
        for fmt in ("text", "json"):
            out = run_cli("probe", "--config.file", str(cfg), "--output", fmt, "--transcript",
                          env=SECRETS)
            outputs += [out.stdout, out.stderr]
        assert len(refusing_tokens.forms) >= 1 and len(granting.forms) >= 1
    statuses = {r["relay"]: r for r in json.loads(outputs[-2])}
    assert statuses["plain"]["reason"] == "auth_failed"
    assert statuses["oauth-revoked"]["reason"] == "auth_failed"
    assert statuses["echoes-auth"]["reason"] == "auth_failed"
    assert "***" in statuses["echoes-auth"]["reply"]
    assert statuses["reset-in-auth"]["reason"] == "protocol_error"
    assert statuses["hang-in-auth"]["reason"] == "timeout"
    logs = outputs[3] + outputs[7]  # the daemon logs, logfmt and JSON
    assert "login refused" in logs and "probe failed" in logs
    for name, secret in [*SECRETS.items(), ("ACCESS_TOKEN", ACCESS_TOKEN)]:
        for form in forms(secret):
            for i, text in enumerate(outputs):
                assert form not in text, f"{name} ({form[:12]}...) in output {i}"
    for proxy in proxies:
        proxy.close()


async def test_exception_text_holds_no_secret(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
) -> None:
    """The results and errors a failed login produces, rendered as text (str, repr), hold
    neither the password nor its payload."""
    refusing = start_relay(server_loop, ctx=server_ctx, recorder=Recorder(password="other"))
    for mechanism in ("plain", "login", "cram-md5"):
        config = make_config(
            {"name": "r", "port": refusing.port, "tls": "starttls", "ca_file": ca_file,
             "auth": {"mechanism": mechanism, "username": USER,
                      "password_env": "SMTP_PASSWORD"}},
            environ=SECRETS)
        result = await probe_relay(config.relays[0])
        assert result.reason is not None and result.reason.value == "auth_failed"
        texts = [str(result), repr(result), repr(config), str(config.relays[0].auth)]
        for form in forms(SECRETS["SMTP_PASSWORD"]):
            assert not any(form in text for text in texts)
