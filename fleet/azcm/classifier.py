"""Turn what one azcmagent (or install script) run left behind into a :class:`Diagnosis`.

The verdict order (docs/codes.md walks through examples):

1. **This run only.** stdout, stderr and the installer ``--output`` JSON come first. The
   ``azcmagent.log`` tail counts only from this run's start (:func:`fleet.azcm.lines.this_runs_log`)
   and only when the command was not killed (a killed agent writes no fatal line, so a fatal line
   in its log is an older run's). A code seen only in the log is ignored when it contradicts an
   exit status that is itself a code.
2. **Success** is ``connected`` only with exit 0 *and* a finished connect in this run's output
   *and* no failure code on an error line.
3. **The failing line decides.** The last ``FATAL`` / ``level=fatal`` line (else the last
   ``Exit Code:`` line, else the last error line) and the lines that belong to it are read first;
   ``WARN``/``INFO``/``DEBUG`` lines never decide. Message patterns
   (:data:`fleet.azcm.patterns.PATTERNS`, most specific first) are tried on the fatal line, then
   on the error lines right before it, then on the run's other error lines.
4. **Nested codes:** when only codes are left, a wrapper code (AZCM0062, AZCM0042, AZCM0041,
   AZCM0001, AZCM0101) gives way to a more specific code printed in the same run (AZCM0026
   inside an AZCM0062 is a network failure).
5. **The code, then the exit status** (azcmagent exits with the code's number).
6. **Confirmation:** ``fail_run`` (which may stop other hosts) comes only from a pattern that
   names its cause (an AADSTS or ARM error code); no code alone is ``fail_run``.
7. **Time:** a certificate-validity or token-time failure with a clock visibly off (the output
   says "current time ... is before", or ``Evidence.clock_skew_s`` is large) is the host's clock.

No exit status and no failing line (a cut-off output) is ``unknown`` / retry. Exit status 0
without success evidence is ``unknown`` / ``fail_host`` with ``extra["needs_verify"] = "true"``.

Input is bounded: each line is cut to :data:`~fleet.azcm.patterns.MAX_LINE` characters, each stream
to its last :data:`~fleet.azcm.lines.MAX_STREAM` characters, and the log to a window near its end,
so the classifier never hangs on hostile or huge input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from fleet.azcm.catalog import (
    CLOCK_URL,
    MANAGE_URL,
    TROUBLESHOOT_URL,
    CodeEntry,
    Source,
    lookup,
    parse_version,
)
from fleet.azcm.diagnosis import FAIL_HOST, NONE, RETRY, Category, Diagnosis, Evidence
from fleet.azcm.lines import (
    MAX_STREAM,
    Line,
    json_documents,
    json_lines,
    last_run,
    log_window,
    meaningful,
    split,
    tail,
    this_runs_log,
)
from fleet.azcm.patterns import (
    AADSTS_RE,
    ACTION_RE,
    CODE_RE,
    CORRELATION_RE,
    NAMESPACE_RE,
    PATTERNS,
    RESOURCE_ID_RE,
    RETRY_AFTER_RE,
    SUCCESS_RE,
    MessagePattern,
)
from fleet.azcm.patterns_cloud import CLOCK_FIX

MAX_RETRY_AFTER_S = 3600.0
RAW_LINES = 12
#: a measured host clock this far off real time makes time-window failures a clock problem
CLOCK_SKEW_LIMIT_S = 300.0
#: codes that only say "something failed while ..." and wrap the cause
WRAPPER_CODES = frozenset({"AZCM0001", "AZCM0041", "AZCM0042", "AZCM0062", "AZCM0101"})
#: patterns that are about time windows: with the clock visibly off they are a clock problem
TIME_PATTERNS = frozenset({"tls_certificate_time", "arm_token_rejected", "tls_interception"})

_VERSION_RE = re.compile(r"Agent ?Version\"?\s{0,40}[:=]\s{0,8}\"?(\d{1,4}\.\d{1,4}[\d.]{0,16})",
                         re.IGNORECASE)
_CLOCK_BEHIND_RE = re.compile(r"current time \S{1,40} is before", re.IGNORECASE)
_WINDOWS_HINTS = ("install_windows_azcmagent", "msiexec", ".msi", "powershell", "c:\\",
                  "%programdata%", "$env:", ".exe : ")
_LINUX_HINTS = ("install_linux_azcmagent", "/opt/azcmagent", "/var/opt/azcmagent", "/var/lib/dpkg",
                "apt-get", "systemctl", "sudo")
_DETAILS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("namespace", NAMESPACE_RE),
    ("denied_action", ACTION_RE),
    ("aadsts", AADSTS_RE),
    ("arm_scope", re.compile(r"over scope '([^']{1,512})'", re.IGNORECASE)),
    ("policy_assignment", re.compile(
        r"policyAssignment(?:DisplayName|Name)?\\?\"?\s{0,3}:\s{0,3}(?:\{\s{0,3}\\?\"name\\?\""
        r"\s{0,3}:\s{0,3})?\\?\"([^\"\\]{1,200})|policy assignment '([^']{1,200})'",
        re.IGNORECASE)),
    ("proxy", re.compile(
        r"proxyconnect tcp: (?:dial tcp )?(\[[0-9a-fA-F:.]{1,64}\]:\d{1,5}|[\w.-]{1,253}:\d{1,5})"
        r"|proxy(?:\.url| URL| server)?\W{1,4}(https?://[^\s'\"]{1,200})", re.IGNORECASE)),
    ("client_id", re.compile(
        r"(?:to app|Application with identifier|client) '([0-9a-fA-F-]{36})'", re.IGNORECASE)),
    ("tenant_id", re.compile(r"(?:directory|Tenant) '([0-9a-fA-F-]{36})'", re.IGNORECASE)),
    ("subscription_id", re.compile(r"/subscriptions/([0-9a-zA-Z-]{1,64})", re.IGNORECASE)),
    ("resource_group", re.compile(r"/resource[gG]roups/([^/\s'\"]{1,90})")),
)
_PLACEHOLDER_RE = re.compile(r"\{(\w{1,40})\}")


@dataclass
class _Scan:
    lines: list[Line] = field(default_factory=list)
    json_objects: list[object] = field(default_factory=list)


def _scan_run(evidence: Evidence) -> _Scan:
    scan = _Scan()
    stdout = tail(evidence.stdout or "", MAX_STREAM)
    stderr = tail(evidence.stderr or "", MAX_STREAM)
    scan.json_objects = json_documents(stdout)
    if scan.json_objects:
        scan.lines.extend(json_lines(scan.json_objects, "json"))
    else:
        scan.lines.extend(split(stdout, "stdout"))
    scan.lines = last_run(scan.lines)
    scan.lines.extend(last_run(list(split(stderr, "stderr", 1_000_000))))
    if evidence.installer_output:
        installer = json_documents(tail(evidence.installer_output, MAX_STREAM))
        if installer:
            scan.lines.extend(json_lines(installer, "installer"))
        else:
            scan.lines.extend(split(evidence.installer_output, "installer", 2_000_000))
    return scan


def _killed(exit_status: int | None) -> bool:
    """Stopped from outside (timeout 124, a signal): such a process writes no fatal line."""
    return exit_status is not None and (exit_status == 124 or exit_status > 128)


def _log_lines(evidence: Evidence) -> list[Line]:
    if _killed(evidence.exit_status):
        return []
    log = this_runs_log(evidence.log_tail or "", evidence.run_started, evidence.clock_skew_s)
    return last_run(list(split(log_window(log), "log", 3_000_000)))


def _failing_tiers(lines: list[Line]) -> list[list[Line]]:
    """The lines that may decide the verdict, in the order they are read: the failing line and
    what follows it, the error lines right before it, then every other verdict line."""
    verdict = [ln for ln in lines if ln.verdict]
    anchor = next((n for n in range(len(verdict) - 1, -1, -1) if verdict[n].fatal), None)
    if anchor is None:
        anchor = next((n for n in range(len(verdict) - 1, -1, -1)
                       if verdict[n].json or verdict[n].level == "error"), None)
    if anchor is None:
        return [verdict]
    first = verdict[anchor]
    head = [first] + [ln for ln in verdict[anchor + 1 : anchor + 9] if ln.level is None]
    before: list[Line] = []
    position = lines.index(first)
    for line in reversed(lines[:position]):
        if line.noise:
            continue
        if not line.verdict or line.fatal:
            break
        before.append(line)
        if len(before) >= 8:
            break
    seen = {id(ln) for ln in head + before}
    rest = [ln for ln in verdict if id(ln) not in seen]
    return [head, before, rest]


@dataclass(frozen=True)
class _PatternHit:
    pattern: MessagePattern
    rank: int
    line: Line


def _best_pattern(lines: list[Line], codes: set[str]) -> _PatternHit | None:
    best: _PatternHit | None = None
    for line in lines:
        if not line.keyword:
            continue
        for rank, pattern in enumerate(PATTERNS):
            if best is not None and rank > best.rank:
                break
            if pattern.only_with_codes and not codes.intersection(pattern.only_with_codes):
                continue
            if pattern.search(line.text):
                # equal rank: the later line wins (it is closer to the failure)
                best = _PatternHit(pattern, rank, line)
                break
    return best


def _tiered_pattern(tiers: list[list[Line]], codes: set[str]) -> _PatternHit | None:
    for tier in tiers:
        hit = _best_pattern(tier, codes)
        if hit is not None:
            return hit
    return None


@dataclass(frozen=True)
class _CodeHit:
    code: str
    line: Line


def _codes(lines: list[Line]) -> list[_CodeHit]:
    hits: list[_CodeHit] = []
    for line in lines:
        if "azcm" not in line.text.lower() or line.noise:
            continue
        for match in CODE_RE.finditer(line.text):
            hits.append(_CodeHit(f"AZCM{match.group(1)}", line))
    return hits


def _best_code(hits: list[_CodeHit]) -> _CodeHit | None:
    """The last failure code on a severe line, else the last failure code on a line that may
    decide, else the last failure code anywhere."""
    failures = [h for h in hits if h.code != "AZCM0000"]
    for subset in ([h for h in failures if h.line.severe],
                   [h for h in failures if h.line.verdict], failures):
        if subset:
            return subset[-1]
    return None


def _nested_code(hit: _CodeHit, hits: list[_CodeHit], version: str | None) -> _CodeHit:
    """A wrapper code yields to a more specific failure code printed in the same run."""
    if hit.code not in WRAPPER_CODES:
        return hit
    inner = [h for h in hits if h.code not in WRAPPER_CODES and h.code != "AZCM0000"
             and lookup(h.code, version) is not None]
    return inner[-1] if inner else hit


def _find_first(regex: re.Pattern[str], lines: Iterable[Line]) -> re.Match[str] | None:
    for line in lines:
        match = regex.search(line.text)
        if match:
            return match
    return None


def _correlation_ids(lines: Iterable[Line]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for line in lines:
        if "orrelation" not in line.text:
            continue
        for match in CORRELATION_RE.finditer(line.text):
            seen.setdefault(match.group(1), None)
    return tuple(seen)


def _resource_id(lines: list[Line], json_objects: list[object]) -> str | None:
    for obj in json_objects:
        if isinstance(obj, dict):
            value = obj.get("resourceId")
            if isinstance(value, str) and value.strip():
                return value.strip()
    for line in lines:
        if "Resource ID=" in line.text:
            match = RESOURCE_ID_RE.search(line.text)
            if match:
                return match.group(0)
    match = _find_first(RESOURCE_ID_RE, (ln for ln in lines if "HybridCompute" in ln.text))
    return match.group(0) if match else None


def _retry_after(lines: Iterable[Line]) -> float | None:
    for line in lines:
        match = RETRY_AFTER_RE.search(line.text)
        if match:
            return min(float(match.group(1)), MAX_RETRY_AFTER_S)
    return None


def _json_success(objects: list[object]) -> bool:
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        status = str(obj.get("status", "")).lower()
        failed = bool(obj.get("error")) or status in ("failed", "error", "failure")
        resource = obj.get("resourceId")
        if not failed and isinstance(resource, str) and resource.strip():
            return True
    return False


def _raw(lines: list[Line]) -> str:
    tail = meaningful(lines)[-RAW_LINES:]
    return "\n".join(ln.text[:300] for ln in tail)


def _platform(lines: Iterable[Line]) -> str | None:
    text = " ".join(ln.text.lower() for ln in list(lines)[-200:])
    if any(h in text for h in _WINDOWS_HINTS):
        return "windows"
    if any(h in text for h in _LINUX_HINTS):
        return "linux"
    return None


def _agent_version(evidence: Evidence, lines: Iterable[Line]) -> str | None:
    if evidence.agent_version:
        return evidence.agent_version
    match = _find_first(_VERSION_RE, lines)
    return match.group(1) if match and parse_version(match.group(1)) else None


def _from_entry(entry: CodeEntry, rule: str, line: Line | None) -> Diagnosis:
    return Diagnosis(
        category=entry.category,
        action=entry.action,
        code=entry.code,
        name=entry.name,
        cause=entry.cause,
        fix=entry.fix,
        doc_url=entry.doc_url,
        evidence_line=line.text if line else "",
        rule=rule,
    )


def _exit_entry(exit_status: int | None, version: str | None) -> CodeEntry | None:
    """azcmagent exits with the code's number; 1 is also every install-script failure."""
    if exit_status is None or exit_status <= 1 or exit_status > 125:
        return None
    entry = lookup(f"AZCM{exit_status:04d}", version)
    return entry if entry is not None and entry.source is Source.AGENT else None


def _from_exit(exit_status: int | None, lines: list[Line]) -> Diagnosis:
    last = meaningful(lines)[-1].text if meaningful(lines) else ""
    raw = {"raw": _raw(lines)}
    if exit_status == 0:
        return Diagnosis(
            Category.UNKNOWN, FAIL_HOST, name="exit 0 without success",
            cause="The command exited 0 but printed no sign of a finished connect.",
            fix="Check the host with `azcmagent show`; arcfleet verifies before it counts the "
            "host connected.", doc_url=TROUBLESHOOT_URL, evidence_line=last,
            rule="exit0-no-success", extra={**raw, "needs_verify": "true"},
        )
    if exit_status == 127:
        return Diagnosis(
            Category.AGENT_MISSING, FAIL_HOST, name="command not found",
            cause="The shell could not find azcmagent (exit 127): the agent is not installed or "
            "not on PATH.", fix="Install the agent with Microsoft's install script "
            "(install_linux_azcmagent.sh / install_windows_azcmagent.ps1), then rerun the host.",
            doc_url=MANAGE_URL, evidence_line=last, rule="exit", extra=raw,
        )
    if exit_status == 126:
        return Diagnosis(
            Category.HOST_PREREQUISITE, FAIL_HOST, name="not executable",
            cause="The shell found azcmagent but could not run it (exit 126).",
            fix="Check the file's permissions and the filesystem's noexec mount option.",
            doc_url=TROUBLESHOOT_URL, evidence_line=last, rule="exit", extra=raw,
        )
    if exit_status == 130:
        return Diagnosis(
            Category.INTERRUPTED, RETRY, name="interrupted",
            cause="The command was interrupted (SIGINT, exit 130).",
            fix="Run it again and let it finish.", evidence_line=last, rule="exit", extra=raw,
        )
    if exit_status == 124:
        return Diagnosis(
            Category.TIMEOUT, RETRY, name="timed out",
            cause="The command was stopped by a timeout on the host (exit 124).",
            fix="Retry; raise the timeout if the host is slow.", evidence_line=last, rule="exit",
            extra=raw,
        )
    if exit_status is None:
        cause = "No exit status was captured and no known message or code was printed."
    elif exit_status == 1:
        cause = "The command failed (exit 1) without a code or message arcfleet recognises."
    elif exit_status > 128:
        cause = f"The command was killed by signal {exit_status - 128} (exit {exit_status})."
    else:
        cause = f"The command exited {exit_status}, which is not a known AZCM code."
    return Diagnosis(
        Category.UNKNOWN, RETRY if exit_status == 1 or (exit_status or 0) > 128 else FAIL_HOST,
        name="unrecognised failure", cause=cause,
        fix="Read the raw output below; if it repeats, collect `azcmagent logs` from the host.",
        doc_url=TROUBLESHOOT_URL, evidence_line=last, rule="exit", extra=raw,
    )


def classify(evidence: Evidence) -> Diagnosis:
    """The diagnosis for one run. Never raises; ``unknown`` always carries the raw lines."""
    try:
        return _classify(evidence)
    except Exception as exc:  # a classifier bug must not lose the host's evidence
        text = "\n".join(
            s for s in (evidence.stdout, evidence.stderr, evidence.log_tail) if s
        )
        lines = list(split(tail(text, 64 * 1024), "raw"))
        return Diagnosis(
            Category.UNKNOWN, FAIL_HOST, name="classifier error",
            cause=f"arcfleet could not classify this output ({type(exc).__name__}).",
            fix="Read the raw output; please report the classifier error.",
            doc_url=TROUBLESHOOT_URL,
            evidence_line=meaningful(lines)[-1].text if meaningful(lines) else "",
            rule="error", extra={"raw": _raw(lines), "error": repr(exc)[:300]},
        )


def _truncated(lines: list[Line]) -> Diagnosis:
    last = meaningful(lines)[-1].text if meaningful(lines) else ""
    return Diagnosis(
        Category.UNKNOWN, RETRY, name="output cut off",
        cause="No exit status was captured and the output ends before any failing line: the "
        "run was cut off, so nothing it printed is a verdict.",
        fix="arcfleet retries the host; if it is cut off again, read the raw output and "
        "collect `azcmagent logs` from the host.", doc_url=TROUBLESHOOT_URL,
        evidence_line=last, rule="truncated", extra={"raw": _raw(lines)},
    )


def _classify(evidence: Evidence) -> Diagnosis:
    run = _scan_run(evidence)
    log_lines = _log_lines(evidence)
    version = _agent_version(evidence, run.lines + log_lines)
    exit_status = evidence.exit_status

    run_hits = _codes(run.lines)
    run_code = _best_code(run_hits)
    log_hits = _codes(log_lines)
    log_code = _best_code(log_hits)
    exit_entry = _exit_entry(exit_status, version)
    this_run = run_code.code if run_code else (exit_entry.code if exit_entry else None)
    if log_code is not None and this_run is not None and log_code.code != this_run:
        # the log's last failure is an older run's: this run's output or exit status says
        # otherwise, so none of the log's lines (messages, ids) describe this run
        log_code, log_lines, log_hits = None, [], []
    all_lines = run.lines + log_lines
    code_hit = run_code or log_code
    found_codes = {h.code for h in (code_hit,) if h} | ({exit_entry.code} if exit_entry else set())

    correlation = _correlation_ids(all_lines)
    resource_id = _resource_id(run.lines, run.json_objects) or _resource_id(log_lines, [])
    extra: dict[str, str] = {}
    if exit_status is not None:
        extra["exit_status"] = str(exit_status)
    if version:
        extra["agent_version"] = version

    success = bool(_find_first(SUCCESS_RE, run.lines)) or _json_success(run.json_objects)
    if exit_status == 0 and success and (run_code is None or not run_code.line.severe):
        line = _find_first(SUCCESS_RE, run.lines)
        return Diagnosis(
            Category.CONNECTED, NONE, code=None, name="connected",
            cause="azcmagent reported the machine connected and exited 0.", fix="",
            evidence_line=line.group(0) if line else "resourceId in --json output",
            correlation_ids=correlation, resource_id=resource_id, rule="success", extra=extra,
        )

    run_tiers = _failing_tiers(run.lines)
    log_tiers = _failing_tiers(log_lines)
    # the agent ends a failed run with a fatal line, "Exit Code:", an error line or the code
    has_failing_line = code_hit is not None or any(
        ln.fatal or ln.json or ln.exit_code_line or ln.level == "error" for ln in all_lines)
    if exit_status is None and not has_failing_line:
        diagnosis = _truncated(all_lines)
        return replace(diagnosis, correlation_ids=correlation, resource_id=resource_id,
                       extra={**extra, **diagnosis.extra})

    hit = _tiered_pattern(run_tiers, found_codes) or _tiered_pattern(log_tiers, found_codes)
    platform = _platform(all_lines)
    if hit is not None:
        pattern = hit.pattern
        code = code_hit.code if code_hit else (pattern.code or (
            exit_entry.code if exit_entry else None))
        entry = lookup(code, version, platform=platform) if code else None
        diagnosis = Diagnosis(
            category=pattern.category, action=pattern.action, code=code,
            name=entry.name if entry else pattern.name, cause=pattern.cause, fix=pattern.fix,
            doc_url=pattern.doc_url, evidence_line=hit.line.text, rule=f"pattern:{pattern.name}",
        )
        extra["source"] = hit.line.source
        if pattern.scope:
            extra["breaker_scope"] = pattern.scope
        if pattern.field:
            extra["field"] = pattern.field
    elif code_hit is not None:
        chosen = _nested_code(code_hit, run_hits + log_hits, version)
        entry = lookup(chosen.code, version, platform=platform)
        rule = "code" if chosen is code_hit else "code:nested"
        if entry is None:
            diagnosis = Diagnosis(
                Category.UNKNOWN, FAIL_HOST, code=chosen.code, name="undocumented code",
                cause=f"{chosen.code} is not in any published AZCM table.",
                fix="Read the raw output; collect `azcmagent logs` if it repeats.",
                doc_url=TROUBLESHOOT_URL, evidence_line=chosen.line.text, rule=rule,
            )
        else:
            diagnosis = _from_entry(entry, rule, chosen.line)
        if chosen is not code_hit:
            extra["outer_code"] = code_hit.code
        extra["source"] = chosen.line.source
    elif exit_entry is not None:
        lines = meaningful(all_lines)
        diagnosis = _from_entry(exit_entry, "exit", lines[-1] if lines else None)
    else:
        diagnosis = _from_exit(exit_status, all_lines)

    if diagnosis.category is Category.CONNECTED:  # no rule may claim success but the first
        diagnosis = _from_exit(exit_status, all_lines)
    if diagnosis.fail_run and not diagnosis.rule.startswith("pattern:"):
        # only a message that names its cause may stop other hosts
        diagnosis = replace(diagnosis, action=FAIL_HOST)
    if diagnosis.category is Category.UNKNOWN and "raw" not in diagnosis.extra:
        extra["raw"] = _raw(all_lines)

    pattern_lines = [hit.line] if hit else []
    extra.update(_details(pattern_lines + [ln for ln in all_lines if ln.keyword or "/" in ln.text]))
    diagnosis = _clock(diagnosis, evidence, extra)
    retry_after = _retry_after(all_lines)
    return Diagnosis(
        category=diagnosis.category, action=diagnosis.action, code=diagnosis.code,
        name=diagnosis.name, cause=_fill(diagnosis.cause, extra),
        fix=_fill(diagnosis.fix, extra), doc_url=diagnosis.doc_url or TROUBLESHOOT_URL,
        evidence_line=diagnosis.evidence_line, correlation_ids=correlation,
        resource_id=resource_id, retry_after_s=retry_after, rule=diagnosis.rule,
        extra={**extra, **diagnosis.extra},
    )


def _clock(diagnosis: Diagnosis, evidence: Evidence, extra: dict[str, str]) -> Diagnosis:
    """A time-window failure is the host's clock when the clock is visibly off."""
    skew = evidence.clock_skew_s
    if skew is not None:
        extra["clock_skew_s"] = f"{skew:g}"
    pattern = diagnosis.rule.removeprefix("pattern:")
    if pattern not in TIME_PATTERNS:
        return diagnosis
    behind = bool(_CLOCK_BEHIND_RE.search(diagnosis.evidence_line))
    measured_off = skew is not None and abs(skew) >= CLOCK_SKEW_LIMIT_S
    if not (behind and pattern == "tls_certificate_time") and not measured_off:
        return diagnosis
    why = (f"the host's clock is {abs(skew or 0):g} s {'ahead' if (skew or 0) > 0 else 'behind'}"
           if measured_off else "the output shows the host's time before the certificate's start")
    return replace(
        diagnosis, category=Category.HOST_PREREQUISITE, action=FAIL_HOST, name="clock is off",
        cause=f"A time check failed because {why}; certificates and tokens look invalid to a "
        "host with a wrong clock.", fix=CLOCK_FIX, doc_url=CLOCK_URL,
        rule=f"{diagnosis.rule}+clock",
    )


def _details(lines: list[Line]) -> dict[str, str]:
    """Named details worth a column or a fix text: the provider namespace, the denied action and
    its scope, the AADSTS code, the policy assignment, the proxy, ids a breaker scope uses."""
    found: dict[str, str] = {}
    for key, regex in _DETAILS:
        for line in lines:
            match = regex.search(line.text)
            if match:
                found[key] = next(g for g in match.groups() if g)
                break
    return found


def _fill(text: str, details: dict[str, str]) -> str:
    """Fill ``{placeholders}`` in a cause or fix from the message's details."""
    if "{" not in text:
        return text
    return _PLACEHOLDER_RE.sub(lambda m: details.get(m.group(1), "(see the message)"), text)
