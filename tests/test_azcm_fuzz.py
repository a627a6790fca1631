"""The classifier never raises and always answers, whatever bytes a host sends back.

classify() turns an exception of its own into an ``unknown`` verdict (rule "error") so that a
host never loses its evidence; these tests call it through :func:`classify_or_raise`, which
fails on that verdict, so a classifier bug is seen here instead of being absorbed.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.azcm.classifier import classify
from fleet.azcm.diagnosis import Category, Diagnosis, Evidence
from fleet.azcm.patterns import PATTERNS

_ANSI = ["\x1b[31m", "\x1b[0m", "\x1b[2K", "\x1b[?25l", "\x1b]0;t\x07", "\x9b1m", "\x1b"]
_FRAGMENTS = [
    "AZCM0041", "AZCM0042: ", "AZCM9", "level=fatal msg=\"", "FATAL[0000] ", "ERROR ", "\r",
    "\n", "\x00", "Status Code=429", "Retry-After: ", "99999999999999999999", "dial tcp ",
    "no such host", "Correlation ID=", "RequestCorrelationId:", "Resource ID=/subscriptions/",
    "{\"status\":\"failed\",\"error\":{", "}", "[", "'", "\"", "\\", "Connected machine to Azure",
    "  20% [==>   ]", "AADSTS", "sudo: ", "/providers/Microsoft.HybridCompute/machines/",
    *(p.sample for p in PATTERNS[::5]), *_ANSI,
]

noisy_text = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=40),
              st.text(alphabet=string.printable, max_size=40)),
    max_size=60,
).map("".join)
invalid_utf8 = st.binary(max_size=600).map(lambda b: b.decode("utf-8", errors="replace"))
anything = st.one_of(noisy_text, invalid_utf8, st.text(max_size=300))
exit_status = st.one_of(st.none(), st.integers(min_value=-300, max_value=100_000))

def classify_or_raise(evidence: Evidence) -> Diagnosis:
    got = classify(evidence)
    assert got.rule != "error", f"the classifier raised: {got.extra.get('error')}"
    return got


# No deadline: CI machines are shared; a hang still fails (the run never ends), bounded
# regexes are checked directly in test_pathological_lines_finish.
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(exit_status, anything, anything, anything, st.one_of(st.none(), anything),
       st.one_of(st.none(), anything))
def test_classify_always_returns_a_diagnosis(
    status: int | None, stdout: str, stderr: str, log: str, installer: str | None,
    version: str | None,
) -> None:
    got = classify_or_raise(Evidence(status, stdout, stderr, log, installer, version))
    assert isinstance(got, Diagnosis)
    assert isinstance(got.category, Category)
    if got.category is Category.CONNECTED:
        assert status == 0
    if got.category is Category.UNKNOWN:
        assert "raw" in got.extra
    if got.retry_after_s is not None:
        assert 0 <= got.retry_after_s <= 3600


@FUZZ
@given(noisy_text)
def test_json_shaped_noise(body: str) -> None:
    got = classify_or_raise(Evidence(1, stdout="{" + body + "}", installer_output="{" + body))
    assert isinstance(got, Diagnosis)


def test_pathological_lines_finish() -> None:
    # Shapes that make naive regexes backtrack: long runs inside bounded wildcards.
    huge = [
        "dial tcp " * 200_000,
        "Device Authorization Code" + " x" * 300_000 + " no such host?",
        "login.windows.net/" + "a" * 1_000_000 + ":  Forbidden",
        "management.azure.com/" + "/" * 500_000,
        "'" * 1_000_000,
        "Application with identifier '" + "x" * 500_000,
        "\x1b[" + "1;" * 400_000 + "m",
        "AZCM" * 300_000,
        ("Correlation ID=" + "a" * 70) * 20_000,
        "\r".join(["  20% [==>  ]"] * 200_000),
        "\x00" * 1_000_000,
    ]
    for text in huge:
        for evidence in (Evidence(1, stdout=text), Evidence(None, log_tail=text),
                         Evidence(0, stderr=text, installer_output=text)):
            assert isinstance(classify_or_raise(evidence), Diagnosis)
