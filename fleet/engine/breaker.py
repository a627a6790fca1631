"""The circuit breaker: stop starting hosts when a cause will fail every one of them.

A wrong service-principal secret, a missing role assignment or an unregistered resource provider
fails the 500th host exactly as it failed the 3rd. After ``threshold`` hosts fail with the same
``fail_run`` cause, no new host is started; hosts already running finish.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from fleet.azcm.diagnosis import Diagnosis


@dataclass(frozen=True)
class Trip:
    cause_key: str
    count: int
    diagnosis: Diagnosis

    @property
    def reason(self) -> str:
        what = self.diagnosis.code or self.diagnosis.name or self.diagnosis.category.value
        return (
            f"circuit breaker: {self.count} hosts failed with {what} "
            f"({self.diagnosis.category.value}); fix: {self.diagnosis.fix}"
        )


class CircuitBreaker:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._counts: Counter[str] = Counter()
        self.trip: Trip | None = None

    @staticmethod
    def cause_key(diagnosis: Diagnosis) -> str:
        return (
            f"{diagnosis.category.value}|{diagnosis.code or ''}|{diagnosis.rule or diagnosis.name}"
        )

    def record(self, diagnosis: Diagnosis) -> None:
        if self.threshold <= 0 or not diagnosis.fail_run:
            return
        key = self.cause_key(diagnosis)
        self._counts[key] += 1
        if self.trip is None and self._counts[key] >= self.threshold:
            self.trip = Trip(key, self._counts[key], diagnosis)

    @property
    def open(self) -> bool:
        return self.trip is not None
