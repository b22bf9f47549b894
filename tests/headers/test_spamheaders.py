"""Tests for reading spam scores and spam flags from SpamAssassin, rspamd and Microsoft headers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.headers.spam import Headers, is_spam_flagged, spam_scores

SA_SPAM = (
    "Yes, score=7.3 required=5.0 tests=BAYES_99,DKIM_INVALID,HTML_MESSAGE,\n"
    "\tRDNS_NONE,URIBL_BLACK autolearn=no autolearn_force=no version=3.4.6"
)
SA_HAM = (
    "No, score=-0.1 required=5.0 tests=DKIM_SIGNED,DKIM_VALID,DKIM_VALID_AU,\n"
    "\tSPF_HELO_NONE,SPF_PASS autolearn=ham autolearn_force=no version=4.0.0"
)
RSPAMD_HAM = (
    "default: False [3.40 / 15.00]; ARC_NA(0.00)[]; R_SPF_ALLOW(-0.20)[+ip4:192.0.2.0/24];\n"
    "\tMIME_GOOD(-0.10)[text/plain]; DMARC_POLICY_ALLOW(-0.50)[example.com,reject]"
)
RSPAMD_SPAM = "default: True [17.25 / 15.00]; BAYES_SPAM(5.10)[99.99%]; ABUSE_SURBL(5.50)[x.test]"
FOREFRONT = (
    "CIP:192.0.2.10;CTRY:US;LANG:en;SCL:1;SRV:;IPV:NLI;SFV:NSPM;H:mail.example.com;PTR:"
    "mail.example.com;CAT:NONE;SFS:(13230040)(4636009)(376002);DIR:INB;"
)


def test_spamassassin_status_spam() -> None:
    """X-Spam-Status "Yes, score=7.3" gives spamassassin 7.3 and flags the message."""
    headers = [("X-Spam-Status", SA_SPAM)]
    assert spam_scores(headers) == {"spamassassin": 7.3}
    assert is_spam_flagged(headers) is True


def test_spamassassin_status_ham() -> None:
    """X-Spam-Status "No, score=-0.1" gives a negative score and says not spam."""
    headers = [("X-Spam-Status", SA_HAM)]
    assert spam_scores(headers) == {"spamassassin": -0.1}
    assert is_spam_flagged(headers) is False


def test_spamassassin_old_hits_format() -> None:
    """SpamAssassin 2.x's "hits=" is read like "score="."""
    assert spam_scores([("X-Spam-Status", "Yes, hits=12.5 required=5.0")]) == {
        "spamassassin": 12.5}


def test_spamassassin_score_header_alone() -> None:
    """X-Spam-Score alone gives the spamassassin score but no flag."""
    headers = [("X-Spam-Score", " 2.7 ")]
    assert spam_scores(headers) == {"spamassassin": 2.7}
    assert is_spam_flagged(headers) is None


def test_spam_status_wins_over_spam_score() -> None:
    """When both are present the score in X-Spam-Status is used."""
    headers = [("X-Spam-Score", "1.0"), ("X-Spam-Status", SA_SPAM)]
    assert spam_scores(headers) == {"spamassassin": 7.3}


def test_topmost_header_wins() -> None:
    """With several X-Spam-Status fields the topmost (newest) one that parses is used."""
    headers = [("X-Spam-Status", "No, score=garbage"), ("X-Spam-Status", SA_HAM),
               ("X-Spam-Status", SA_SPAM)]
    assert spam_scores(headers) == {"spamassassin": -0.1}


@pytest.mark.parametrize(("flag", "expected"), [("YES", True), ("yes", True), ("NO", False)])
def test_spam_flag(flag: str, expected: bool) -> None:
    """X-Spam-Flag YES flags the message and NO clears it, without a score."""
    headers = [("X-Spam-Flag", flag)]
    assert is_spam_flagged(headers) is expected
    assert spam_scores(headers) == {}


def test_rspamd_result_ham() -> None:
    """X-Spamd-Result "default: False [3.40 / 15.00]" gives rspamd 3.4, not spam."""
    headers = [("X-Spamd-Result", RSPAMD_HAM)]
    assert spam_scores(headers) == {"rspamd": 3.4}
    assert is_spam_flagged(headers) is False


def test_rspamd_result_spam() -> None:
    """X-Spamd-Result "default: True [...]" flags the message."""
    headers = [("X-Spamd-Result", RSPAMD_SPAM)]
    assert spam_scores(headers) == {"rspamd": 17.25}
    assert is_spam_flagged(headers) is True


def test_rspamd_score_header_alone() -> None:
    """X-Rspamd-Score alone gives the rspamd score."""
    assert spam_scores([("X-Rspamd-Score", "-1.20")]) == {"rspamd": -1.2}


@pytest.mark.parametrize(("scl", "flagged"), [("5", True), ("9", True), ("1", False),
                                             ("-1", False)])
def test_microsoft_organization_scl(scl: str, flagged: bool) -> None:
    """X-MS-Exchange-Organization-SCL is the microsoft_scl score; 5 and above is spam."""
    headers = [("X-MS-Exchange-Organization-SCL", scl)]
    assert spam_scores(headers) == {"microsoft_scl": float(scl)}
    assert is_spam_flagged(headers) is flagged


def test_forefront_scl_when_organization_header_absent() -> None:
    """The SCL: entry of X-Forefront-Antispam-Report is used when the SCL header is absent."""
    headers = [("X-Forefront-Antispam-Report", FOREFRONT)]
    assert spam_scores(headers) == {"microsoft_scl": 1.0}
    assert is_spam_flagged(headers) is False


def test_organization_scl_wins_over_forefront() -> None:
    """The organization SCL header wins over the Forefront report."""
    headers = [("X-Forefront-Antispam-Report", FOREFRONT), ("X-MS-Exchange-Organization-SCL", "6")]
    assert spam_scores(headers) == {"microsoft_scl": 6.0}
    assert is_spam_flagged(headers) is True


def test_untrusted_forefront_report_is_ignored() -> None:
    """X-Forefront-Antispam-Report-Untrusted (the sender tenant's verdict) is not read."""
    headers = [("X-Forefront-Antispam-Report-Untrusted", "CIP:192.0.2.1;SCL:9;")]
    assert spam_scores(headers) == {}
    assert is_spam_flagged(headers) is None


def test_all_sources_together() -> None:
    """Every source present gives one score each; any source saying spam flags the message."""
    headers = {
        "X-Spam-Status": [SA_HAM],
        "X-Spamd-Result": [RSPAMD_HAM],
        "X-MS-Exchange-Organization-SCL": ["5"],
    }
    assert spam_scores(headers) == {"spamassassin": -0.1, "rspamd": 3.4, "microsoft_scl": 5.0}
    assert is_spam_flagged(headers) is True


@pytest.mark.parametrize(
    "headers",
    [
        {"x-spam-status": [SA_SPAM]},
        {"X-SPAM-STATUS": [SA_SPAM]},
        {"X-Spam-Status": SA_SPAM},  # a bare str value, not a list
        [("x-SpAm-StAtUs", SA_SPAM)],
    ],
)
def test_header_names_are_case_insensitive(headers: Headers) -> None:
    """Header names match whatever their case, in a mapping or a list of pairs."""
    assert spam_scores(headers) == {"spamassassin": 7.3}
    assert is_spam_flagged(headers) is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Spam-Status", "score=abc required=5.0"),
        ("X-Spam-Status", "Maybe, score=nan"),
        ("X-Spam-Score", "inf"),
        ("X-Spam-Score", "++++++"),
        ("X-Spam-Score", "1e400"),
        ("X-Spam-Score", ""),
        ("X-Spamd-Result", "default: Perhaps [x / y]"),
        ("X-Spamd-Result", "no brackets here"),
        ("X-Rspamd-Score", "3,4"),
        ("X-MS-Exchange-Organization-SCL", "high"),
        ("X-MS-Exchange-Organization-SCL", "99"),
        ("X-Forefront-Antispam-Report", "CIP:1.2.3.4;SCL:;SRV:;"),
    ],
)
def test_garbage_is_skipped(name: str, value: str) -> None:
    """Values that do not parse give no score and no flag."""
    assert spam_scores([(name, value)]) == {}
    assert is_spam_flagged([(name, value)]) is None


def test_nothing_known_gives_none() -> None:
    """Without any spam header there is no score and the flag is unknown."""
    headers = [("Subject", "hello"), ("Received", "from a by b")]
    assert spam_scores(headers) == {}
    assert is_spam_flagged(headers) is None
    assert is_spam_flagged({}) is None


_NAMES = st.sampled_from([
    "X-Spam-Status", "x-spam-score", "X-Spam-Flag", "X-Spamd-Result", "X-Rspamd-Score",
    "X-MS-Exchange-Organization-SCL", "X-Forefront-Antispam-Report",
]) | st.text(max_size=20)
_VALUES = st.text() | st.lists(
    st.sampled_from(["SCL:", ";", "[", "]", " / ", "score=", "Yes, ", "-", ".", "9", "True"])
    | st.text(max_size=3), max_size=20).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.lists(st.tuples(_NAMES, _VALUES), max_size=8),
    st.dictionaries(_NAMES, st.lists(_VALUES, max_size=3) | _VALUES, max_size=8),
))
def test_never_raises(headers: Headers) -> None:
    """Any header names and values give finite scores and a bool-or-None flag, never an error."""
    scores = spam_scores(headers)
    assert all(isinstance(score, float) and math.isfinite(score) for score in scores.values())
    assert is_spam_flagged(headers) in (True, False, None)
