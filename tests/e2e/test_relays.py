"""Relay probes against Postfix submission (STARTTLS and implicit TLS) with Dovecot SASL.

Points 1-4 of the end-to-end plan: every mechanism on both ports succeeds with every phase
timed; a wrong password is ``auth_failed`` with Postfix's 535 text; credentials never cross a
plain connection; a wrong TLS mode is ``tls_mode_mismatch`` on either port.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.bed import Bed, Exporter, Metrics
from tests.e2e.conftest import AUTH_RELAYS

pytestmark = pytest.mark.e2e

PHASES = {"resolve", "connect", "greeting", "ehlo", "tls", "auth", "mail", "rcpt", "quit"}


@pytest.mark.parametrize("name", AUTH_RELAYS)
def test_probe_succeeds_with_every_phase_timed(probe_results: dict[str, Any], name: str) -> None:
    result = probe_results[name]
    assert result["success"], result
    assert result["reason"] is None
    assert set(result["phases"]) == PHASES
    assert all(0 < seconds < 4 for seconds in result["phases"].values()), result["phases"]
    tls = result["tls"]
    assert tls["verified"] is True
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert tls["cipher"]
    assert "mail.example.test" in tls["subject"]
    assert "test bed CA" in tls["issuer"]
    days_left = (datetime.fromisoformat(tls["not_after"]).timestamp() - time.time()) / 86400
    assert 28 < days_left <= 30
    assert {"plain", "login", "xoauth2"} <= set(result["auth_mechanisms"])


def test_running_exporter_reports_every_relay_up(exporter: Exporter) -> None:
    def all_up(m: Metrics) -> bool:
        return all(m.get("smtp_probe_success", relay=r) == 1 for r in AUTH_RELAYS)

    m = exporter.wait_for("every auth relay to succeed", all_up, timeout=30)
    for relay in AUTH_RELAYS:
        assert m.get("smtp_tls_cert_verified", relay=relay) == 1
        assert (m.get("smtp_tls_cert_not_after_timestamp_seconds", relay=relay) or 0) > time.time()
        tls_info = m.all("smtp_tls_info", relay=relay)
        assert list(tls_info.values()) == [1.0]
        for phase in PHASES:
            seconds = m.get("smtp_probe_phase_duration_seconds", relay=relay, phase=phase)
            assert seconds is not None and seconds > 0, (relay, phase)
        assert m.get("smtp_probe_failures_total", relay=relay, reason="auth_failed") is None


def test_wrong_password_is_auth_failed_with_the_servers_reply(
    probe_results: dict[str, Any],
) -> None:
    result = probe_results["wrong-password"]
    assert not result["success"]
    assert result["reason"] == "auth_failed"
    assert result["failed_phase"] == "auth"
    assert result["reply"].startswith("535 5.7.8 Error: authentication failed")
    assert "not-the-password" not in str(result)


def test_negative_check_expecting_auth_failed_succeeds(probe_results: dict[str, Any]) -> None:
    result = probe_results["rejects-wrong-password"]
    assert result["success"], result
    assert (result["expected"], result["observed"]) == ("auth_failed", "auth_failed")
    assert result["reply"].startswith("535 ")


def test_wrong_password_in_metrics(exporter: Exporter) -> None:
    def failed(m: Metrics) -> bool:
        return m.get("smtp_probe_last_failure_info", relay="wrong-password",
                     reason="auth_failed") == 1

    m = exporter.wait_for("wrong-password to fail with auth_failed", failed, timeout=30)
    assert m.get("smtp_probe_success", relay="wrong-password") == 0
    assert (m.get("smtp_probe_failures_total", relay="wrong-password",
                  reason="auth_failed") or 0) >= 1
    assert m.get("smtp_probe_success", relay="rejects-wrong-password") == 1
    # Its expected auth_failed is a success, never a failure: no failure series appears.
    assert m.get("smtp_probe_failures_total", relay="rejects-wrong-password",
                 reason="auth_failed") is None
    exposition = "\n".join(str(k) for k in m.samples)
    assert "not-the-password" not in exposition


def _commands(result: dict[str, Any]) -> list[str]:
    return [line["line"] for line in result["transcript"] if line["dir"] == "C"]


@pytest.mark.parametrize("name", ["starttls-plain", "starttls-login", "starttls-xoauth2"])
def test_auth_only_after_starttls(probe_results: dict[str, Any], name: str) -> None:
    """Postfix offers AUTH only after STARTTLS; the exporter authenticates only then."""
    transcript = probe_results[name]["transcript"]
    commands = _commands(probe_results[name])
    starttls = commands.index("STARTTLS")
    auth = next(i for i, c in enumerate(commands) if c.startswith("AUTH"))
    assert starttls < auth
    # What the server said before the upgrade offers no AUTH.
    cut = next(i for i, line in enumerate(transcript)
               if line["dir"] == "C" and line["line"] == "STARTTLS")
    before = [line["line"] for line in transcript[:cut] if line["dir"] == "S"]
    assert before and not any("AUTH" in line for line in before)


def test_plain_connection_never_carries_credentials(probe_results: dict[str, Any],
                                                    bed: Bed) -> None:
    """tls: none with plaintext AUTH allowed: the server offers no AUTH in the clear, and the
    exporter sends none (auth_unsupported), so the password never crosses the wire."""
    result = probe_results["plaintext-submission"]
    assert result["reason"] == "auth_unsupported"
    assert not any(c.startswith("AUTH") for c in _commands(result))
    assert bed["TB_PASSWORD"] not in str(result)


@pytest.mark.parametrize(
    ("name", "hint"),
    [("implicit-on-starttls-port", "set tls: starttls"),
     ("starttls-on-implicit-port", "set tls: implicit")],
)
def test_wrong_tls_mode_is_tls_mode_mismatch(probe_results: dict[str, Any], exporter: Exporter,
                                            name: str, hint: str) -> None:
    result = probe_results[name]
    assert not result["success"]
    assert result["reason"] == "tls_mode_mismatch"
    assert hint in result["hint"]

    def mismatch(m: Metrics) -> bool:
        return m.get("smtp_probe_last_failure_info", relay=name,
                     reason="tls_mode_mismatch") == 1

    m = exporter.wait_for(f"{name} to fail with tls_mode_mismatch", mismatch, timeout=30)
    assert m.get("smtp_probe_success", relay=name) == 0
