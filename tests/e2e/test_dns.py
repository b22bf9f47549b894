"""DNS checks of the sending domains against the bed's Knot zones (point 10 of the plan).

The good domain is right in every record. Of the broken ones, two are broken in a way DNS
alone shows (no DMARC record: an error; p=none: a warning); the other two publish records
that are valid on their own (an SPF record that simply does not list the relay, a DKIM key
that is not the signing key), which only the canaries' verdicts reveal (test_canaries).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.bed import Bed, Exporter, Metrics

pytestmark = pytest.mark.e2e

CHECKS = ["mx", "spf", "dkim", "dmarc", "mta_sts", "tls_rpt"]


def _domain_checks(probe_results: dict[str, Any], domain: str) -> dict[str, dict[str, Any]]:
    checks = probe_results["starttls-plain"]["dns"]["domains"][domain]
    return {c["check"]: c for c in checks}


@pytest.mark.parametrize("key", ["TB_DOMAIN", "TB_SPF_FAIL_DOMAIN", "TB_DKIM_FAIL_DOMAIN"])
def test_domains_with_valid_records_are_ok(probe_results: dict[str, Any], bed: Bed,
                                           key: str) -> None:
    checks = _domain_checks(probe_results, bed[key])
    assert sorted(checks) == sorted(CHECKS)
    assert {name: c["status"] for name, c in checks.items()} == dict.fromkeys(CHECKS, "ok")
    assert checks["dkim"]["message"] == "DKIM key for selector mail is 2048-bit RSA"


def test_missing_dmarc_record_is_an_error(probe_results: dict[str, Any], bed: Bed) -> None:
    domain = bed["TB_NO_DMARC_DOMAIN"]
    checks = _domain_checks(probe_results, domain)
    assert checks["dmarc"]["status"] == "error"
    assert checks["dmarc"]["message"].startswith(f"no DMARC record at _dmarc.{domain}")
    assert {n: c["status"] for n, c in checks.items() if n != "dmarc"} == dict.fromkeys(
        [c for c in CHECKS if c != "dmarc"], "ok")


def test_dmarc_p_none_is_a_warning(probe_results: dict[str, Any], bed: Bed) -> None:
    checks = _domain_checks(probe_results, bed["TB_DMARC_NONE_DOMAIN"])
    assert checks["dmarc"]["status"] == "warning"
    assert "p=none" in checks["dmarc"]["message"]


def test_relay_host_resolves_through_knot(probe_results: dict[str, Any], bed: Bed) -> None:
    host = probe_results["starttls-plain"]["dns"]["host"]
    assert [(c["check"], c["status"]) for c in host] == [("address", "ok")]
    assert f"resolves to {bed['TB_HOST']}" in host[0]["message"]


def test_dns_metrics(exporter: Exporter, bed: Bed) -> None:
    good, no_dmarc = bed["TB_DOMAIN"], bed["TB_NO_DMARC_DOMAIN"]
    p_none = bed["TB_DMARC_NONE_DOMAIN"]

    def checked(m: Metrics) -> bool:  # every series exists from start-up; wait for results
        return all(1 in m.all("smtp_dns_check_info", domain=d, check="dmarc").values()
                   for d in (good, no_dmarc, p_none))

    m = exporter.wait_for("DNS checks of every domain", checked, timeout=30)
    for check in CHECKS:
        assert m.get("smtp_dns_check_status", domain=good, check=check) == 1, check
    assert m.get("smtp_dns_dkim_key_size_bytes", domain=good, selector="mail") == 256
    assert m.get("smtp_dns_dmarc_policy_info", domain=good, policy="reject") == 1
    # The SMTPDNSCheckError alert's condition holds for the missing record only.
    assert m.get("smtp_dns_check_info", domain=no_dmarc, check="dmarc", status="error") == 1
    errors = {dict(k)["domain"] for k, v in m.all("smtp_dns_check_info", status="error").items()
              if v == 1}
    assert errors == {no_dmarc}
    assert m.get("smtp_dns_check_info", domain=p_none, check="dmarc", status="warning") == 1
    assert m.get("smtp_dns_dmarc_policy_info", domain=p_none, policy="none") == 1
