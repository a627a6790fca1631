"""The catalog against the reference research notes: every documented code has an entry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleet.azcm.catalog import (
    Era,
    Source,
    all_entries,
    lookup,
    meanings,
    normalize_code,
    parse_version,
)
from fleet.azcm.diagnosis import ActionKind, Category

# In CI the repo is cloned with shared/ as a sibling: <clone>/../shared/reference.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "azcmagent-facts.md"
# Codes the reference names only to say no source defines them (its section 2.4).
DOCUMENTED_AS_MISSING = {"AZCM0071", "AZCM0109", "AZCM0110", "AZCM0111", "AZCM0112"}


@pytest.fixture(scope="module")
def reference() -> str:
    if not REFERENCE.is_file():
        pytest.skip(f"reference notes not found at {REFERENCE} (shared/ must sit beside the repo)")
    return REFERENCE.read_text(encoding="utf-8")


def _section(text: str, start: str, end: str) -> str:
    begin = text.index(start)
    return text[begin : text.index(end, begin + len(start))]


def _table_codes(section: str) -> set[str]:
    return set(re.findall(r"^\|\s*(AZCM\d{4})\s*\|", section, re.MULTILINE))


def test_current_table_codes_all_present(reference: str) -> None:
    codes = _table_codes(_section(reference, "### 2.1 Current table", "### 2.2"))
    assert len(codes) > 60  # the parse found the table
    missing = sorted(c for c in codes if not meanings(c))
    assert missing == []
    for code in codes:
        assert lookup(code) is not None and lookup(code).era is Era.CURRENT  # type: ignore[union-attr]


def test_exit_code_table_numbers_all_present(reference: str) -> None:
    section = _section(reference, "### 2.2 Current", "Notes on the exit-code table")
    numbers = {int(n) for n in re.findall(r"^\|\s*\*\*(\d+)\*\*\s*\|", section, re.MULTILINE)}
    assert {0, 41, 104, 106, 108} <= numbers
    missing = sorted(n for n in numbers if not meanings(f"AZCM{n:04d}"))
    assert missing == []


def test_2021_table_codes_all_present_with_2021_meaning(reference: str) -> None:
    codes = _table_codes(_section(reference, "**2021 table", "- `387b64fb`"))
    assert {"AZCM0013", "AZCM0104", "AZCM0068"} <= codes
    missing = sorted(c for c in codes if not meanings(c))
    assert missing == []


def test_installer_table_codes_all_present(reference: str) -> None:
    section = _section(
        reference, "**`install_linux_azcmagent.sh`**", "**`install_windows_azcmagent"
    )
    numbers = set(re.findall(r"^\|\s*(\d{3})\s*\|", section, re.MULTILINE))
    assert {"127", "145", "157"} <= numbers
    missing = sorted(n for n in numbers if not meanings(f"AZCM0{n}"))
    assert missing == []
    for n in numbers:
        assert all(e.source is Source.INSTALLER for e in meanings(f"AZCM0{n}"))
    # the 1.17-era script's per-distribution codes
    old = re.search(r"used 134 CentOS.{0,120}", section)
    assert old is not None
    for n in re.findall(r"\b(13[4-9]|140)\b", old.group(0)):
        assert any(e.era is Era.OLD_INSTALLER for e in meanings(n))


def test_every_code_the_reference_mentions_is_known(reference: str) -> None:
    mentioned = set(re.findall(r"\bAZCM\d{4}\b", reference)) - {"AZCM0000"}
    unknown = sorted(c for c in mentioned - DOCUMENTED_AS_MISSING if not meanings(c))
    assert unknown == []


def test_causes_and_fixes_are_not_microsofts_wording(reference: str) -> None:
    section = _section(reference, "### 2.1 Current table", "### 2.2")
    for code, cause, fix in re.findall(
        r"^\|\s*(AZCM\d{4})\s*\|([^|]*)\|([^|]*)\|", section, re.MULTILINE
    ):
        entry = lookup(code)
        assert entry is not None
        theirs = {cause.strip().rstrip(".").lower(), fix.strip().rstrip(".").lower()} - {"n/a"}
        ours = {entry.cause.rstrip(".").lower(), entry.fix.rstrip(".").lower()}
        assert not theirs & ours, code


def test_historical_meanings_exist() -> None:
    for code in ("AZCM0013", "AZCM0014", "AZCM0015", "AZCM0017", "AZCM0104"):
        assert any(e.era is Era.T2021 for e in meanings(code)), code
    for code in ("AZCM0064", "AZCM0065", "AZCM0066", "AZCM0067", "AZCM0068"):
        eras = {e.era for e in meanings(code)}
        assert {Era.CURRENT, Era.T2021} <= eras, code


def test_lookup_picks_meaning_by_agent_version() -> None:
    old = lookup("AZCM0068", "1.10.21239.009")
    new = lookup("AZCM0068", "1.51.03008.304")
    unknown_version = lookup("AZCM0068")
    assert old is not None and new is not None and unknown_version is not None
    assert old.era is Era.T2021 and old.name == "Internal Disconnect Error"
    assert new.era is Era.CURRENT and new.name == "Unable to Fetch Subscription ID"
    assert unknown_version == new
    # the 2021 meaning of 0104 needed elevation; today's is a key-store failure
    assert lookup("104", "1.0").category is Category.ELEVATION  # type: ignore[union-attr]
    assert lookup("104", "1.40").category is Category.HOST_PREREQUISITE  # type: ignore[union-attr]
    # a code only the 2021 table has is still found for a new agent
    assert lookup("AZCM0013", "1.50").name == "Invalid Tags"  # type: ignore[union-attr]
    # installer code whose meaning depends on the OS
    assert lookup("AZCM0147", platform="windows").name == "Azure VM Refused"  # type: ignore[union-attr]
    assert lookup("AZCM0147", platform="linux").category is Category.INVALID_INPUT  # type: ignore[union-attr]


def test_lookup_unknown_and_spellings() -> None:
    assert lookup("AZCM0109") is None
    assert lookup("not a code") is None
    assert normalize_code("azcm41") == "AZCM0041"
    assert normalize_code(" 0064 ") == "AZCM0064"
    assert normalize_code("AZCM12345") is None
    assert parse_version("1.51.03008.304") == (1, 51, 3008, 304)
    assert parse_version("garbage") is None


def test_entries_are_complete_and_actions_follow_the_rules() -> None:
    entries = all_entries()
    assert len(entries) >= 95
    for e in entries:
        assert re.fullmatch(r"AZCM\d{4}", e.code)
        assert e.name and e.cause and e.fix, e.code
        assert e.doc_url.startswith("https://"), e.code
        if e.action.kind is ActionKind.REMEDIATE:
            assert e.action.remediation is not None
        # a code alone never confirms a cause that stops other hosts (issue 12): only a
        # message naming it does (fleet.azcm.patterns_cloud)
        assert e.action.kind is not ActionKind.FAIL_RUN, e.code
    # the fixed points
    assert str(lookup("AZCM0067").action) == "fail_host"  # type: ignore[union-attr]
    assert lookup("AZCM0067").category is Category.RESOURCE_CONFLICT  # type: ignore[union-attr]
    assert str(lookup("AZCM0018").action) == "remediate:rerun_elevated"  # type: ignore[union-attr]
    # AZCM0041 wraps network failures too: unknown and retried until its message says why
    assert str(lookup("AZCM0041").action) == "retry"  # type: ignore[union-attr]
    assert str(lookup("AZCM0012").action) == "remediate:refresh_token"  # type: ignore[union-attr]
