"""The circuit breaker's arithmetic: scoped keys, the share of a scope's hosts, the confirmer."""

from __future__ import annotations

from fleet.azcm.classifier import classify
from fleet.azcm.diagnosis import Diagnosis, Evidence
from fleet.engine.breaker import BreakerScope, CircuitBreaker, ScopeTarget

SP1 = ScopeTarget("client-1", "tenant", "sub", "rg-a")
SP2 = ScopeTarget("client-2", "tenant", "sub", "rg-a")
RG_B = ScopeTarget("client-1", "tenant", "sub", "rg-b")


def _verdict(message: str, code: str = "AZCM0041") -> Diagnosis:
    return classify(Evidence(int(code[4:]), stdout=f"ERROR   {message}\nFATAL   {code}: x\n"))


WRONG_SECRET = _verdict("Failed to acquire authorization token from SPN: AADSTS7000215: "
                        "Invalid client secret provided.")
NO_ROLE = _verdict("Code: AuthorizationFailed Message: The client 'c' does not have authorization "
                   "to perform action 'Microsoft.HybridCompute/machines/write' over scope "
                   "'/subscriptions/sub/resourcegroups/rg-b/providers/Microsoft.HybridCompute/"
                   "machines/m' Status Code=403", "AZCM0042")


def test_a_scope_trips_on_threshold_and_share_and_stops_only_its_hosts() -> None:
    breaker = CircuitBreaker(3, 0.2)
    for _ in range(10):
        breaker.started(SP2)
    for _ in range(3):
        breaker.record(WRONG_SECRET, SP2)
    trip = breaker.blocked(SP2)
    assert trip is not None and trip.scope.kind == "service_principal"
    assert "client-2" in trip.reason and "3 of 10" in trip.reason
    assert breaker.blocked(SP1) is None  # another service principal goes on


def test_three_among_many_started_do_not_trip() -> None:
    breaker = CircuitBreaker(3, 0.2)
    for _ in range(50):
        breaker.started(SP1)
    for _ in range(3):
        assert breaker.record(WRONG_SECRET, SP1) is None
    assert not breaker.open
    for _ in range(7):  # 10 of 50 = 20 %: now it is every fifth host, not a hostile few
        breaker.record(WRONG_SECRET, SP1)
    assert breaker.blocked(SP1) is not None


def test_rbac_trips_the_resource_group_not_the_service_principal() -> None:
    breaker = CircuitBreaker(3, 0.2)
    for _ in range(3):
        breaker.started(RG_B)
        breaker.record(NO_ROLE, RG_B)
    assert breaker.blocked(RG_B) is not None
    assert breaker.blocked(SP1) is None  # same service principal, other resource group


class _Azure:
    def __init__(self, answer: bool | None) -> None:
        self.answer = answer
        self.asked: list[BreakerScope] = []

    def confirm(self, scope: BreakerScope, diagnosis: Diagnosis) -> bool | None:
        self.asked.append(scope)
        return self.answer


def test_a_confirmer_settles_the_cause() -> None:
    confirmed = CircuitBreaker(3, 0.2, confirmer=_Azure(True))
    refuted = CircuitBreaker(3, 0.2, confirmer=_Azure(False))
    for breaker in (confirmed, refuted):
        for _ in range(100):
            breaker.started(SP1)
        for _ in range(30):
            breaker.record(WRONG_SECRET, SP1)
    assert confirmed.blocked(SP1) is not None and confirmed.blocked(SP1).confirmed_by_azure  # type: ignore[union-attr]
    assert refuted.blocked(SP1) is None
