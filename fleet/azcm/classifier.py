"""Turn what one azcmagent (or install script) run left behind into a :class:`Diagnosis`.

Precedence, strongest first:

1. success: ``connected`` only when the exit status is 0 *and* this run's output shows a finished
   connect (``Connected machine to Azure``, the old ``Successfully Onboarded Resource to Azure``, or
   ``--json`` output with a ``resourceId``) *and* no error line carries a failure code;
2. the most specific message pattern (:data:`fleet.azcm.patterns.PATTERNS` order);
3. the AZCM code printed: an error/fatal line or an ``Exit Code:`` line beats an info line, a later
   line beats an earlier one;
4. the exit status: for azcmagent it is the code's number; install scripts always exit 1.

Sources: this run's stdout, stderr and the installer ``--output`` JSON come first; the
``azcmagent.log`` tail is read only when they say nothing, and then only around its last fatal line
(the log also holds older runs). A code seen only in the log is ignored when it contradicts an
exit status that is itself a code.

Exit status 0 without success evidence is ``unknown`` / ``fail_host`` with
``extra["needs_verify"] = "true"``: the engine should ask ``azcmagent show --json`` (and use
:func:`fleet.azcm.findings.connected` or :func:`~fleet.azcm.findings.verify_failed`).

Input is bounded: each line is cut to :data:`~fleet.azcm.patterns.MAX_LINE` characters, each stream
to its last :data:`MAX_STREAM` characters, and the log to a window near its end, so the classifier
never hangs on hostile or huge input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from fleet.azcm.catalog import (
    MANAGE_URL,
    TROUBLESHOOT_URL,
    CodeEntry,
    Source,
    lookup,
    parse_version,
)
from fleet.azcm.diagnosis import FAIL_HOST, NONE, RETRY, Category, Diagnosis, Evidence
from fleet.azcm.patterns import (
    AADSTS_RE,
    ACTION_RE,
    CODE_RE,
    CORRELATION_RE,
    MAX_LINE,
    NAMESPACE_RE,
    PATTERNS,
    RESOURCE_ID_RE,
    RETRY_AFTER_RE,
    SUCCESS_RE,
    MessagePattern,
    may_match,
)

MAX_STREAM = 1024 * 1024
MAX_LINES = 20_000
#: lines kept before the log's last fatal line (the same run's context), and after it
LOG_BEFORE = 40
LOG_AFTER = 5
#: lines kept from the end of a log that has no fatal line
LOG_TAIL_LINES = 60
LOG_WINDOW_CHARS = 256 * 1024
MAX_RETRY_AFTER_S = 3600.0
RAW_LINES = 12

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]{0,32}[ -/]{0,4}[@-~]|\x1b[@-Z\\-_]|\x9b[0-9;?]{0,32}[@-~]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPLIT_RE = re.compile(r"\r\n|\r|\n")
_PROGRESS_RE = re.compile(r"^\s{0,8}\d{1,3}% \[")
_SEVERE_RE = re.compile(
    r"level=\"?(?:fatal|error|panic)|^(?:FATAL|ERROR|PANIC)\b|\"level\"\s{0,3}:\s{0,3}\"(?:fatal|"
    r"error)|Exit Code:",
    re.IGNORECASE,
)
_VERSION_RE = re.compile(r"Agent ?Version\"?\s{0,40}[:=]\s{0,8}\"?(\d{1,4}\.\d{1,4}[\d.]{0,16})",
                         re.IGNORECASE)
_LOG_FATAL_MARKERS = ("level=fatal", "FATAL[", '"level":"fatal"', "level=panic")
_LOG_ERROR_MARKERS = ("level=error", "ERROR[", '"level":"error"')
_WINDOWS_HINTS = ("install_windows_azcmagent", "msiexec", ".msi", "powershell", "c:\\",
                  "%programdata%", "$env:")
_LINUX_HINTS = ("install_linux_azcmagent", "/opt/azcmagent", "/var/opt/azcmagent", "/var/lib/dpkg",
                "apt-get", "systemctl", "sudo")


@dataclass(frozen=True)
class Line:
    text: str  # ANSI-stripped, control characters removed, capped
    source: str  # stdout | stderr | installer | json | log
    index: int
    json: bool = False

    @cached_property
    def keyword(self) -> bool:
        """Whether any pattern could match (see :func:`~fleet.azcm.patterns.may_match`)."""
        return may_match(self.text.lower())

    @cached_property
    def severe(self) -> bool:
        """An error/fatal line, an ``Exit Code:`` line, or a JSON result."""
        return self.json or bool(_SEVERE_RE.search(self.text))


@dataclass
class _Scan:
    lines: list[Line] = field(default_factory=list)
    json_objects: list[object] = field(default_factory=list)


def _clean(raw: str) -> str:
    if len(raw) > MAX_LINE * 2:
        raw = raw[: MAX_LINE * 2]
    if not raw.isprintable():  # fast path: most lines have no escapes or control characters
        raw = _CONTROL_RE.sub("", _ANSI_RE.sub("", raw))
    return raw.strip()[:MAX_LINE]


def _split(text: str, source: str, start: int = 0) -> Iterator[Line]:
    """Cleaned, non-empty lines; progress-bar redraws are dropped, and only the last
    :data:`MAX_LINES` lines are kept (the end of an output is where failures are)."""
    raws = _SPLIT_RE.split(text)
    first = max(0, len(raws) - MAX_LINES)
    for offset in range(first, len(raws)):
        raw = raws[offset]
        if "%" in raw and _PROGRESS_RE.match(raw):
            continue
        clean = _clean(raw)
        if clean and not _PROGRESS_RE.match(clean):
            yield Line(clean, source, start + offset)


def _tail(text: str, limit: int) -> str:
    return text[-limit:] if len(text) > limit else text


def _json_documents(text: str) -> list[object]:
    """Any JSON object printed on stdout: the whole text, or single lines that are objects."""
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_STREAM:
        return []
    if stripped[0] in "{[":
        try:
            return [json.loads(stripped)]
        except ValueError:
            pass
    found: list[object] = []
    for raw in stripped.splitlines()[-200:]:
        raw = _ANSI_RE.sub("", raw).strip()
        if raw.startswith("{") and raw.endswith("}"):
            try:
                found.append(json.loads(raw))
            except ValueError:
                continue
    return found


def _flatten(value: object, prefix: str = "", depth: int = 0) -> Iterator[str]:
    """JSON values as ``key: value`` lines, so the same patterns read JSON and text alike."""
    if depth > 12:
        return
    if isinstance(value, dict):
        for key, item in list(value.items())[:200]:
            yield from _flatten(item, f"{key}", depth + 1)
    elif isinstance(value, list):
        for item in value[:200]:
            yield from _flatten(item, prefix, depth + 1)
    elif value is not None:
        yield f"{prefix}: {value}" if prefix else str(value)


def _json_lines(objects: Iterable[object], source: str) -> Iterator[Line]:
    for n, obj in enumerate(objects):
        for m, text in enumerate(_flatten(obj)):
            clean = _clean(text)
            if clean:
                yield Line(clean, source, n * 10_000 + m, json=True)


def _log_window(log: str) -> str:
    """The part of the log that belongs to the last failed run: around its last fatal line."""
    if not log:
        return ""
    pos = max(log.rfind(marker) for marker in _LOG_FATAL_MARKERS)
    if pos < 0:
        pos = max(log.rfind(marker) for marker in _LOG_ERROR_MARKERS)
    if pos < 0:
        start = len(log)
        for _ in range(LOG_TAIL_LINES):
            start = log.rfind("\n", 0, start - 1 if start > 0 else 0)
            if start <= 0:
                start = 0
                break
        window = log[start:]
    else:
        start = pos
        for _ in range(LOG_BEFORE + 1):
            start = log.rfind("\n", 0, start)
            if start <= 0:
                start = 0
                break
        end = pos
        for _ in range(LOG_AFTER + 1):
            nxt = log.find("\n", end + 1)
            if nxt < 0:
                end = len(log)
                break
            end = nxt
        window = log[start:end]
    return _tail(window, LOG_WINDOW_CHARS)


_FATAL_RE = re.compile(
    r"level=\"?(?:fatal|panic)\b|^(?:FATAL|PANIC)\b|\"level\"\s{0,3}:\s{0,3}\"fatal", re.IGNORECASE
)


def _last_run(lines: list[Line]) -> list[Line]:
    """A fatal line ends an azcmagent run, so the lines after the one-but-last fatal line are the
    last run's (a pasted log, or a log tail, holds several runs)."""
    fatal = [n for n, ln in enumerate(lines) if not ln.json and _FATAL_RE.search(ln.text)]
    return lines[fatal[-2] + 1 :] if len(fatal) >= 2 else lines


def _scan_run(evidence: Evidence) -> _Scan:
    scan = _Scan()
    stdout = _tail(evidence.stdout or "", MAX_STREAM)
    stderr = _tail(evidence.stderr or "", MAX_STREAM)
    scan.json_objects = _json_documents(stdout)
    if scan.json_objects:
        scan.lines.extend(_json_lines(scan.json_objects, "json"))
    else:
        scan.lines.extend(_split(stdout, "stdout"))
    scan.lines = _last_run(scan.lines)
    scan.lines.extend(_last_run(list(_split(stderr, "stderr", 1_000_000))))
    if evidence.installer_output:
        installer = _json_documents(_tail(evidence.installer_output, MAX_STREAM))
        if installer:
            scan.lines.extend(_json_lines(installer, "installer"))
        else:
            scan.lines.extend(_split(evidence.installer_output, "installer", 2_000_000))
    return scan


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


@dataclass(frozen=True)
class _CodeHit:
    code: str
    line: Line


def _codes(lines: list[Line]) -> list[_CodeHit]:
    hits: list[_CodeHit] = []
    for line in lines:
        if "azcm" not in line.text.lower():
            continue
        for match in CODE_RE.finditer(line.text):
            hits.append(_CodeHit(f"AZCM{match.group(1)}", line))
    return hits


def _best_code(hits: list[_CodeHit]) -> _CodeHit | None:
    """The last failure code on a severe line, else the last failure code anywhere."""
    failures = [h for h in hits if h.code != "AZCM0000"]
    severe = [h for h in failures if h.line.severe]
    if severe:
        return severe[-1]
    return failures[-1] if failures else None


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


def _meaningful(lines: Iterable[Line]) -> list[Line]:
    return [ln for ln in lines if not _PROGRESS_RE.match(ln.text)]


def _raw(lines: list[Line]) -> str:
    tail = _meaningful(lines)[-RAW_LINES:]
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
    last = _meaningful(lines)[-1].text if _meaningful(lines) else ""
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
            "not on PATH.", fix="Install the agent (arcfleet's install stage), then rerun.",
            doc_url=MANAGE_URL, evidence_line=last, rule="exit", extra=raw,
        )
    if exit_status == 126:
        return Diagnosis(
            Category.HOST_PREREQUISITE, FAIL_HOST, name="not executable",
            cause="The shell found azcmagent but could not run it (exit 126).",
            fix="Check the file's permissions and the filesystem's noexec mount option.",
            evidence_line=last, rule="exit", extra=raw,
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
        lines = list(_split(_tail(text, 64 * 1024), "raw"))
        return Diagnosis(
            Category.UNKNOWN, FAIL_HOST, name="classifier error",
            cause=f"arcfleet could not classify this output ({type(exc).__name__}).",
            fix="Read the raw output; please report the classifier error.",
            evidence_line=_meaningful(lines)[-1].text if _meaningful(lines) else "",
            rule="error", extra={"raw": _raw(lines), "error": repr(exc)[:300]},
        )


def _classify(evidence: Evidence) -> Diagnosis:
    run = _scan_run(evidence)
    log_lines = _last_run(list(_split(_log_window(evidence.log_tail or ""), "log", 3_000_000)))
    version = _agent_version(evidence, run.lines + log_lines)
    exit_status = evidence.exit_status

    run_code = _best_code(_codes(run.lines))
    log_code = _best_code(_codes(log_lines))
    exit_entry = _exit_entry(exit_status, version)
    this_run = run_code.code if run_code else (exit_entry.code if exit_entry else None)
    if log_code is not None and this_run is not None and log_code.code != this_run:
        # the log's last failure is an older run's: this run's output or exit status says
        # otherwise, so none of the log's lines (messages, ids) describe this run
        log_code, log_lines = None, []
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

    hit = _best_pattern(run.lines, found_codes) or _best_pattern(log_lines, found_codes)
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
    elif code_hit is not None:
        entry = lookup(code_hit.code, version, platform=platform)
        if entry is None:
            diagnosis = Diagnosis(
                Category.UNKNOWN, FAIL_HOST, code=code_hit.code, name="undocumented code",
                cause=f"{code_hit.code} is not in any published AZCM table.",
                fix="Read the raw output; collect `azcmagent logs` if it repeats.",
                doc_url=TROUBLESHOOT_URL, evidence_line=code_hit.line.text, rule="code",
            )
        else:
            diagnosis = _from_entry(entry, "code", code_hit.line)
        extra["source"] = code_hit.line.source
    elif exit_entry is not None:
        meaningful = _meaningful(all_lines)
        diagnosis = _from_entry(exit_entry, "exit", meaningful[-1] if meaningful else None)
    else:
        diagnosis = _from_exit(exit_status, all_lines)

    if diagnosis.category is Category.CONNECTED:  # no rule may claim success but the first
        diagnosis = _from_exit(exit_status, all_lines)
    if diagnosis.category is Category.UNKNOWN and "raw" not in diagnosis.extra:
        extra["raw"] = _raw(all_lines)

    pattern_lines = [hit.line] if hit else []
    extra.update(_details(pattern_lines + [ln for ln in all_lines if ln.keyword]))
    retry_after = _retry_after(all_lines)
    return Diagnosis(
        category=diagnosis.category, action=diagnosis.action, code=diagnosis.code,
        name=diagnosis.name, cause=diagnosis.cause, fix=diagnosis.fix, doc_url=diagnosis.doc_url,
        evidence_line=diagnosis.evidence_line, correlation_ids=correlation,
        resource_id=resource_id, retry_after_s=retry_after, rule=diagnosis.rule,
        extra={**extra, **diagnosis.extra},
    )


def _details(lines: list[Line]) -> dict[str, str]:
    """Named details worth a column: the provider namespace, the denied action, AADSTS code."""
    found: dict[str, str] = {}
    for key, regex in (("namespace", NAMESPACE_RE), ("denied_action", ACTION_RE),
                       ("aadsts", AADSTS_RE)):
        match = _find_first(regex, lines)
        if match:
            found[key] = match.group(1)
    return found
