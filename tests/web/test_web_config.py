"""--web.config.file: HTTPS, client certificates, basic auth with bcrypt, headers and a rate
limit on every endpoint, checked with a real HTTPS client; bad files name the field."""

from __future__ import annotations

import asyncio
import base64
import http.client
import logging
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme
import yaml

from exporter.app import App
from exporter.config import ConfigError
from exporter.config.webconfig import load_web_config
from tests.conftest import ENV, write_config
from tests.servers.scripted import refused_port

USERS = {"alice": "alice-scrape-pass", "bob": "bob-scrape-pass"}
HASHES = {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode() for u, p in USERS.items()}
EXAMPLE = Path(__file__).resolve().parents[2] / "web-config.example.yml"


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pki(tmp_path: Path, ca: trustme.CA, client_ca: trustme.CA) -> dict[str, Any]:
    """Server certificate and key files, the client CA file, and client certificates."""
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    client_ca.cert_pem.write_to_path(str(tmp_path / "client-ca.pem"))
    return {
        "scraper": client_ca.issue_cert("prometheus.example.test"),
        "other_san": client_ca.issue_cert("intruder.example.test"),
        "foreign": trustme.CA().issue_cert("prometheus.example.test"),
    }


def web_file(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


TLS = {"cert_file": "server.crt", "key_file": "server.key"}


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Any]:
    """Start an App with a web config; yields a starter returning the app."""
    apps: list[App] = []

    async def start(web_config: str) -> App:
        cfg = write_config(tmp_path / "config.yaml",
                           {"name": "a", "port": refused_port(), "tls": "none", "interval": "1h"})
        app = App(str(cfg), listen=("127.0.0.1", 0), environ=ENV, web_config=web_config)
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


def client_ctx(ca: trustme.CA, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


def _get(port: int, path: str, ctx: ssl.SSLContext | None, user: str | None,
         password: str | None, method: str) -> tuple[int, str, dict[str, str]]:
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    headers = {}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request(method, path, headers=headers, body=b"" if method == "POST" else None)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders())
    finally:
        conn.close()


async def get(app: App, path: str = "/metrics", *, ctx: ssl.SSLContext | None,
              user: str | None = None, password: str | None = None,
              method: str = "GET") -> tuple[int, str, dict[str, str]]:
    assert app.web is not None
    return await asyncio.to_thread(_get, app.web.port, path, ctx, user, password, method)


async def test_https_with_basic_auth_on_every_endpoint(
    serve: Any, tmp_path: Path, pki: dict[str, Any], ca: trustme.CA,
) -> None:
    """Over HTTPS, right credentials get /metrics, the status page and a reload; a wrong
    password, an unknown user or none get 401 with a Basic challenge, on every path."""
    app = await serve(web_file(tmp_path, {"tls_server_config": TLS,
                                          "basic_auth_users": HASHES}))
    assert app.web is not None and app.web.scheme == "https"
    ctx = client_ctx(ca)
    status, body, _ = await get(app, ctx=ctx, user="alice", password=USERS["alice"])
    assert status == 200 and "smtp_probe_success" in body
    for path in ("/", "/status.json", "/-/healthy", "/-/ready"):
        assert (await get(app, path, ctx=ctx, user="bob", password=USERS["bob"]))[0] == 200
    ok, text, _ = await get(app, "/-/reload", ctx=ctx, user="bob", password=USERS["bob"],
                            method="POST")
    assert ok == 200 and text.startswith("config reloaded")
    for path in ("/metrics", "/", "/status.json", "/-/healthy", "/-/ready"):
        for user, password in (("alice", USERS["bob"]), ("mallory", USERS["alice"]),
                               (None, None), ("alice", "")):
            status, body, headers = await get(app, path, ctx=ctx, user=user, password=password)
            assert status == 401, (path, user)
            assert headers["WWW-Authenticate"].startswith("Basic")
            assert "smtp_probe" not in body
    status, _, _ = await get(app, "/-/reload", ctx=ctx, user="alice", password="nope",
                             method="POST")
    assert status == 401


async def test_https_refuses_plain_http_and_untrusted_servers(
    serve: Any, tmp_path: Path, pki: dict[str, Any], ca: trustme.CA,
) -> None:
    """A plain-HTTP client gets no metrics from the HTTPS port, and a client that does not
    trust the server's CA refuses it; the server keeps serving the good client."""
    app = await serve(web_file(tmp_path, {"tls_server_config": TLS}))
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        await get(app, ctx=None)
    with pytest.raises(ssl.SSLCertVerificationError):
        await get(app, ctx=client_ctx(trustme.CA()))
    assert (await get(app, ctx=client_ctx(ca)))[0] == 200


async def test_client_certificates_required(
    serve: Any, tmp_path: Path, pki: dict[str, Any], ca: trustme.CA,
) -> None:
    """RequireAndVerifyClientCert: no certificate or one from another CA fails the handshake;
    client_allowed_sans refuses a valid certificate with another name; the right one passes."""
    app = await serve(web_file(tmp_path, {"tls_server_config": {
        **TLS, "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "client-ca.pem", "client_allowed_sans": ["prometheus.example.test"],
    }}))
    status, body, _ = await get(app, ctx=client_ctx(ca, pki["scraper"]))
    assert status == 200 and "smtp_probe_success" in body
    for cert in (None, pki["foreign"], pki["other_san"]):
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
            await get(app, ctx=client_ctx(ca, cert))
    assert (await get(app, ctx=client_ctx(ca, pki["scraper"])))[0] == 200


async def test_min_version_headers_and_rate_limit(
    serve: Any, tmp_path: Path, pki: dict[str, Any], ca: trustme.CA,
) -> None:
    """min_version TLS13 refuses a TLS 1.2 client; configured headers are on every response;
    past the burst, requests get 429."""
    app = await serve(web_file(tmp_path, {
        "tls_server_config": {**TLS, "min_version": "TLS13"},
        "http_server_config": {"headers": {"X-Frame-Options": "deny",
                                           "Strict-Transport-Security": "max-age=31536000"}},
        "rate_limit": {"interval": "1m", "burst": 3},
    }))
    old = client_ctx(ca)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        await get(app, ctx=old)
    statuses = []
    for _ in range(4):
        status, _, headers = await get(app, "/-/healthy", ctx=client_ctx(ca))
        statuses.append(status)
        assert headers["X-Frame-Options"] == "deny"
        assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert statuses == [200, 200, 200, 429]


async def test_changed_file_is_picked_up_and_a_bad_change_refused(
    serve: Any, tmp_path: Path, pki: dict[str, Any], ca: trustme.CA,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A new user list applies at the next request; an invalid edit is logged and the previous
    users stay in force."""
    path = web_file(tmp_path, {"tls_server_config": TLS, "basic_auth_users":
                               {"alice": HASHES["alice"]}})
    app = await serve(path)
    ctx = client_ctx(ca)
    assert (await get(app, ctx=ctx, user="bob", password=USERS["bob"]))[0] == 401
    web_file(tmp_path, {"tls_server_config": TLS, "basic_auth_users": {"bob": HASHES["bob"]}})
    os.utime(path, ns=(1, 1))  # a new mtime even within the file system's time granularity
    assert (await get(app, ctx=ctx, user="bob", password=USERS["bob"]))[0] == 200
    assert (await get(app, ctx=ctx, user="alice", password=USERS["alice"]))[0] == 401
    caplog.set_level(logging.ERROR, logger="exporter.web.guard")
    web_file(tmp_path, {"tls_server_config": TLS, "basic_auth_users": {"bob": "plaintext"}})
    os.utime(path, ns=(2, 2))
    assert (await get(app, ctx=ctx, user="bob", password=USERS["bob"]))[0] == 200
    problems = [str(getattr(r, "problem", "")) for r in caplog.records]
    assert problems == [f"{path}: basic_auth_users.bob: not a bcrypt hash (it never shows "
                        "here); generate one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"]


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"tls_server_config": {"cert_file": "server.crt"}},
     "tls_server_config.key_file: missing; TLS needs the certificate's key (key_file)"),
    ({"tls_server_config": {**TLS, "min_version": "TLS14"}},
     "tls_server_config.min_version: 'TLS14' is not a TLS version; use one of TLS10, TLS11, "
     "TLS12, TLS13"),
    ({"tls_server_config": {**TLS, "min_version": "TLS13", "max_version": "TLS12"}},
     "tls_server_config.min_version: TLS13 is above max_version TLS12; lower it"),
    ({"tls_server_config": {**TLS, "client_auth_type": "RequireAndVerifyClientCert"}},
     "tls_server_config.client_ca_file: missing; RequireAndVerifyClientCert verifies client "
     "certificates against it"),
    ({"tls_server_config": {**TLS, "client_ca_file": "client-ca.pem"}},
     "tls_server_config.client_ca_file: client CAs are set but client_auth_type is "
     "NoClientCert; set client_auth_type: RequireAndVerifyClientCert"),
    ({"tls_server_config": {**TLS, "client_auth_type": "RequireAnyClientCert"}},
     "tls_server_config.client_auth_type: RequireAnyClientCert accepts certificates nobody "
     "verified, which this exporter does not do; use RequireAndVerifyClientCert with "
     "client_ca_file"),
    ({"tls_server_config": {**TLS, "client_auth_type": "Sometimes"}},
     "tls_server_config.client_auth_type: 'Sometimes' is not a client auth type; use "
     "NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
    ({"tls_server_config": {**TLS, "client_allowed_sans": ["a"]}},
     "tls_server_config.client_allowed_sans: needs client_auth_type: "
     "RequireAndVerifyClientCert, so every client presents a certificate to match"),
    ({"tls_server_config": {"cert_file": "missing.crt", "key_file": "server.key"}},
     "tls_server_config.cert_file: {dir}/missing.crt: no such file"),
    ({"tls_server_config": {"cert_file": "server.key", "key_file": "server.key"}},
     "tls_server_config.cert_file: cannot load the certificate and key: not readable PEM; "
     "check that both are PEM and the key belongs to the certificate"),
    ({"tls_server_config": {**TLS, "cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]}},
     "tls_server_config.cipher_suites: unknown cipher suite 'TLS_RSA_WITH_RC4_128_SHA'; use "
     "Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ({"tls_server_config": {**TLS, "curve_preferences": ["CurveP256", "X25519"]}},
     "tls_server_config.curve_preferences: this exporter can pin one curve only (Python's ssl "
     "module); list one, or remove the key for OpenSSL's defaults"),
    ({"tls_server_config": {**TLS, "certfile": "x"}},
     "tls_server_config.certfile: unknown key; did you mean cert_file?"),
    ({"tls_server_config": {"min_version": "TLS13"}},
     "tls_server_config.min_version: has no effect without cert_file and key_file; add them "
     "or remove this key"),
    ({"basic_auth_users": {"alice": "hunter2-in-clear"}},
     "basic_auth_users.alice: not a bcrypt hash (it never shows here); generate one with: "
     "htpasswd -nBC 10 \"\" | tr -d ':\\n'"),
    ({"basic_auth_users": ["alice"]},
     "basic_auth_users: expected a mapping of user names to bcrypt hashes, got a list"),
    ({"http_server_config": {"headers": {"Server": "x"}}},
     "http_server_config.headers.Server: this header cannot be set; use one of "
     "Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, "
     "Strict-Transport-Security"),
    ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
     "http_server_config.headers.X-Frame-Options: 'allow' is not accepted; use deny or "
     "sameorigin"),
    ({"rate_limit": {"interval": "1s", "burst": 0}},
     "rate_limit.burst: with an interval, at least 1 request must pass; set burst: 1 or more"),
    ({"rate_limt": {}}, "rate_limt: unknown key; did you mean rate_limit?"),
]


@pytest.mark.parametrize(("doc", "message"), INVALID, ids=[m.split(":")[0] + f"-{i}"
                                                            for i, (_, m) in enumerate(INVALID)])
def test_invalid_web_config_names_the_field(
    tmp_path: Path, pki: dict[str, Any], doc: dict[str, Any], message: str,
) -> None:
    """Each bad file is refused with one line naming the file, the field and the fix."""
    path = web_file(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    assert [str(p) for p in err.value.problems] == [
        f"{path}: " + message.replace("{dir}", str(tmp_path))
    ]
    assert "hunter2" not in str(err.value)


def test_every_web_config_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    """A bad min_version no longer hides missing cert and key files (nor a bad rate limit):
    load_web_config and one check-config run report them all, one per line."""
    path = web_file(tmp_path, {
        "tls_server_config": {"cert_file": "missing.crt", "key_file": "missing.key",
                              "min_version": "TLS9"},
        "rate_limit": {"interval": "soon", "burst": -1},
    })
    expected = [
        f"{path}: tls_server_config.min_version: 'TLS9' is not a TLS version; use one of "
        "TLS10, TLS11, TLS12, TLS13",
        f"{path}: tls_server_config.cert_file: {tmp_path}/missing.crt: no such file",
        f"{path}: tls_server_config.key_file: {tmp_path}/missing.key: no such file",
        f'{path}: rate_limit.interval: "soon" is not a duration; use a number with s, m or h, '
        "e.g. 30s or 5m",
        f"{path}: rate_limit.burst: expected a whole number, got -1",
    ]
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    assert [str(p) for p in err.value.problems] == expected
    cfg = write_config(tmp_path / "c.yaml", {"name": "a", "port": 2525, "tls": "starttls"})
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", "--config.file", str(cfg),
         "--web.config.file", path],
        capture_output=True, text=True, timeout=30, env={**os.environ, **ENV}, check=False)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"error: {line}" for line in expected] + [
        f"{path}: invalid"]
    key_only = web_file(tmp_path, {"tls_server_config": {"key_file": "missing.key"}})
    with pytest.raises(ConfigError) as err:
        load_web_config(key_only)
    assert [str(p) for p in err.value.problems] == [
        f"{key_only}: tls_server_config.cert_file: missing; TLS needs the server certificate "
        "(cert_file)",
        f"{key_only}: tls_server_config.key_file: {tmp_path}/missing.key: no such file",
    ]


def test_run_with_a_bad_web_config_exits_with_the_field(
    tmp_path: Path, pki: dict[str, Any],
) -> None:
    """`run` and `check-config` refuse a bad web config before listening, naming the field;
    check-config accepts the example file shipped with the project."""
    cfg = write_config(tmp_path / "c.yaml", {"name": "a", "port": 2525, "tls": "starttls"})
    bad = web_file(tmp_path, {"tls_server_config": {**TLS, "min_version": "TLS9"}})
    env = {**os.environ, **ENV}
    for command in ("run", "check-config"):
        out = subprocess.run(
            [sys.executable, "-m", "exporter", command, "--config.file", str(cfg),
             "--web.config.file", bad, *(["--web.listen-address", "127.0.0.1:0"]
                                         if command == "run" else [])],
            capture_output=True, text=True, timeout=30, env=env, check=False)
        assert out.returncode == 1, out.stderr
        assert (f"error: {bad}: tls_server_config.min_version: 'TLS9' is not a TLS version; "
                "use one of TLS10, TLS11, TLS12, TLS13") in out.stderr.splitlines()
    example = tmp_path / "example"
    example.mkdir()
    for name in ("server.crt", "server.key", "client-ca.pem"):
        (example / name).write_bytes((tmp_path / name).read_bytes())
    text = EXAMPLE.read_text().replace("/etc/smtp-canary-exporter/", "")
    (example / "web.yml").write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", "--config.file", str(cfg),
         "--web.config.file", str(example / "web.yml")],
        capture_output=True, text=True, timeout=30, env=env, check=False)
    assert out.returncode == 0, out.stderr
