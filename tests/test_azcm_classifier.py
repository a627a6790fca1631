"""The classifier on the reference's verbatim samples and on synthetic ones in every shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azcm_shapes import SHAPES, render

from fleet.azcm.catalog import Source, all_entries, lookup
from fleet.azcm.classifier import classify
from fleet.azcm.diagnosis import ActionKind, Category, Diagnosis, Evidence
from fleet.azcm.patterns import PATTERNS, MessagePattern

SAMPLES = Path(__file__).parent / "samples"
MANIFEST: dict[str, dict[str, Any]] = json.loads((SAMPLES / "manifest.json").read_text())
CONNECTION_ERRORS: list[dict[str, str]] = json.loads(
    (SAMPLES / "connection_errors.json").read_text()
)


def _evidence(name: str, spec: dict[str, Any]) -> Evidence:
    text = (SAMPLES / name).read_text(encoding="utf-8")
    if spec.get("as") == "log":
        return Evidence(spec["exit_status"], log_tail=text)
    return Evidence(spec["exit_status"], stdout=text)


# --- verbatim samples from the reference -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_reference_sample(name: str) -> None:
    spec = MANIFEST[name]
    got = classify(_evidence(name, spec))
    assert got.category.value == spec["category"]
    for key in ("action", "code", "rule", "resource_id"):
        if key in spec:
            value = got.action if key == "action" else getattr(got, key)
            assert str(value) == str(spec[key]), key
    if "correlation_ids" in spec:
        assert list(got.correlation_ids) == spec["correlation_ids"]
    assert got.evidence_line  # every diagnosis points at the line that decided it


@pytest.mark.parametrize("name", sorted(MANIFEST))
@pytest.mark.parametrize("exit_status", [None, 1, 41, 255])
def test_no_sample_is_connected_without_exit_zero(name: str, exit_status: int | None) -> None:
    spec = {**MANIFEST[name], "exit_status": exit_status}
    assert not classify(_evidence(name, spec)).category.is_success


def test_success_samples_need_success_text_not_just_exit_zero() -> None:
    connected = [n for n, s in MANIFEST.items() if s["category"] == "connected"]
    assert len(connected) == 3
    for name, spec in MANIFEST.items():
        got = classify(_evidence(name, {**spec, "exit_status": 0}))
        assert (got.category is Category.CONNECTED) == (name in connected), name


def test_device_code_prompt_with_exit_zero_is_unknown_with_raw_evidence() -> None:
    got = classify(_evidence("device_code_prompt_only.txt", {"exit_status": 0}))
    assert got.category is Category.UNKNOWN
    assert got.extra["needs_verify"] == "true"
    assert "devicelogin" in got.extra["raw"]
    assert "devicelogin" in got.evidence_line


@pytest.mark.parametrize("row", CONNECTION_ERRORS, ids=lambda r: f"{r['table']}-{r['pattern']}")
@pytest.mark.parametrize("code", ["AZCM0041", "AZCM0042", "AZCM0062"])
def test_connection_error_table_rows(row: dict[str, str], code: str) -> None:
    out = render("progress", row["line"], code, "x")
    got = classify(Evidence(int(code[4:]), stdout=out))
    assert got.category.value == row["category"]
    assert got.rule == f"pattern:{row['pattern']}"
    assert got.code == code


# --- synthetic: every code in every shape -----------------------------------------------------

FAILURE_ENTRIES = [
    e for e in all_entries() if e.code != "AZCM0000" and e == lookup(e.code)
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("entry", FAILURE_ENTRIES, ids=lambda e: e.code)
def test_every_code_in_every_shape(shape: str, entry: Any) -> None:
    exit_status = entry.number if entry.source is Source.AGENT else 1
    out = render(shape, "the operation did not complete", entry.code, entry.name)
    got = classify(Evidence(exit_status, stdout=out))
    assert got.code == entry.code
    assert (got.category, got.action) == (entry.category, entry.action)
    assert entry.code in got.evidence_line or got.rule.startswith("pattern:")
    if got.category is Category.UNKNOWN:
        assert got.extra["raw"]


@pytest.mark.parametrize("code", ["AZCM0064", "AZCM0065", "AZCM0066", "AZCM0068", "AZCM0104"])
def test_old_agent_gets_old_meaning(code: str) -> None:
    old = lookup(code, "1.10")
    new = lookup(code, "1.60")
    assert old is not None and new is not None and old != new
    out = render("logrus", "operation failed", code, old.name)
    got_old = classify(Evidence(int(code[4:]), stdout=out, agent_version="1.10.21239.9"))
    got_new = classify(Evidence(int(code[4:]), stdout=out, agent_version="1.60.0.1"))
    assert (got_old.name, got_old.action) == (old.name, old.action)
    assert (got_new.name, got_new.action) == (new.name, new.action)


def test_installer_output_json_carries_the_code() -> None:
    body = json.dumps({"status": "failed", "error": {"code": "AZCM0146", "message": "x"}})
    got = classify(Evidence(1, stdout="", installer_output=body))
    assert (got.code, got.category, got.action.kind) == ("AZCM0146", Category.NETWORK,
                                                         ActionKind.RETRY)


def test_installer_success_json_is_not_a_connection() -> None:
    body = '{\n\t"status": "success",\n\t"message": "Latest version of azcmagent is installed."\n}'
    got = classify(Evidence(0, stdout="", installer_output=body))
    assert got.category is Category.UNKNOWN


# --- synthetic: every message pattern in every shape -----------------------------------------


def _pattern_exit(p: MessagePattern) -> int:
    code = p.code or (p.only_with_codes[0] if p.only_with_codes else None)
    if code and int(code[4:]) <= 125:
        return int(code[4:])
    return 1


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.name)
def test_every_pattern_in_every_shape(shape: str, pattern: MessagePattern) -> None:
    code = pattern.only_with_codes[0] if pattern.only_with_codes else None
    out = render(shape, pattern.sample, code, "Failed to Delete Resource" if code else "")
    got = classify(Evidence(_pattern_exit(pattern), stdout=out))
    assert got.rule == f"pattern:{pattern.name}"
    assert (got.category, got.action) == (pattern.category, pattern.action)
    if pattern.code:
        assert got.code == pattern.code
    assert pattern.regex.search(got.evidence_line)


def test_pattern_order_is_precedence() -> None:
    names = [p.name for p in PATTERNS]
    assert len(names) == len(set(names))
    assert names.index("login_dns_failure") < names.index("dns_failure")
    assert names.index("arm_throttled") < names.index("network_timeout")
    assert names.index("aad_invalid_secret") < names.index("aad_error")


# --- precedence and details --------------------------------------------------------------------


def test_0041_caused_by_dns_is_network_not_credentials() -> None:
    msg = ("Failed to acquire authorization token from SPN: Post https://login.microsoftonline.com"
           "/t/oauth2/token: dial tcp: lookup login.microsoftonline.com: no such host")
    got = classify(Evidence(41, stdout=render("progress", msg, "AZCM0041", "Failed to Get Access "
                                              "Token")))
    assert (got.category, got.code, got.action.kind) == (Category.NETWORK, "AZCM0041",
                                                         ActionKind.RETRY)
    assert "Group Policy" in got.fix  # the historical no-such-host row's footnote


def test_0042_with_429_is_throttled_with_retry_after() -> None:
    msg = ('Failed to create resource: {"error":{"code":"TooManyRequests"}} Status Code=429 '
           "Retry-After: 27 RequestCorrelationId:0f0e0d0c-1111-2222-3333-444455556666")
    got = classify(Evidence(42, stdout=render("logrus", msg, "AZCM0042", "Failed to Create "
                                              "Resource")))
    assert (got.category, got.code, got.action.kind) == (Category.THROTTLED, "AZCM0042",
                                                         ActionKind.RETRY)
    assert got.retry_after_s == 27.0
    assert got.correlation_ids == ("0f0e0d0c-1111-2222-3333-444455556666",)


def test_0042_with_403_is_permissions_and_stops_the_run() -> None:
    msg = ("Code: AuthorizationFailed Message: The client 'x' with object id 'y' does not have "
           "authorization to perform action 'Microsoft.HybridCompute/machines/write' over scope "
           "'/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.HybridCompute/machines/web7'"
           " StatusCode=403")
    got = classify(Evidence(42, stdout=render("json", msg, "AZCM0042", "")))
    assert (got.category, got.code) == (Category.PERMISSIONS, "AZCM0042")
    assert got.fail_run
    assert got.extra["denied_action"] == "Microsoft.HybridCompute/machines/write"
    assert got.resource_id == (
        "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.HybridCompute/machines/web7"
    )


@pytest.mark.parametrize(
    ("aadsts", "pattern"),
    [("AADSTS7000215", "aad_invalid_secret"), ("AADSTS7000222", "aad_expired_secret"),
     ("AADSTS700016", "aad_app_not_found"), ("AADSTS90002", "aad_tenant_not_found")],
)
def test_entra_codes_fail_the_run(aadsts: str, pattern: str) -> None:
    msg = f"Failed to acquire authorization token from SPN: {aadsts}: something went wrong."
    got = classify(Evidence(41, stdout=render("progress", msg, "AZCM0041", "x")))
    assert got.rule == f"pattern:{pattern}"
    assert got.category is Category.CREDENTIALS and got.fail_run
    assert got.extra["aadsts"] == aadsts


def test_last_fatal_code_wins_over_earlier_info_lines() -> None:
    out = (
        'time="t" level=error msg="retrying after AZCM0026: Network Error"\n'
        'time="t" level=info msg="still going AZCM0045"\n'
        'time="t" level=fatal msg="AZCM0044: Resource Already Exists"\n'
        'time="t" level=info msg="see AZCM0001 docs"\n'
    )
    got = classify(Evidence(None, stdout=out))
    assert (got.code, got.category, got.rule) == ("AZCM0044", Category.RESOURCE_CONFLICT, "code")


def test_exit_code_is_the_last_resort() -> None:
    got = classify(Evidence(18, stdout="nothing useful here\n"))
    assert (got.code, got.category, got.rule) == ("AZCM0018", Category.ELEVATION, "exit")
    assert str(got.action) == "remediate:rerun_elevated"


def test_exit_1_without_anything_is_unknown_with_raw_lines() -> None:
    got = classify(Evidence(1, stdout="line one\nsomething odd happened\n\n"))
    assert got.category is Category.UNKNOWN
    assert got.evidence_line == "something odd happened"
    assert "line one" in got.extra["raw"]


def test_exit_127_and_command_not_found_are_agent_missing() -> None:
    assert classify(Evidence(127)).category is Category.AGENT_MISSING
    got = classify(Evidence(1, stderr="sudo: azcmagent: command not found\n"))
    assert got.category is Category.AGENT_MISSING


@pytest.mark.parametrize(
    ("stderr", "action"),
    [("sudo: a password is required\n", "fail_host"),
     ("You must be root to execute /usr/bin/azcmagent\n", "remediate:rerun_elevated")],
)
def test_elevation_messages(stderr: str, action: str) -> None:
    got = classify(Evidence(1, stderr=stderr))
    assert got.category is Category.ELEVATION and str(got.action) == action


def test_0067_is_a_conflict_the_engine_resolves() -> None:
    out = render("progress", "The machine is already connected. Resource ID=/subscriptions/s/"
                 "resourceGroups/other/providers/Microsoft.HybridCompute/machines/m1",
                 "AZCM0067", "Machine Already Connected")
    got = classify(Evidence(67, stdout=out))
    assert (got.code, got.category, str(got.action)) == (
        "AZCM0067", Category.RESOURCE_CONFLICT, "fail_host")
    assert got.resource_id is not None and "/other/" in got.resource_id


def test_0043_with_resource_gone_is_stale_and_disconnects_locally() -> None:
    out = render("logrus", "Code: ResourceNotFound Message: The Resource could not be found.",
                 "AZCM0043", "Failed to Delete Resource")
    got = classify(Evidence(43, stdout=out))
    assert got.category is Category.STALE_RESOURCE
    assert str(got.action) == "remediate:disconnect_force_local_only"
    # the same words under another code are not about a deleted resource
    other = classify(Evidence(20, stdout=render("logrus", "Region could not be found",
                                                "AZCM0020", "x")))
    assert other.category is Category.INVALID_INPUT


# --- which run said it --------------------------------------------------------------------------


def _log(*runs: list[str]) -> str:
    return "".join(f'time="2024-0{i + 1}-01T00:00:00Z" {line}\n' for i, run in enumerate(runs)
                   for line in run)


def test_this_runs_output_beats_the_log() -> None:
    log = _log(['level=info msg="Exit Code:  AZCM0044: Resource Already Exists"',
                'level=fatal msg="resource exists"'])
    got = classify(Evidence(41, stdout=render("progress", "Invalid client secret is provided",
                                              "AZCM0041", "x"), log_tail=log))
    assert (got.code, got.category) == ("AZCM0041", Category.CREDENTIALS)


def test_log_prefers_last_fatal_line_of_the_last_run() -> None:
    old_run = ['level=info msg="Exit Code:  AZCM0041: Failed to Get Access Token"',
               'level=fatal msg="Invalid client secret is provided"']
    filler = [f'level=debug msg="heartbeat {n}"' for n in range(200)]
    new_run = ['level=info msg="Exit Code:  AZCM0026: Network Error"',
               'level=fatal msg="dial tcp 20.1.2.3:443: i/o timeout"']
    got = classify(Evidence(None, log_tail=_log(old_run, filler, new_run, ['level=debug msg="x"'])))
    assert (got.code, got.category, got.rule) == ("AZCM0026", Category.NETWORK,
                                                  "pattern:network_timeout")
    assert got.extra["source"] == "log"


def test_log_code_contradicting_the_exit_status_is_ignored() -> None:
    log = _log(['level=info msg="Exit Code:  AZCM0041: Failed to Get Access Token"',
                'level=fatal msg="Invalid client secret is provided RequestCorrelationId:abc"'])
    got = classify(Evidence(61, stdout="", log_tail=log))
    assert got.code == "AZCM0061" and got.category is Category.AGENT_SERVICE
    assert got.correlation_ids == ()
    # the same log agrees with exit 41, so there it is the evidence
    agreed = classify(Evidence(41, stdout="", log_tail=log))
    assert (agreed.category, agreed.correlation_ids) == (Category.CREDENTIALS, ("abc",))


def test_pasted_output_of_several_runs_is_read_as_the_last_run() -> None:
    first = render("logrus", "Invalid client secret is provided", "AZCM0041", "x")
    second = render("logrus", "dial tcp 1.2.3.4:443: i/o timeout", "AZCM0026", "Network Error")
    got = classify(Evidence(None, stdout=first + second))
    assert (got.code, got.rule) == ("AZCM0026", "pattern:network_timeout")


def test_log_without_fatal_line_uses_its_last_lines() -> None:
    lines = ['level=info msg="Exit Code:  AZCM0045: Failed to Update Public Key"']
    lines += [f'level=debug msg="poll {n}"' for n in range(300)]
    lines += ['level=info msg="Exit Code:  AZCM0075: Unable to Obtain Cloud Configuration"']
    got = classify(Evidence(None, log_tail=_log(lines)))
    assert got.code == "AZCM0075"


def test_success_with_fatal_code_is_not_connected() -> None:
    out = ("INFO    Connected machine to Azure\n"
           'time="t" level=fatal msg="AZCM0081: Failed to Get MSI Certificate from HIS"\n')
    got = classify(Evidence(0, stdout=out))
    assert got.category is Category.STALE_RESOURCE


def test_json_success_needs_resource_id_and_exit_zero() -> None:
    rid = "/subscriptions/s/resourceGroups/g/providers/Microsoft.HybridCompute/machines/m"
    body = json.dumps({"resourceId": rid, "portalUrl": "https://portal.azure.com/x"})
    ok = classify(Evidence(0, stdout=body))
    assert ok.category is Category.CONNECTED and ok.resource_id == rid
    assert not classify(Evidence(62, stdout=body)).category.is_success
    assert not classify(Evidence(0, stdout=json.dumps({"resourceId": ""}))).category.is_success


def test_azcm0000_alone_is_not_success() -> None:
    got = classify(Evidence(0, stdout='level=info msg="Exit Code:  AZCM0000: No Error"\n'))
    assert got.category is Category.UNKNOWN


def test_unknown_code_is_unknown_with_code_and_raw() -> None:
    got = classify(Evidence(1, stdout="ERROR   AZCM0111: Something new\n"))
    assert (got.category, got.code) == (Category.UNKNOWN, "AZCM0111")
    assert "AZCM0111" in got.extra["raw"]


def test_result_is_a_diagnosis_with_exit_status_recorded() -> None:
    got = classify(Evidence(26, stdout=render("json", "x", "AZCM0026", "Network Error")))
    assert isinstance(got, Diagnosis)
    assert got.extra["exit_status"] == "26"
