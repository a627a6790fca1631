"""Transport and run findings: each factory yields the category and action the engine expects."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleet.azcm import findings
from fleet.azcm.diagnosis import ActionKind, Category, Diagnosis
from fleet.engine.outcome import HostStatus

RID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.HybridCompute/machines/m"

CASES: list[tuple[Callable[[], Diagnosis], Category, ActionKind, HostStatus]] = [
    (lambda: findings.unreachable("connection refused"), Category.UNREACHABLE, ActionKind.RETRY,
     HostStatus.FAILED),
    (lambda: findings.auth_failed("publickey denied"), Category.AUTH, ActionKind.FAIL_HOST,
     HostStatus.FAILED),
    (lambda: findings.host_key_rejected("key mismatch"), Category.AUTH, ActionKind.FAIL_HOST,
     HostStatus.FAILED),
    (lambda: findings.timed_out("connect", 600.0), Category.TIMEOUT, ActionKind.RETRY,
     HostStatus.FAILED),
    (lambda: findings.agent_missing("which azcmagent: exit 1"), Category.AGENT_MISSING,
     ActionKind.FAIL_HOST, HostStatus.FAILED),
    (lambda: findings.elevation_required("sudo: a password is required"), Category.ELEVATION,
     ActionKind.FAIL_HOST, HostStatus.FAILED),
    (findings.interrupted, Category.INTERRUPTED, ActionKind.NONE, HostStatus.INTERRUPTED),
    (lambda: findings.skipped("circuit breaker open"), Category.SKIPPED, ActionKind.NONE,
     HostStatus.SKIPPED),
    (lambda: findings.connected(RID), Category.CONNECTED, ActionKind.NONE, HostStatus.SUCCESS),
    (lambda: findings.already_connected(RID), Category.ALREADY_CONNECTED, ActionKind.NONE,
     HostStatus.SUCCESS),
    (lambda: findings.resource_conflict_elsewhere(RID, "sub s2 / rg g2"),
     Category.RESOURCE_CONFLICT, ActionKind.FAIL_HOST, HostStatus.FAILED),
    (lambda: findings.verify_failed("status Disconnected"), Category.UNKNOWN,
     ActionKind.FAIL_HOST, HostStatus.FAILED),
]


@pytest.mark.parametrize(("make", "category", "kind", "status"), CASES)
def test_factory(make: Callable[[], Diagnosis], category: Category, kind: ActionKind,
                 status: HostStatus) -> None:
    got = make()
    assert (got.category, got.action.kind) == (category, kind)
    assert HostStatus.for_category(got.category) is status
    assert got.name and got.rule
    if not category.is_success:
        assert got.cause and got.fix


def test_details_are_carried() -> None:
    assert "600" in findings.timed_out("connect", 600).cause
    assert findings.timed_out("verify", 2.5).extra == {"stage": "verify", "timeout_s": "2.5"}
    assert findings.connected(RID).resource_id == RID
    assert findings.connected(None).resource_id is None
    conflict = findings.resource_conflict_elsewhere(RID, "rg g2")
    assert conflict.code == "AZCM0067" and conflict.resource_id == RID
    assert conflict.extra == {"current": RID, "wanted": "rg g2"}
    assert "circuit breaker" in findings.skipped("circuit breaker open").cause
    assert findings.verify_failed("status Disconnected").extra["raw"] == "status Disconnected"
    assert findings.unreachable("no route").evidence_line == "no route"
