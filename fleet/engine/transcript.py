"""Per-host transcripts: every command, its exit status and output, redacted, in one file per host.

The transcript is what an operator opens instead of logging in to the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from fleet.engine.outcome import Attempt, HostOutcome
from fleet.redact import redact
from fleet.transport.base import OUTPUT_CAP_BYTES
from fleet.turn_end import AtTurnEnd

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class TranscriptWriter:
    """An OutcomeSink that appends each step to ``<run folder>/transcripts/<host>.log``.

    Steps recorded in one turn of the event loop are appended at the end of that turn, one
    write per host (a host script's steps arrive together); a host's start and its outcome are
    written at once, after its pending steps.
    """

    def __init__(self, run_dir: Path) -> None:
        self.folder = run_dir / "transcripts"
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._pending: dict[str, list[str]] = {}
        self._turn_end = AtTurnEnd(self._flush_soon)

    def path_for(self, host: str) -> Path:
        safe = _UNSAFE.sub("_", host)
        if safe != host:
            # Two names that differ only in unsafe characters must not share one file.
            safe += "-" + hashlib.sha256(host.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        return self.folder / f"{safe}.log"

    def _append(self, host: str, text: str) -> None:
        path = self.path_for(host)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8", errors="replace") as handle:
            handle.write(redact(text))

    def flush(self, host: str | None = None) -> None:
        """Append the pending steps (of ``host`` only, or of every host)."""
        if host is None:
            pending, self._pending = self._pending, {}
        else:
            pending = {host: self._pending.pop(host)} if host in self._pending else {}
        for name, texts in pending.items():
            self._append(name, "".join(texts))

    def _flush_soon(self) -> None:
        with contextlib.suppress(OSError):  # a full disk loses transcript text, not the run
            self.flush()

    def _later(self, host: str, text: str) -> None:
        self._pending.setdefault(host, []).append(text)
        self._turn_end.request()

    def host_started(self, host: str) -> None:
        self.flush(host)
        self._append(host, f"# host {host}\n")

    def attempt_recorded(self, host: str, attempt: Attempt) -> None:
        lines = [
            f"\n[{attempt.started_at.isoformat(timespec='seconds')}] {attempt.stage}"
            + (f" (remediation {attempt.remediation})" if attempt.remediation else ""),
            f"$ {attempt.command}",
        ]
        if attempt.config:
            lines += ["--- config file (credentials masked)", attempt.config.rstrip("\n")]
        lines += [
            f"exit status: {attempt.exit_status}  ({attempt.duration_s:.2f}s)",
        ]
        if attempt.stdout:
            lines += ["--- stdout", attempt.stdout.rstrip("\n")]
        if attempt.stderr:
            lines += ["--- stderr", attempt.stderr.rstrip("\n")]
        if attempt.truncated_bytes:
            lines.append(
                f"--- output truncated: {attempt.truncated_bytes} bytes dropped "
                f"(each stream keeps its first {OUTPUT_CAP_BYTES} bytes)"
            )
        if attempt.diagnosis is not None:
            d = attempt.diagnosis
            lines.append(f"=> {d.category.value} {d.code or ''} {d.action} {d.evidence_line}")
        self._later(host, "\n".join(lines) + "\n")

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        self.flush(outcome.host)
        d = outcome.diagnosis
        self._append(
            outcome.host,
            f"\n# outcome: {outcome.status.value} / {d.category.value} {d.code or ''}\n"
            f"# cause: {d.cause}\n# fix: {d.fix}\n",
        )
