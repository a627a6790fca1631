"""The transcript corpus (tests/samples/corpus): realistic failures in the three shapes
(console output with ANSI colour and progress bars, azcmagent.log logrus lines, Windows
PowerShell output with NativeCommandError wrappers, German and French included), each with its
expected category, action, code and a phrase its fix must contain (expectations.json).

Written from the reference's documented shapes and Microsoft's troubleshooting tables, not from
what the lab prints. ``arcfleet codes --explain`` must agree with the classifier on every file.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fleet.azcm.classifier import classify
from fleet.azcm.diagnosis import ActionKind, Diagnosis, Evidence
from fleet.azcm.patterns import by_name
from fleet.cli.codes import codes_command

CORPUS = Path(__file__).parent / "samples" / "corpus"
EXPECT: dict[str, dict[str, Any]] = json.loads(
    (CORPUS / "expectations.json").read_text(encoding="utf-8"))


def evidence(name: str) -> Evidence:
    spec = EXPECT[name]
    text = (CORPUS / name).read_bytes().decode("utf-8")
    started = datetime.fromisoformat(spec["run_started"]) if "run_started" in spec else None
    common: dict[str, Any] = {"run_started": started, "clock_skew_s": spec.get("clock_skew_s")}
    if spec["as"] == "log":
        return Evidence(spec["exit_status"], log_tail=text, **common)
    return Evidence(spec["exit_status"], stdout=text, **common)


def test_corpus_is_big_and_covers_every_shape() -> None:
    names = sorted(EXPECT)
    assert len(names) >= 120
    assert sorted(p.name for p in CORPUS.iterdir() if p.name != "expectations.json") == names
    texts = {n: (CORPUS / n).read_bytes().decode("utf-8") for n in names}
    assert sum("level=fatal" in t for t in texts.values()) >= 40  # logrus logs
    assert sum("NativeCommandError" in t for t in texts.values()) >= 40  # PowerShell
    assert sum("\x1b[" in t and "\r" in t for t in texts.values()) >= 40  # ANSI + progress
    assert sum("In Zeile:" in t for t in texts.values()) >= 10  # German PowerShell
    assert any(t.count("level=fatal") >= 2 for t in texts.values())  # several runs in a log
    assert any("WARN" in t and "FATAL" in t for t in texts.values())


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_corpus_transcript(name: str) -> None:
    spec = EXPECT[name]
    got = classify(evidence(name))
    summary = f"{got.category}/{got.action}/{got.code} rule={got.rule} line={got.evidence_line!r}"
    assert got.category.value == spec["category"], summary
    assert str(got.action) == spec["action"], summary
    assert got.code == spec["code"], summary
    assert spec["fix_contains"] in got.fix, got.fix
    if got.action.kind in (ActionKind.FAIL_HOST, ActionKind.FAIL_RUN):
        assert got.doc_url.startswith("https://"), summary
    assert "(see the message)" not in got.fix, got.fix  # every placeholder was filled


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_fail_run_only_from_a_message_that_names_the_cause(name: str) -> None:
    got = classify(evidence(name))
    if not got.fail_run:
        return
    assert got.rule.startswith("pattern:"), got.rule
    pattern = by_name(got.rule.removeprefix("pattern:").split("+")[0])
    assert pattern.scope is not None, pattern.name  # it knows which hosts it is about
    assert pattern.regex.search(got.evidence_line)
    assert got.extra["breaker_scope"] == pattern.scope


def _explain(name: str) -> dict[str, Any]:
    spec = EXPECT[name]
    args = ["--explain", str(CORPUS / name), "--as", spec["as"], "--json"]
    if spec["exit_status"] is not None:
        args += ["--exit-code", str(spec["exit_status"])]
    if "run_started" in spec:
        args += ["--run-started", spec["run_started"]]
    if "clock_skew_s" in spec:
        args += ["--clock-skew", str(spec["clock_skew_s"])]
    result = CliRunner().invoke(codes_command, args)
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = json.loads(result.output)
    return body


def _same(explained: dict[str, Any], got: Diagnosis) -> None:
    assert (explained["category"], explained["action"], explained["code"], explained["rule"]) == (
        got.category.value, str(got.action), got.code, got.rule)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_explain_gives_the_engines_verdict(name: str) -> None:
    explained = _explain(name)
    got = classify(evidence(name))
    _same(explained, got)
    scope = explained["breaker_scope"]
    if got.fail_run:
        assert scope["kind"] == got.extra["breaker_scope"]
        assert scope["key"]
    else:
        assert scope is None
