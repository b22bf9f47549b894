"""Fixtures: a server loop in its own thread, a test CA with good and bad certificates."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from exporter.config import Config, RelayConfig, parse_config
from tests.servers.loop import ServerLoop
from tests.servers.smtp import PASSWORD, TOKEN

ENV = {"RELAY_PASSWORD": PASSWORD, "RELAY_TOKEN": TOKEN, "WRONG_PASSWORD": "not the password"}


@pytest.fixture(scope="session")
def server_loop() -> Iterator[ServerLoop]:
    loop = ServerLoop()
    yield loop
    loop.stop()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _server_ctx(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def good_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost", "relay.test")


@pytest.fixture(scope="session")
def server_ctx(good_cert: trustme.LeafCert) -> ssl.SSLContext:
    return _server_ctx(good_cert)


@pytest.fixture(scope="session")
def expired_ctx(ca: trustme.CA) -> ssl.SSLContext:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    cert = ca.issue_cert(
        "127.0.0.1", not_before=past - dt.timedelta(days=60), not_after=past
    )
    return _server_ctx(cert)


@pytest.fixture(scope="session")
def wrong_host_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return _server_ctx(ca.issue_cert("other.example.test"))


@pytest.fixture(scope="session")
def self_signed_ctx() -> ssl.SSLContext:
    return _server_ctx(trustme.CA().issue_cert("127.0.0.1"))


def make_config(*relays: dict[str, Any], environ: dict[str, str] | None = None,
                **top: Any) -> Config:
    """A Config through the real loader, with short timeouts unless a relay sets its own."""
    docs = [{"host": "127.0.0.1", "timeout": "2s", "interval": "10s", **r} for r in relays]
    text = yaml.safe_dump({"relays": docs, **top})
    return parse_config(text, environ={**ENV, **(environ or {})})


def make_relay(**fields: Any) -> RelayConfig:
    """One relay named ``r`` unless given a name."""
    fields.setdefault("name", "r")
    return make_config(fields).relays[0]


def auth(mechanism: str = "plain", **kw: str) -> dict[str, str]:
    if mechanism == "xoauth2":
        return {"mechanism": mechanism, "username": "probe@example.test", **kw}
    return {"mechanism": mechanism, "username": "probe@example.test",
            "password_env": "RELAY_PASSWORD", **kw}


def write_config(path: Path, *relays: dict[str, Any], **top: Any) -> Path:
    docs = [{"host": "127.0.0.1", "timeout": "2s", "interval": "10s", **r} for r in relays]
    path.write_text(yaml.safe_dump({"relays": docs, **top}))
    return path


CANARY_USERS = {"canary": "canary-imap-pass", "other": "other-imap-pass"}


@pytest.fixture
def dovecot(tmp_path: Path, ca: trustme.CA) -> Iterator[Any]:
    """A real Dovecot on 127.0.0.1 with users canary and other; skipped without Dovecot
    (a laptop), an error in CI."""
    from tests.tools import unavailable
    from testservers.dovecot import dovecot_available, start_dovecot

    if not dovecot_available():
        unavailable("Dovecot not installed (testservers/install-dovecot.sh), or not root")
    server = start_dovecot(tmp_path / "dovecot", users=CANARY_USERS, ca=ca)
    yield server
    server.stop()
