"""End-to-end fixtures: the mail test bed, a token endpoint, and the exporter running against them.

Run with ``python -m pytest -m e2e`` (as root, after ``tests/testbed/install``). Without the
bed's daemons the tests skip with the reason; with CI set they fail instead, so CI can never
pass by skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.bed import (
    Bed,
    Exporter,
    mint_token,
    missing_programs,
    probe_json,
    start_bed,
    stop_bed,
    write_config,
)
from tests.servers.tokens import TokenEndpoint, serve_tokens, token_reply
from tests.tools import unavailable

WRONG_PASSWORD = "not-the-password"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop daemons of the shared bed (marked ``disruptive``) run last."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """A failed e2e test reports the tail of every daemon's log: they say why."""
    outcome = yield
    report = outcome.get_result()
    bed = getattr(item, "funcargs", {}).get("bed")
    if report.failed and isinstance(bed, Bed):
        report.sections.append(("mail test bed logs", bed.logs()))


@pytest.fixture(scope="session")
def bed() -> Iterator[Bed]:
    problem = None
    missing = missing_programs()
    if missing:
        problem = (f"mail test bed not installed (missing {', '.join(missing)}): "
                   "run tests/testbed/install as root")
    elif os.geteuid() != 0:
        problem = "the mail test bed needs root (its daemons drop to their own users)"
    if problem:
        unavailable(problem)
    started = start_bed()
    print(f"\nmail test bed started in {started.start_seconds:.1f} s")
    try:
        yield started
    finally:
        stop_bed()


@pytest.fixture(scope="session")
def token_endpoint(bed: Bed) -> Iterator[TokenEndpoint]:
    """An OAuth2 token endpoint that hands out JWTs Dovecot accepts (client_credentials)."""
    with serve_tokens() as endpoint:
        endpoint.default = token_reply(mint_token(bed, bed["TB_USER"]), expires_in=3600)
        yield endpoint


@pytest.fixture(scope="session")
def exporter_env(bed: Bed) -> dict[str, str]:
    """Every secret the configs name, as environment variables."""
    return {
        "BED_PASSWORD": bed["TB_PASSWORD"],
        "WRONG_PASSWORD": WRONG_PASSWORD,
        "OAUTH2_CLIENT_SECRET": "e2e-client-secret",
    }


def mailbox(name: str, host: str, port: int, tls: str, user: str, bed: Bed) -> dict[str, Any]:
    return {
        "name": name, "host": host, "port": port, "tls": tls, "ca_file": bed.ca_file,
        "auth": {"mechanism": "login", "username": user, "password_env": "BED_PASSWORD"},
        "trusted_authserv_ids": [bed["TB_AUTHSERV_ID"]],
        "poll_interval": "1s", "timeout": "10s",
    }


def relay(name: str, bed: Bed, *, port: str, tls: str, mechanism: str = "plain",
          password_env: str = "BED_PASSWORD", token_url: str = "",
          **extra: Any) -> dict[str, Any]:
    """A relay on the bed's submission (port="TB_SUBMISSION_PORT") or implicit-TLS port."""
    auth: dict[str, Any] = {"mechanism": mechanism, "username": bed["TB_USER"]}
    if mechanism == "xoauth2":
        auth["oauth2"] = {
            "token_url": token_url, "client_id": "e2e",
            "client_secret_env": "OAUTH2_CLIENT_SECRET", "grant_type": "client_credentials",
        }
    else:
        auth["password_env"] = password_env
    return {"name": name, "host": bed["TB_RELAY_HOST"], "port": bed.port(port), "tls": tls,
            "auth": auth, **extra}


def canary(sender: str, to: str, box: str, **extra: Any) -> dict[str, Any]:
    return {"from": sender, "to": [{"address": to, "mailbox": box}], "interval": "10s",
            "timeout": "2m", **extra}


# Sending domain (TB_*_DOMAIN key) of each broken-domain canary relay.
BROKEN = {
    "canary-spf-fail": "TB_SPF_FAIL_DOMAIN",
    "canary-dkim-fail": "TB_DKIM_FAIL_DOMAIN",
    "canary-no-dmarc": "TB_NO_DMARC_DOMAIN",
    "canary-dmarc-none": "TB_DMARC_NONE_DOMAIN",
    "canary-spoof": "TB_SPOOF_DOMAIN",
}
AUTH_RELAYS = [f"{mode}-{mech}" for mode in ("starttls", "implicit")
               for mech in ("plain", "login", "xoauth2")]


def main_config(bed: Bed, token_url: str, state_dir: Path) -> dict[str, Any]:
    """The suite's configuration: every relay, mailbox and domain the tests look at."""
    user, domain = bed["TB_USER"], bed["TB_DOMAIN"]
    sub, smtps = "TB_SUBMISSION_PORT", "TB_SMTPS_PORT"
    relays: list[dict[str, Any]] = []
    for name in AUTH_RELAYS:
        mode, mech = name.split("-")
        extra: dict[str, Any] = {"rcpt_check": user, "mail_from": user}
        if name == "starttls-plain":
            extra["canary"] = canary(user, user, "main")
        if name == "implicit-xoauth2":
            extra["canary"] = canary(user, bed["TB_STRICT_USER"], "strict")
        relays.append(relay(name, bed, port=sub if mode == "starttls" else smtps,
                            tls="implicit" if mode == "implicit" else "starttls",
                            mechanism=mech, token_url=token_url, **extra))
    relays += [
        relay("wrong-password", bed, port=sub, tls="starttls", password_env="WRONG_PASSWORD"),
        relay("rejects-wrong-password", bed, port=sub, tls="starttls",
              password_env="WRONG_PASSWORD", expect="auth_failed"),
        # Plain SMTP on the submission port, with plaintext AUTH allowed: Postfix offers no
        # AUTH before STARTTLS, and the exporter must not send credentials anyway.
        relay("plaintext-submission", bed, port=sub, tls="none", allow_plaintext_auth=True),
        relay("implicit-on-starttls-port", bed, port=sub, tls="implicit"),
        relay("starttls-on-implicit-port", bed, port=smtps, tls="starttls"),
    ]
    for name, key in BROKEN.items():
        to = bed["TB_JUNK_ADDRESS"] if name == "canary-spoof" else user
        relays.append(relay(name, bed, port=sub, tls="starttls",
                            canary=canary(f"canary@{bed[key]}", to, "main")))
    domains = [domain, *(bed[key] for key in BROKEN.values())]
    return {
        "instance": "e2e-main",
        "state_dir": str(state_dir),
        "dns": {"nameservers": [bed["TB_DNS"]], "interval": "10s", "timeout": "3s"},
        "defaults": {"interval": "5s", "timeout": "4s", "ca_file": bed.ca_file,
                     "ehlo_name": "probe.example.test"},
        "domains": [{"name": d, "dkim_selectors": [bed["TB_DKIM_SELECTOR"]]} for d in domains],
        "mailboxes": [
            mailbox("main", bed["TB_HOST"], bed.port("TB_IMAPS_PORT"), "implicit", user, bed),
            mailbox("strict", bed["TB_STRICT_HOST"], bed.port("TB_STRICT_IMAP_PORT"),
                    "starttls", bed["TB_STRICT_USER"], bed),
        ],
        "relays": relays,
    }


@pytest.fixture(scope="session")
def main_config_file(bed: Bed, token_endpoint: TokenEndpoint,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e-main")
    return write_config(tmp / "config.yaml", main_config(bed, token_endpoint.url, tmp / "state"))


@pytest.fixture(scope="session")
def probe_results(main_config_file: Path, exporter_env: dict[str, str]) -> dict[str, Any]:
    """One ``probe --output json`` run over every relay of the main config, by relay name."""
    return {item["relay"]: item for item in probe_json(main_config_file, exporter_env)}


@pytest.fixture(scope="session")
def exporter(main_config_file: Path, exporter_env: dict[str, str],
             bed: Bed) -> Iterator[Exporter]:
    """``smtp-canary-exporter run`` with the main config, for the whole session."""
    running = Exporter(main_config_file, exporter_env, main_config_file.parent / "exporter.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()
