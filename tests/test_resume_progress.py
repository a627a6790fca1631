"""What a resume takes over from the steps an interrupted run recorded for a host."""

from __future__ import annotations

from datetime import UTC, datetime

from fleet.engine.host_run import EarlierProgress
from fleet.engine.outcome import Attempt

MKTEMP = "mktemp -d /tmp/arcfleet.XXXXXXXX"
CONNECT = "sudo -n /usr/bin/azcmagent connect --config /tmp/arcfleet.x/connect.json --verbose"


def _step(stage: str, command: str, exit_status: int | None = 0,
          remediation: str | None = None) -> Attempt:
    return Attempt(stage=stage, command=command, exit_status=exit_status, duration_s=0.1,
                   started_at=datetime(2026, 1, 1, tzinfo=UTC), remediation=remediation)


def test_nothing_recorded_is_a_fresh_start() -> None:
    assert EarlierProgress.of((), MKTEMP) == EarlierProgress(0, 0, None, ())


def test_preflight_only_launched_no_connect() -> None:
    steps = [_step("preflight", "id -u"), _step("preflight", "command -v azcmagent")]
    assert EarlierProgress.of(steps, MKTEMP).launched == 0


def test_connect_killed_before_its_result() -> None:
    progress = EarlierProgress.of([_step("preflight", "id -u"), _step("connect", MKTEMP)],
                                  MKTEMP)
    assert (progress.launched, progress.finished, progress.last_exit) == (1, 0, None)


def test_failed_connect_restart_then_killed_in_the_second() -> None:
    steps = [
        _step("connect", MKTEMP), _step("connect", CONNECT, 64), _step("cleanup", "rm -rf x"),
        _step("remediate", "systemctl restart himdsd", 0, "restart_agent_service"),
        _step("connect", MKTEMP),
    ]
    progress = EarlierProgress.of(steps, MKTEMP)
    assert (progress.launched, progress.finished, progress.last_exit) == (2, 1, 64)
    assert progress.remediations == ("restart_agent_service",)
