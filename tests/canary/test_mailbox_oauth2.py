"""An XOAUTH2 mailbox: the watcher fetches its token from a loopback token endpoint (the
Microsoft 365 client-credentials flow), logs in to a real IMAP server, and exports the expiry."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import yaml

from exporter.app import App
from exporter.canary.message import compose_canary, new_token
from exporter.demo.imap import DemoIMAPServer
from exporter.demo.mailstore import MailStore
from tests.conftest import ENV
from tests.helpers import eventually, http, value
from tests.servers.scripted import refused_port
from tests.servers.tokens import serve_tokens, token_reply

ACCESS_TOKEN = "eyJ-mailbox-access-token-1234"
USER = "canary@tenant.example"


@pytest.fixture
def imap(ca: trustme.CA, good_cert: trustme.LeafCert) -> Iterator[DemoIMAPServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    good_cert.configure_cert(ctx)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = DemoIMAPServer(MailStore(), users={}, ssl_context=ctx,
                            bearer_tokens={ACCESS_TOKEN: USER})
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


async def test_xoauth2_mailbox_logs_in_and_exports_token_expiry(
    tmp_path: Path, imap: DemoIMAPServer, ca_file: str
) -> None:
    """client_credentials against the token endpoint, AUTHENTICATE XOAUTH2 at the server:
    the mailbox is up, the token's expiry is on /metrics, and a canary placed there is read."""
    with serve_tokens() as endpoint:
        endpoint.default = token_reply(ACCESS_TOKEN, expires_in=3599)
        doc = {
            "instance": "oauth", "state_dir": str(tmp_path / "state"),
            "mailboxes": [{
                "name": "m365", "host": "127.0.0.1", "port": imap.imaps_port,
                "tls": "implicit", "ca_file": ca_file, "trusted_authserv_ids": [""],
                "auth": {"mechanism": "xoauth2", "username": USER, "oauth2": {
                    "token_url": endpoint.url, "client_id": "app-id",
                    "client_secret_env": "RELAY_PASSWORD",
                    "scope": "https://outlook.office365.com/.default",
                    "grant_type": "client_credentials"}},
            }],
            "relays": [{"name": "r", "host": "127.0.0.1", "port": refused_port(), "tls": "none",
                        "interval": "1h", "timeout": "2s",
                        "canary": {"from": "c@tenant.example", "interval": "1h",
                                   "to": [{"address": USER, "mailbox": "m365"}]}}],
        }
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(doc))
        app = App(str(path), listen=("127.0.0.1", 0), environ=ENV)
        app.canaries.first_spread = 1e9
        await app.start()
        try:
            assert app.web is not None
            base = f"http://127.0.0.1:{app.web.port}"
            await eventually(lambda: app.canary_store.snapshot().mailboxes["m365"].up)
            text = (await asyncio.to_thread(http, base + "/metrics"))[1]
            assert value(text, "smtp_mailbox_up", mailbox="m365") == 1
            expiry = value(text, "smtp_mailbox_oauth2_token_expiry_timestamp_seconds",
                           mailbox="m365")
            assert expiry is not None and abs(expiry - (time.time() + 3599)) < 30
            assert endpoint.forms[0]["grant_type"] == "client_credentials"
            assert endpoint.forms[0]["scope"] == "https://outlook.office365.com/.default"
            assert ACCESS_TOKEN not in text
            # A canary in flight for this mailbox is found and judged.
            from exporter.canary.ledger import CanaryRecord

            assert app.canaries.state is not None
            token = new_token("oauth")
            now = time.time()
            app.canaries.state.add([CanaryRecord(token, "r", "m365", USER, now, now + 60)])
            raw = compose_canary(token=token, relay="r", sender="c@tenant.example",
                                 recipients=[USER], now=now)
            imap.store.deliver(USER, b"Authentication-Results: spf=pass "
                               b"smtp.mailfrom=tenant.example; dkim=none; dmarc=pass "
                               b"action=none header.from=tenant.example\r\n" + raw)
            await eventually(lambda: app.canary_store.snapshot().pairs[("r", "m365")].last
                             is not None)
            last = app.canary_store.snapshot().pairs[("r", "m365")].last
            assert last is not None
            assert last.verdicts["spf"] == "pass"
            assert last.verdicts["dmarc"] == "pass"
            assert last.dmarc_aligned is True
        finally:
            await app.stop()
