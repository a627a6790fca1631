"""One run, many workers: claim hosts from the shared store, work them, hold the leases.

A worker (one ``arcfleet onboard --site NAME`` on one jump host) repeatedly claims a batch of
its site's unfinished hosts (``SELECT ... FOR UPDATE SKIP LOCKED``: two workers never get the
same row), works the batch with an ordinary :class:`~fleet.engine.runner.FleetRun`, and renews
the lease on every host it holds while it works. A host whose worker died keeps its lease until
the lease expires; then another worker of the site claims it and works it under the rules of
``--resume``: the steps recorded so far are handed to the host run, whose preflight reads
``azcmagent show --json`` before any new connect.

The worker's result for a host counts only while it still holds the host (a worker cut off from
the database for longer than a lease loses its hosts, and its late results are dropped:
:class:`~fleet.store.postgres.LeaseLost`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime

import structlog

from fleet.engine.outcome import Attempt, HostOutcome, HostStatus
from fleet.engine.runner import FleetRun
from fleet.inventory.model import ResolvedHost
from fleet.store.base import RunStoreSink
from fleet.store.postgres import LeaseLost, PostgresRunStore

log = structlog.get_logger("fleet.engine.claims")

FleetFactory = Callable[[list[ResolvedHost], dict[str, tuple[Attempt, ...]]], FleetRun]


class ClaimSink(RunStoreSink):
    """The store sink of a worker: outcomes are fenced by the worker's lease, and a host the
    worker stopped before working (Ctrl-C) is given back rather than recorded. Starts and
    attempts are committed as :class:`~fleet.store.base.RunStoreSink` commits them: a start at
    once, a loop turn's attempts in one transaction (one commit per attempt kept the event loop
    waiting on the database for every step of every host)."""

    store: PostgresRunStore  # the base class's store, with the lease-fenced calls

    def __init__(self, store: PostgresRunStore, run_id: str, worker: str) -> None:
        super().__init__(store, run_id)
        self.worker = worker
        self.lost: list[str] = []

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        self.flush()  # the attempts first: the store keeps their order
        if outcome.status is HostStatus.INTERRUPTED:
            self.store.release_host(self.run_id, self.worker, outcome.host)
            return
        try:
            self.store.record_outcome(self.run_id, outcome, worker=self.worker)
        except LeaseLost:
            log.warning("lease lost; result dropped", host=outcome.host, worker=self.worker)
            self.lost.append(outcome.host)


def earlier_steps(store: PostgresRunStore, run_id: str, host: str) -> tuple[Attempt, ...]:
    return tuple(
        Attempt(
            stage=row.stage,
            command=row.command,
            exit_status=row.exit_status,
            duration_s=row.duration_s,
            started_at=datetime.fromisoformat(row.started_at),
            remediation=row.remediation,
        )
        for row in store.attempts_for(run_id, host)
    )


class ClaimLoop:
    """Claims batches of a site's hosts until none is left unfinished (or the worker stops)."""

    def __init__(
        self,
        store: PostgresRunStore,
        run_id: str,
        *,
        site: str | None,
        worker: str,
        hosts: Mapping[str, ResolvedHost],
        make_fleet: FleetFactory,
        batch: int,
        lease_s: float,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.site = site
        self.worker = worker
        self.hosts = dict(hosts)
        self.make_fleet = make_fleet
        self.batch = max(1, batch)
        self.lease_s = lease_s
        self.current: FleetRun | None = None
        self.stopped = False
        self.breaker_open = False
        self.outcomes: list[HostOutcome] = []

    def request_stop(self) -> None:
        self.stopped = True
        if self.current is not None:
            self.current.request_stop()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await asyncio.to_thread(
                    self.store.renew_leases, self.run_id, self.worker, self.lease_s
                )
            except Exception as exc:  # the database away for a moment: try again
                log.warning("lease renewal failed", error=str(exc))

    async def run(self) -> list[HostOutcome]:
        renewer = asyncio.create_task(self._renew())
        try:
            while not self.stopped:
                claims = await asyncio.to_thread(
                    self.store.claim_hosts, self.run_id, self.site, self.worker,
                    limit=self.batch, lease_s=self.lease_s,
                )
                if not claims:
                    left = await asyncio.to_thread(
                        self.store.site_unfinished, self.run_id, self.site
                    )
                    if left == 0:
                        break
                    # Held by live workers, or by a dead one until its leases expire.
                    await asyncio.sleep(min(1.0, self.lease_s / 3))
                    continue
                foreign = [c.host for c in claims if c.host not in self.hosts]
                for name in foreign:  # in the run, not in this worker's inventory
                    await asyncio.to_thread(
                        self.store.release_host, self.run_id, self.worker, name
                    )
                if foreign:
                    log.error("hosts of the site are not in this inventory", hosts=foreign)
                    break
                earlier = {
                    claim.host: await asyncio.to_thread(
                        earlier_steps, self.store, self.run_id, claim.host
                    )
                    for claim in claims
                    if claim.started_before
                }
                # Hosts another worker had started go first, as in a resume.
                ordered = sorted(claims, key=lambda claim: not claim.started_before)
                fleet = self.make_fleet([self.hosts[c.host] for c in ordered], earlier)
                self.current = fleet
                self.outcomes.extend(await fleet.run())
                self.current = None
                if fleet.interrupted:
                    self.stopped = True
                if fleet.breaker.trip is not None:
                    self.breaker_open = True
                    break
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        await asyncio.to_thread(self.store.finish_if_complete, self.run_id)
        return self.outcomes
