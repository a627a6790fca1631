"""The fleet run: bounded concurrency, pacing, the circuit breaker and interruption.

``forks`` workers take hosts in inventory order. A host's outcome reaches the sinks (run store,
transcripts, display) the moment it is known. When the breaker opens or the operator interrupts,
no new host starts; hosts never started are recorded as ``skipped`` (breaker) or ``interrupted``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import structlog

from fleet.azcm import findings
from fleet.azcm.diagnosis import Diagnosis
from fleet.azcm.windows_private import step_cleanup_after_s
from fleet.engine.breaker import CircuitBreaker, Confirmer, ScopeTarget
from fleet.engine.host_run import HostContext, HostRun
from fleet.engine.outcome import Attempt, HostOutcome, OutcomeSink
from fleet.engine.pacing import CountingSemaphore, TokenBucket
from fleet.engine.playbook import Playbook
from fleet.engine.secrets import SecretBook
from fleet.inventory.model import OsFamily, ResolvedHost
from fleet.transport.factory import TransportFactory, commands_for

log = structlog.get_logger("fleet.engine")


@dataclass
class FanoutSink:
    """Hands every event to several sinks; one failing sink does not stop the others."""

    sinks: list[OutcomeSink] = field(default_factory=list)

    def host_started(self, host: str) -> None:
        for sink in self.sinks:
            sink.host_started(host)

    def attempt_recorded(self, host: str, attempt: Attempt) -> None:
        for sink in self.sinks:
            sink.attempt_recorded(host, attempt)

    def outcome_recorded(self, outcome: HostOutcome) -> None:
        for sink in self.sinks:
            sink.outcome_recorded(outcome)


@dataclass
class RunOptions:
    playbook: Playbook
    forks: int
    connect_rate_per_s: float
    connect_burst: int
    # Hosts opened and preflighted beyond ``forks``, waiting for an agent slot (None: forks).
    prepare_ahead_hosts: int | None = None
    transcript_path: dict[str, str] = field(default_factory=dict)
    # Resume: per host, the steps the interrupted run(s) recorded (see EarlierProgress).
    earlier_steps: dict[str, tuple[Attempt, ...]] = field(default_factory=dict)

    @property
    def prepare_ahead(self) -> int:
        return self.forks if self.prepare_ahead_hosts is None else self.prepare_ahead_hosts


class FleetRun:
    def __init__(
        self,
        hosts: Sequence[ResolvedHost],
        options: RunOptions,
        *,
        factory: TransportFactory,
        secrets: SecretBook,
        sink: OutcomeSink,
        settled: Mapping[str, Diagnosis] | None = None,
        confirmer: Confirmer | None = None,
        access_tokens: Callable[[ResolvedHost], Awaitable[str]] | None = None,
    ) -> None:
        self.hosts = list(hosts)
        # Hosts already failed before the run (the Azure preflight): recorded, never contacted.
        self.settled = dict(settled or {})
        self.options = options
        self.factory = factory
        self.secrets = secrets
        self.sink = sink
        # Token mode (fleet/azure/tokens.py): hosts with azure.auth "token" get a minted token.
        self.access_tokens = access_tokens
        self.breaker = CircuitBreaker(
            options.playbook.breaker.threshold, options.playbook.breaker.share,
            confirmer=confirmer,  # asks Azure before a credential/RBAC scope trips
        )
        self.pacer = TokenBucket(options.connect_rate_per_s, options.connect_burst)
        self.agent_slots = CountingSemaphore(options.forks)
        # Prepare-ahead workers start once the first wave is busy with Azure (every slot taken)
        # or a host has finished: starting all sessions at once would delay the first connects.
        self._first_wave_busy = asyncio.Event()
        self._agents_started = 0
        self.outcomes: dict[str, HostOutcome] = {}
        self.in_flight: dict[str, asyncio.Task[HostOutcome]] = {}
        self.interrupted = False

    def request_stop(self) -> None:
        """Ctrl-C: start nothing new, cancel what runs (each host cleans up its config file)."""
        if self.interrupted:
            return
        self.interrupted = True
        log.warning("run interrupted", in_flight=len(self.in_flight))
        for task in self.in_flight.values():
            task.cancel()
        self._first_wave_busy.set()  # wake waiting workers so they can leave

    def _agent_started(self) -> None:
        self._agents_started += 1
        if self._agents_started >= min(self.options.forks, len(self.hosts)):
            self._first_wave_busy.set()

    def _stop_reason(self, host: ResolvedHost) -> Diagnosis | None:
        if self.interrupted:
            return findings.interrupted()
        trip = self.breaker.blocked(ScopeTarget.of(host))
        return findings.skipped(trip.reason) if trip is not None else None

    def _record(self, outcome: HostOutcome, host: ResolvedHost | None = None) -> None:
        self._first_wave_busy.set()
        self.outcomes[outcome.host] = outcome
        d = outcome.diagnosis
        log.info(
            "host finished",
            host=outcome.host,
            address=outcome.address,
            transport=outcome.transport,
            status=outcome.status.value,
            category=d.category.value,
            azcm_code=d.code,
            exit_code=outcome.exit_code,
            attempts=outcome.attempts,
            remediations=list(outcome.remediations),
            cause=d.cause,
            duration_s=round(outcome.duration_s, 3),
        )
        self.sink.outcome_recorded(outcome)
        if host is not None:
            self.breaker.record(outcome.diagnosis, ScopeTarget.of(host))

    def _unstarted(self, host: ResolvedHost, diagnosis: Diagnosis) -> HostOutcome:
        now = datetime.now(UTC)
        return HostOutcome(
            host=host.name,
            address=host.address,
            transport=host.transport.value,
            os=host.os.value,
            diagnosis=diagnosis,
            started_at=now,
            finished_at=now,
        )

    def _host_run(self, host: ResolvedHost) -> HostRun:
        playbook = self.options.playbook
        password = self.secrets.winrm_password(host) if host.transport.value == "winrm" else None
        transport = self.factory.transport_for(host, winrm_password=password)
        deadlines = playbook.deadlines
        commands = commands_for(
            host,
            cleanup_after_s=step_cleanup_after_s(
                deadlines.agent_connect_s, deadlines.command_s, deadlines.host_s
            ),
        )
        escalate = (
            commands_for(host, elevated=True)
            if host.os is OsFamily.LINUX and not host.ssh.become
            else None
        )
        token: Callable[[], Awaitable[str]] | None = None
        if self.access_tokens is not None and host.azure.auth == "token":
            token = partial(self.access_tokens, host)
        context = HostContext(
            playbook=playbook,
            sink=self.sink,
            pacer=self.pacer,
            agent_slots=self.agent_slots,
            stop_reason=lambda: self._stop_reason(host),
            agent_started=self._agent_started,
            sp_secret=None if token is not None else self.secrets.sp_secret(host),
            sp_certificate=None if token is not None else self.secrets.sp_certificate(host),
            access_token=token,
            transcript_file=self.options.transcript_path.get(host.name, ""),
            earlier_steps=self.options.earlier_steps.get(host.name, ()),
        )
        return HostRun(host, transport, commands, context, elevated_commands=escalate)

    async def _worker(self, queue: deque[ResolvedHost], *, ahead: bool = False) -> None:
        if ahead:
            await self._first_wave_busy.wait()
        while queue and not self.interrupted:
            host = queue.popleft()
            stop = self._stop_reason(host)
            if stop is not None:  # its breaker scope tripped: other scopes go on
                self._record(self._unstarted(host, stop))
                continue
            self.breaker.started(ScopeTarget.of(host))

            runs: list[HostRun] = []

            async def work(host: ResolvedHost = host, runs: list[HostRun] = runs) -> HostOutcome:
                runs.append(self._host_run(host))
                return await runs[0].execute()

            task = asyncio.create_task(work(), name=host.name)
            self.in_flight[host.name] = task
            try:
                outcome = await task
            except asyncio.CancelledError:
                if not self.interrupted:
                    raise  # the worker itself is being cancelled
                outcome = self._unstarted(host, findings.interrupted())
            except Exception as exc:  # a bug must cost one host, not the run
                log.exception("host run failed", host=host.name)
                outcome = self._unstarted(
                    host, findings.step_failed(f"internal error: {type(exc).__name__}: {exc}")
                )
            finally:
                self.in_flight.pop(host.name, None)
            try:
                self._record(outcome, host)
            finally:
                for run in runs:  # a slot kept for the breaker's sake
                    run.release_deferred_slot()

    async def run(self) -> list[HostOutcome]:
        for host in self.hosts:
            if host.name in self.settled:
                self._record(self._unstarted(host, self.settled[host.name]))
        queue: deque[ResolvedHost] = deque(h for h in self.hosts if h.name not in self.settled)
        # ``forks`` agent operations at once (agent_slots), and as many hosts again being opened
        # and preflighted, so the CPU work of one host overlaps another's wait for Azure.
        workers = min(self.options.forks + self.options.prepare_ahead, max(1, len(queue)))
        self.factory.plan_sessions(workers, self.hosts)
        log.info(
            "run started",
            hosts=len(queue),
            playbook=self.options.playbook.name,
            mode=self.options.playbook.mode.value,
            forks=self.options.forks,
            sessions=workers,
            connect_rate_per_s=self.options.connect_rate_per_s,
        )
        try:
            await asyncio.gather(
                *(
                    self._worker(queue, ahead=index >= self.options.forks)
                    for index in range(workers)
                )
            )
        finally:
            await self.factory.aclose()
        for host in queue:  # never started
            diagnosis = self._stop_reason(host) or findings.skipped("not started")
            self._record(self._unstarted(host, diagnosis))
        for trip in self.breaker.trips.values():
            log.error("circuit breaker open", scope=trip.scope.key, reason=trip.reason)
        log.info("run finished", interrupted=self.interrupted, hosts=len(self.outcomes))
        return [self.outcomes[h.name] for h in self.hosts if h.name in self.outcomes]
